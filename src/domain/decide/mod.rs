//! `decide`: turns a command into events, or refuses it.
//!
//! `decide` is a pure function of the case state, the command, `today` and
//! the channel catalog. Checks run in a fixed order, so the same mistake
//! always gets the same rejection:
//!
//! 1. existence: `RegisterPerson` needs an empty stream (`CaseAlreadyExists`),
//!    everything else an existing case (`NoSuchCase`);
//! 2. erasure: on an erased person only the closing steps
//!    ([`Command::allowed_after_erasure`]) are decided; every other command
//!    is refused (`Erased`);
//! 3. dates: `on` may not be after `today`, nor before the latest business
//!    date already recorded in the case (a case's timeline only moves forward);
//! 4. exit: after an exit only `UpdatePersonalData` (rectification),
//!    `ErasePerson` and the data subject's requests remain
//!    (`IllegalTransition` in state `EXITED`);
//! 5. the command's own transition rules (state first, then field and
//!    channel checks).
//!
//! This file holds the dispatch, the person-level commands and shared
//! helpers; `application.rs`, `permit.rs` and `certification.rs` hold the rest.

mod application;
mod certification;
mod permit;
mod subject;

pub use subject::SUBJECT_REQUESTS_MAX;

use super::case::{CaseState, Stage};
use super::channels::{ChannelCatalog, ChannelRules};
use super::codes::{check_code, ChannelCode};
use super::command::{Command, Rules};
use super::date::{age_on, Date};
use super::divipola::{Department, Municipality};
use super::error::Rejection;
use super::event::Event;
use super::family::LinkedCases;
use super::sealed::{Sealed, SEALED_BYTES_MAX};
use super::types::DocumentType;

/// Earliest birth year accepted.
pub const BIRTH_YEAR_MIN: u16 = 1900;
/// Oldest age accepted at registration, in years.
pub const AGE_YEARS_MAX: u32 = 125;

impl CaseState {
    /// Decides `command` against this case on `today`: the events to append
    /// (one or more, to be appended atomically), or why not. Pure: no clock,
    /// no I/O; the same inputs always give the same answer.
    pub fn decide(
        &self,
        command: &Command,
        today: Date,
        catalog: &ChannelCatalog,
    ) -> Result<Vec<Event>, Rejection> {
        self.decide_with(command, today, catalog, &LinkedCases::NONE)
    }

    /// [`CaseState::decide`] with the linked cases a rule reads (PEP-Tutor's
    /// linked minor: [`ChannelRules::linked_permit`]), as the case service
    /// loaded them from the log. Without them such a rule refuses.
    pub fn decide_with(
        &self,
        command: &Command,
        today: Date,
        catalog: &ChannelCatalog,
        linked: &LinkedCases,
    ) -> Result<Vec<Event>, Rejection> {
        let name = command.name();
        if self.person.is_none() {
            return match command {
                Command::RegisterPerson { .. } => register(command, today),
                _ => Err(Rejection::NoSuchCase),
            };
        }
        if let Command::RegisterPerson { .. } = command {
            return Err(Rejection::CaseAlreadyExists);
        }
        if let Some(erased_on) = self.erased_on {
            if !command.allowed_after_erasure() && !matches!(command, Command::ErasePerson { .. }) {
                return Err(Rejection::Erased {
                    command: name,
                    erased_on,
                });
            }
        }
        check_on(command.on(), today)?;
        if let Some(latest) = self.latest_on.filter(|latest| command.on() < *latest) {
            let reason = format!(
                "{} is before the case's latest recorded date {latest}",
                command.on()
            );
            return Err(self.rule(name, "CASE_TIMELINE", "on", reason));
        }
        let closing = command.is_subject_request() || matches!(command, Command::EndFamilyLink { .. });
        if let Some(exit) = self.exit.filter(|_| !closing) {
            if !matches!(
                command,
                Command::UpdatePersonalData { .. } | Command::ErasePerson { .. }
            ) {
                let reason = format!(
                    "the person exited ({}) on {}; only rectification and erasure remain",
                    exit.kind, exit.on
                );
                return Err(self.illegal(name, reason));
            }
        }
        self.decide_command(command, catalog, linked)
    }

