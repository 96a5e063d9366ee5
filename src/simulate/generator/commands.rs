//! The commands of a plan: those of the main path's steps, each with the
//! staff member who records it.

use super::paths::Laid;
use super::person::{actor, Attributes, Role};
use super::rng::Rng;
use super::timeline::Step;
use super::{placeholder_sealed, PlannedCommand, TODAY};
use crate::domain::{ChannelCode, Command, CountryCode, Date, Department, DocumentType};

/// The commands of a plan so far.
pub(super) struct Recorder {
    commands: Vec<PlannedCommand>,
}

impl Recorder {
    pub(super) fn with_capacity(capacity: usize) -> Recorder {
        Recorder {
            commands: Vec::with_capacity(capacity),
        }
    }

    /// Adds `command`, recorded by a staff member of `role` in `department`.
    pub(super) fn push(&mut self, rng: &mut Rng, department: Department, role: Role, command: Command) {
        self.commands.push(PlannedCommand {
            command,
            actor: actor(rng, department, role),
        })
    }

    pub(super) fn into_commands(self) -> Vec<PlannedCommand> {
        self.commands
    }
}

/// Where the person's biometrics are taken, and by whom.
struct Capture {
    site: String,
    operator: String,
}

/// The registration of the person on `on`.
fn registration(who: &Attributes, kinds: &[DocumentType], on: Date) -> Command {
    Command::RegisterPerson {
        on,
        identity: placeholder_sealed(),
        sex: who.sex,
        birth_year: who.birth_year,
        birth_month: who.birth_month,
        nationality: CountryCode::VEN,
        department: who.department,
        municipality: who.municipality,
        documents: kinds.to_vec(),
    }
}

/// The commands of the main path: a registration before the path's window
/// (if any), then one command per step.
pub(super) fn record_main_path(
    rng: &mut Rng,
    out: &mut Recorder,
    who: &Attributes,
    kinds: &[DocumentType],
    laid: &Laid,
) {
    let department = who.department;
    let capture = Capture {
        site: format!("CFSM-{department}-S{}", 1 + rng.below(3)),
        operator: format!("OP-{department}-{:03}", rng.below(1000)),
    };
    if let Some(on) = laid.register_on {
        out.push(rng, department, Role::Caseworker, registration(who, kinds, on));
    }
    for step in &laid.steps {
        let (role, command) = step_command(rng, step, &laid.dates, who, kinds, &capture);
        out.push(rng, department, role, command);
    }
}

/// The command of one step, with the role that records it.
fn step_command(
    rng: &mut Rng,
    step: &Step,
    dates: &[Date],
    who: &Attributes,
    kinds: &[DocumentType],
    capture: &Capture,
) -> (Role, Command) {
    use Role::*;
    let at = |p: usize| dates[p];
    match step.clone() {
        Step::Register(p) => (Caseworker, registration(who, kinds, at(p))),
        Step::PreRegister(p, channel, basis) => (
            Caseworker,
            Command::PreRegister {
                on: at(p),
                channel: ChannelCode::parse(channel).expect("known channel code"),
                basis,
            },
        ),
        Step::Survey(p, household_size, employed, sector) => (
            Caseworker,
            Command::CompleteSurvey {
                on: at(p),
                household_size,
                employed,
                sector,
            },
        ),
        Step::Schedule(p, q) => (
            Caseworker,
            Command::ScheduleBiometrics {
                on: at(p),
                appointment_on: at(q),
                site: capture.site.clone(),
            },
        ),
        Step::Missed(p) => (Caseworker, Command::RecordMissedAppointment { on: at(p) }),
        Step::Capture(p) => (
            Caseworker,
            Command::RecordBiometricCapture {
                on: at(p),
                site: capture.site.clone(),
                operator: capture.operator.clone(),
                biometric_ref: rng.bytes32(),
            },
        ),
        Step::RequestInfo(p, reason) => (
            Caseworker,
            Command::RequestInformation {
                on: at(p),
                reason: reason.to_string(),
            },
        ),
        Step::ReceiveInfo(p) => (Caseworker, Command::ReceiveInformation { on: at(p) }),
        Step::Approve(p) => (Supervisor, Command::Approve { on: at(p) }),
        Step::Deny(p, reason) => (Supervisor, Command::Deny { on: at(p), reason }),
        Step::FileAppeal(p) => (Caseworker, Command::FileAppeal { on: at(p) }),
        Step::DecideAppeal(p, upheld) => (Supervisor, Command::DecideAppeal { on: at(p), upheld }),
        Step::Withdraw(p) => (Caseworker, Command::Withdraw { on: at(p) }),
        Step::Issue(p) => (
            Supervisor,
            Command::IssuePermit {
                on: at(p),
                permit_number: placeholder_sealed(),
                valid_until: None,
            },
        ),
        Step::Interim(p, days) => (
            Caseworker,
            Command::IssueInterimCertificate {
                on: at(p),
                valid_until: at(p).add_days(days),
            },
        ),
        Step::Print(p) => (Caseworker, Command::PrintCard { on: at(p) }),
        Step::Deliver(p) => (Caseworker, Command::DeliverCard { on: at(p) }),
        Step::Abandon(p) => (Supervisor, Command::AbandonCard { on: at(p) }),
        Step::Cancel(p, ground) => (Supervisor, Command::CancelPermit { on: at(p), ground }),
        Step::Visa(p, end) => (
            Caseworker,
            Command::SupersedeByVisa {
                on: at(p),
                visa_number: placeholder_sealed(),
                valid_until: end.map(|d| TODAY.add_days(d)),
            },
        ),
    }
}
