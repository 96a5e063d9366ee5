//! Behaviour tests of the domain: lifecycles, refusals, derived status, and
//! property tests over random command sequences.

mod appeal_window;
mod channels;
mod family;
mod lifecycle;
mod next_steps;
mod person;
mod person_status;
mod props;
mod refused_application;
mod refused_permit;
mod refused_person;

use super::*;

/// The date all fixture commands are decided on unless a test says otherwise.
pub(crate) const TODAY: Date = match Date::new(2025, 6, 1) {
    Some(date) => date,
    None => panic!("bad fixture date"),
};

pub(crate) fn d(text: &str) -> Date {
    Date::parse(text).unwrap_or_else(|| panic!("bad test date {text}"))
}

pub(crate) fn ch(code: &str) -> ChannelCode {
    ChannelCode::parse(code).unwrap_or_else(|| panic!("bad channel code {code}"))
}

pub(crate) fn sealed(tag: u8) -> Sealed {
    Sealed(vec![0x5e, tag, 0xa1, 0xed])
}

pub(crate) fn bogota() -> (Department, Municipality) {
    (
        Department::parse("11").unwrap(),
        Municipality::parse("11001").unwrap(),
    )
}

/// Registering an adult (born May 1990) in Bogotá.
pub(crate) fn register_on(on: Date) -> Command {
    register_born(on, 1990, 5)
}

pub(crate) fn register_born(on: Date, birth_year: u16, birth_month: u8) -> Command {
    let (department, municipality) = bogota();
    Command::RegisterPerson {
        on,
        identity: sealed(1),
        sex: Sex::Female,
        birth_year,
        birth_month,
        nationality: CountryCode::VEN,
        department,
        municipality,
        documents: vec![DocumentType::VenezuelanCedula, DocumentType::Pep],
    }
}

/// The status of `case`'s person on the date `on`.
pub(crate) fn status(case: &Case, on: &str) -> PersonStatus {
    person_status(&case.state, d(on))
}

/// A case under test: its state, its log, the builtin catalog, and the
/// `today` its commands are decided on.
pub(crate) struct Case {
    /// The state after every event of `log`.
    pub state: CaseState,
    /// The events recorded so far, in order.
    pub log: Vec<Event>,
    /// The channel rules commands are decided with (the builtin catalog).
    pub catalog: ChannelCatalog,
    /// The date commands are decided on.
    pub today: Date,
}

impl Case {
    pub fn new() -> Case {
        Case {
            state: CaseState::default(),
            log: Vec::new(),
            catalog: ChannelCatalog::builtin(),
            today: TODAY,
        }
    }

    /// Decides and, if accepted, applies; returns what `decide` said.
    pub fn try_run(&mut self, command: Command, today: Date) -> Result<Vec<Event>, Rejection> {
        let events = self.state.decide(&command, today, &self.catalog)?;
        for event in &events {
            self.state.apply(event);
        }
        self.log.extend(events.iter().cloned());
        Ok(events)
    }

    /// Runs a command that must be accepted.
    pub fn run(&mut self, command: Command) -> Vec<Event> {
        let name = command.name();
        self.try_run(command, self.today)
            .unwrap_or_else(|rejection| panic!("{name} refused: {rejection}"))
    }

    /// Decides a command that must be refused; the state must not change.
    pub fn reject(&self, command: Command) -> Rejection {
        self.reject_on(command, self.today)
    }

    pub fn reject_on(&self, command: Command, today: Date) -> Rejection {
        match self.state.decide(&command, today, &self.catalog) {
            Ok(events) => panic!("{} accepted: {events:?}", command.name()),
            Err(rejection) => rejection,
        }
    }

    /// The builtin catalog without the rules that read linked cases
    /// (PEP-Tutor's linked minor: tested in `family.rs`), for tests of a
    /// channel's other rules.
    pub fn without_linked_rules(mut self) -> Case {
        let channels = self
            .catalog
            .channels()
            .iter()
            .cloned()
            .map(|mut c| {
                c.linked_permit = None;
                c
            })
            .collect();
        self.catalog = ChannelCatalog::new(channels).expect("catalog");
        self
    }

    pub fn state_name(&self) -> &'static str {
        self.state.state_name()
    }

    /// A registered adult.
    pub fn registered() -> Case {
        let mut case = Case::new();
        case.run(register_on(d("2021-06-01")));
        case
    }

    /// An ETPV application through to `stage` along the happy path (the
    /// survey is answered on the way to biometrics).
    pub fn etpv_at(stage: Stage) -> Case {
        let mut case = Case::registered();
        for command in etpv_happy_path() {
            if case.state.stage() == stage {
                break;
            }
            case.run(command);
        }
        assert_eq!(case.state.stage(), stage, "fixture did not reach {stage}");
        case
    }
}

/// The ETPV happy path after registration on 2021-06-01.
pub(crate) fn etpv_happy_path() -> Vec<Command> {
    vec![
        Command::PreRegister {
            on: d("2021-06-01"),
            channel: ch("ETPV"),
            basis: EligibilityBasis::Pep,
        },
        Command::CompleteSurvey {
            on: d("2021-06-02"),
            household_size: 4,
            employed: true,
            sector: Some(Sector::Commerce),
        },
        Command::ScheduleBiometrics {
            on: d("2021-06-03"),
            appointment_on: d("2021-06-20"),
            site: "BOG-CALLE-100".into(),
        },
        Command::RecordBiometricCapture {
            on: d("2021-06-20"),
            site: "BOG-CALLE-100".into(),
            operator: "OP-0042".into(),
            biometric_ref: [7; 32],
        },
        Command::Approve { on: d("2021-08-01") },
        Command::IssuePermit {
            on: d("2021-08-05"),
            permit_number: sealed(2),
            valid_until: None,
        },
        Command::PrintCard { on: d("2021-08-10") },
        Command::DeliverCard { on: d("2021-09-01") },
    ]
}

pub(crate) fn illegal(command: &'static str, state: &'static str, reason: &str) -> Rejection {
    Rejection::IllegalTransition {
        command,
        state,
        reason: reason.into(),
    }
}

pub(crate) fn rule(
    command: &'static str,
    state: &'static str,
    rule: &'static str,
    field: &'static str,
    reason: &str,
) -> Rejection {
    Rejection::RuleViolated {
        command,
        state,
        rule,
        field,
        reason: reason.into(),
    }
}

pub(crate) fn invalid(field: &'static str, reason: &str) -> Rejection {
    Rejection::Invalid {
        field,
        reason: reason.into(),
    }
}

/// The type names of `events`.
pub(crate) fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::event_type).collect()
}