    /// The command's own rules, in the module its row names.
    fn decide_command(
        &self,
        command: &Command,
        catalog: &ChannelCatalog,
        linked: &LinkedCases,
    ) -> Result<Vec<Event>, Rejection> {
        match command.rules() {
            Rules::Person => self.decide_person(command),
            Rules::Application => self.decide_application(command, catalog, linked),
            Rules::Permit => self.decide_permit(command, catalog),
            Rules::Certification => self.decide_certification(command),
            Rules::Subject => self.decide_subject_request(command),
            Rules::Family => self.decide_family(command),
        }
    }

    /// The person's commands after registration: rectification, residence,
    /// exit and erasure.
    fn decide_person(&self, command: &Command) -> Result<Vec<Event>, Rejection> {
        let name = command.name();
        match command {
            Command::UpdatePersonalData {
                on,
                identity,
                documents,
            } => {
                check_sealed("identity", identity)?;
                check_documents(documents)?;
                let (identity, documents) = (identity.clone(), documents.clone());
                Ok(vec![Event::PersonalDataUpdated {
                    on: *on,
                    identity,
                    documents,
                }])
            }
            Command::UpdateResidence {
                on,
                department,
                municipality,
            } => {
                check_residence(*department, *municipality)?;
                let (department, municipality) = (*department, *municipality);
                Ok(vec![Event::ResidenceUpdated {
                    on: *on,
                    department,
                    municipality,
                }])
            }
            Command::RecordExit {
                on,
                kind,
                destination,
            } => {
                if destination.is_some() && *kind != crate::domain::ExitKind::Departed {
                    return Err(self.illegal(
                        name,
                        format!(
                            "a destination is recorded for a departure only, not for {}",
                            kind.as_str()
                        ),
                    ));
                }
                Ok(vec![Event::ExitRecorded {
                    on: *on,
                    kind: *kind,
                    destination: *destination,
                }])
            }
            Command::ErasePerson { on, legal_basis } => {
                if let Some(erased_on) = self.erased_on {
                    return Err(self.illegal(name, format!("already erased on {erased_on}")));
                }
                require_code("legal_basis", legal_basis)?;
                Ok(vec![Event::PersonErased {
                    on: *on,
                    legal_basis: legal_basis.clone(),
                }])
            }
            _ => Err(self.illegal(name, "not a person command")),
        }
    }

    /// An `IllegalTransition` naming the current state.
    pub(crate) fn illegal(&self, command: &'static str, reason: impl Into<String>) -> Rejection {
        Rejection::IllegalTransition {
            command,
            state: self.state_name(),
            reason: reason.into(),
        }
    }

    /// A `RuleViolated` naming the current state, the rule and the field.
    pub(crate) fn rule(
        &self,
        command: &'static str,
        rule: &'static str,
        field: &'static str,
        reason: impl Into<String>,
    ) -> Rejection {
        debug_assert!(Rejection::RULES.contains(&rule), "unlisted rule {rule}");
        Rejection::RuleViolated {
            command,
            state: self.state_name(),
            rule,
            field,
            reason: reason.into(),
        }
    }

    /// Refuses unless the stage is one of `allowed`; `why` explains, given
    /// the current stage.
    pub(crate) fn require(
        &self,
        command: &'static str,
        allowed: &[Stage],
        why: impl FnOnce(Stage) -> String,
    ) -> Result<(), Rejection> {
        if self.stage.is_in(allowed) {
            Ok(())
        } else {
            Err(self.illegal(command, why(self.stage)))
        }
    }

    /// The rules of the current application's channel.
    pub(crate) fn current_rules<'c>(
        &self,
        command: &'static str,
        catalog: &'c ChannelCatalog,
    ) -> Result<&'c ChannelRules, Rejection> {
        let Some(app) = &self.application else {
            return Err(self.illegal(command, "no application was ever made"));
        };
        channel_rules(catalog, app.channel)
    }
}

/// The rules of the channel `code`, which must be in the catalog.
pub(crate) fn channel_rules(catalog: &ChannelCatalog, code: ChannelCode) -> Result<&ChannelRules, Rejection> {
    catalog
        .get(code)
        .ok_or_else(|| Rejection::invalid("channel", format!("channel {code} is not in the catalog")))
}

/// Opens a case.
fn register(command: &Command, today: Date) -> Result<Vec<Event>, Rejection> {
    let Command::RegisterPerson {
        on,
        identity,
        birth_year,
        birth_month,
        department,
        municipality,
        documents,
        ..
    } = command
    else {
        return Err(Rejection::NoSuchCase);
    };
    check_on(*on, today)?;
    check_sealed("identity", identity)?;
    if !(1..=12).contains(birth_month) {
        return Err(Rejection::invalid(
            "birth_month",
            format!("{birth_month} is not a month"),
        ));
    }
    if *birth_year < BIRTH_YEAR_MIN {
        return Err(Rejection::invalid(
            "birth_year",
            format!("before {BIRTH_YEAR_MIN}"),
        ));
    }
    if (*birth_year, *birth_month) > (on.year(), on.month()) {
        let reason = format!("{birth_year}-{birth_month:02} is after the registration date {on}");
        return Err(Rejection::invalid("birth_year", reason));
    }
    if age_on(*birth_year, *birth_month, *on) > AGE_YEARS_MAX {
        return Err(Rejection::invalid(
            "birth_year",
            format!("older than {AGE_YEARS_MAX} years"),
        ));
    }
    check_residence(*department, *municipality)?;
    check_documents(documents)?;
    Ok(recorded(command))
}

/// The one event of a command whose row in the command table says
/// `records Event`, once its rule passed: the command's fields as they are.
pub(crate) fn recorded(command: &Command) -> Vec<Event> {
    let event = command.recorded();
    assert!(
        event.is_some(),
        "{}'s row names the event it records",
        command.name()
    );
    event.into_iter().collect()
}

/// The business date may not be after today.
fn check_on(on: Date, today: Date) -> Result<(), Rejection> {
    if on > today {
        return Err(Rejection::invalid("on", format!("{on} is after today ({today})")));
    }
    Ok(())
}

/// A sealed value must be present and within its size limit.
pub(crate) fn check_sealed(field: &'static str, sealed: &Sealed) -> Result<(), Rejection> {
    if sealed.is_empty() {
        return Err(Rejection::invalid(field, "sealed data is empty"));
    }
    if sealed.len() > SEALED_BYTES_MAX {
        return Err(Rejection::invalid(
            field,
            format!("sealed data exceeds {SEALED_BYTES_MAX} bytes"),
        ));
    }
    Ok(())
}

/// The municipality must belong to the department.
fn check_residence(department: Department, municipality: Municipality) -> Result<(), Rejection> {
    if municipality.department() != department {
        let reason = format!("{municipality} is not in department {department}");
        return Err(Rejection::invalid("municipality", reason));
    }
    Ok(())
}

/// At least one document kind, none repeated.
fn check_documents(documents: &[DocumentType]) -> Result<(), Rejection> {
    if documents.is_empty() {
        return Err(Rejection::invalid(
            "documents",
            "at least one identity document is required",
        ));
    }
    for (i, kind) in documents.iter().enumerate() {
        if documents[..i].contains(kind) {
            return Err(Rejection::invalid("documents", format!("{kind} listed twice")));
        }
    }
    Ok(())
}

/// Refuses a free code that is not a code.
pub(crate) fn require_code(field: &'static str, text: &str) -> Result<(), Rejection> {
    check_code(text).map_err(|reason| Rejection::invalid(field, reason.to_string()))
}
