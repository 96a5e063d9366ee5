//! What a case accepts next: every command is put to [`CaseState::decide`]
//! on today's date with representative fields, so the list can never
//! disagree with the rules it reports (there is no second copy of them).
//!
//! A command refused only for its fields (`Invalid`) is listed: other
//! fields may pass. A command refused by a rule that a later date lifts
//! (a missed appointment before its day, a card before its collection
//! period ends) is listed with that date. Any other refusal leaves it out.

use super::case::CaseState;
use super::channels::ChannelCatalog;
use super::command::Command;
use super::date::Date;
use super::error::Rejection;
use super::family::{LinkEndReason, LinkEvidence, LinkRole};
use super::sealed::Sealed;
use super::types::{
    CancellationGround, CertificationRoute, DenialReason, DocumentType, DuplicateCause, ExitKind, Sector,
    SubjectRequestKind,
};

/// A command the case accepts next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextStep {
    /// The command's name (the RPC), e.g. `ScheduleBiometrics`.
    pub command: &'static str,
    /// Refused before this date (a rule sets it); `None` when nothing does.
    pub earliest_on: Option<Date>,
    /// The last day a rule allows it; `None` when no rule sets one.
    pub until: Option<Date>,
}

impl CaseState {
    /// The commands this case accepts on `today`, in the order of the
    /// Caseworker service's RPCs. Empty for a case that does not exist.
    pub fn next_steps(&self, today: Date, catalog: &ChannelCatalog) -> Vec<NextStep> {
        let Some(person) = self.person.as_ref() else {
            return Vec::new();
        };
        let on = today.max(self.latest_on.unwrap_or(today));
        let sealed = || Sealed(vec![0; 32]);
        let certification_ids: Vec<u32> = self.certifications.iter().map(|c| c.id).collect();
        let mut probes: Vec<Vec<Command>> = Vec::new();
        // PreRegister: any channel with any basis it accepts.
        probes.push(
            catalog
                .channels()
                .iter()
                .flat_map(|rules| {
                    rules.bases.iter().map(move |basis| Command::PreRegister {
                        on,
                        channel: rules.code,
                        basis: *basis,
                    })
                })
                .collect(),
        );
        let one = |c: Command| vec![c];
        probes.extend([
            one(Command::CompleteSurvey {
                on,
                household_size: 1,
                employed: false,
                sector: None,
            }),
            one(Command::ScheduleBiometrics {
                on,
                appointment_on: on,
                site: "SITE".into(),
            }),
            one(Command::RecordMissedAppointment { on }),
            one(Command::RecordBiometricCapture {
                on,
                site: "SITE".into(),
                operator: "OPERATOR".into(),
                biometric_ref: [1; 32],
            }),
            one(Command::RequestInformation {
                on,
                reason: "REASON".into(),
            }),
            one(Command::ReceiveInformation { on }),
            one(Command::Approve { on }),
            one(Command::Deny {
                on,
                reason: DenialReason::Other,
            }),
            one(Command::FileAppeal { on }),
            one(Command::DecideAppeal { on, upheld: false }),
            one(Command::Withdraw { on }),
            one(Command::IssuePermit {
                on,
                permit_number: sealed(),
                valid_until: None,
            }),
            one(Command::PrintCard { on }),
            one(Command::DeliverCard { on }),
            one(Command::AbandonCard { on }),
            one(Command::IssueInterimCertificate {
                on,
                valid_until: on.add_days(1),
            }),
            one(Command::ExtendInterimCertificate {
                on,
                valid_until: on.add_days(1),
            }),
            one(Command::RequestDuplicate {
                on,
                cause: DuplicateCause::Loss,
            }),
            one(Command::IssueDuplicate { on }),
            one(Command::ExtendValidity {
                on,
                valid_until: on.add_days(1),
            }),
            one(Command::CancelPermit {
                on,
                ground: CancellationGround::Other,
            }),
            one(Command::SupersedeByVisa {
                on,
                visa_number: sealed(),
                valid_until: None,
            }),
            one(Command::UpdatePersonalData {
                on,
                identity: sealed(),
                documents: vec![DocumentType::Passport],
            }),
            one(Command::UpdateResidence {
                on,
                department: person.department,
                municipality: person.municipality,
            }),
            one(Command::RequestCertification {
                on,
                route: CertificationRoute::SenaCompetency,
                sector: Sector::Other,
            }),
        ]);
        let for_each_certification = |make: &dyn Fn(u32) -> Command| -> Vec<Command> {
            certification_ids.iter().map(|id| make(*id)).collect()
        };
        probes.push(for_each_certification(&|certification_id| {
            Command::AssessCertification {
                certification_id,
                on,
                passed: true,
            }
        }));
        probes.push(for_each_certification(&|certification_id| {
            Command::AwardCertification {
                certification_id,
                on,
                standard_code: "CODE".into(),
                issuing_body: "BODY".into(),
            }
        }));
        probes.push(for_each_certification(&|certification_id| {
            Command::DenyCertification {
                certification_id,
                on,
                reason: "REASON".into(),
            }
        }));
        probes.push(one(Command::RecordExit {
            on,
            kind: ExitKind::Departed,
            destination: None,
        }));
        probes.push(one(Command::ErasePerson {
            on,
            legal_basis: "LEGAL_BASIS".into(),
        }));
        probes.push(one(Command::ReceiveSubjectRequest {
            on,
            kind: SubjectRequestKind::Query,
        }));
        let open_requests: Vec<u32> = self
            .subject_requests
            .iter()
            .filter(|r| r.is_open())
            .map(|r| r.id)
            .collect();
        let for_each_open_request = |make: &dyn Fn(u32) -> Command| -> Vec<Command> {
            open_requests.iter().map(|id| make(*id)).collect()
        };
        probes.push(for_each_open_request(&|subject_request_id| {
            Command::ExtendSubjectRequest {
                subject_request_id,
                on,
                reason: "REASON".into(),
            }
        }));
        probes.push(for_each_open_request(&|subject_request_id| {
            Command::AnswerSubjectRequest {
                subject_request_id,
                on,
                outcome: "OUTCOME".into(),
            }
        }));
        // Family links: this side's rules (the other case is not known here).
        probes.push(
            [LinkRole::GuardianOf, LinkRole::ParentOf, LinkRole::DependantOf]
                .into_iter()
                .map(|role| Command::RecordFamilyLink {
                    on,
                    link_id: "L-00000000000000000000".into(),
                    role,
                    other_case_id: "OTHER".into(),
                    evidence: LinkEvidence::CourtOrder,
                })
                .collect(),
        );
        probes.push(
            self.active_links()
                .map(|l| Command::EndFamilyLink {
                    on,
                    link_id: l.link_id.clone(),
                    reason: LinkEndReason::RecordedInError,
                })
                .collect(),
        );
        probes
            .into_iter()
            .filter_map(|commands| {
                commands
                    .iter()
                    .filter_map(|command| self.probe(command, on, catalog))
                    .min_by_key(|step| step.earliest_on)
            })
            .collect()
    }

    /// Whether `command` is accepted on `on` (or from a later date a rule names).
    fn probe(&self, command: &Command, on: Date, catalog: &ChannelCatalog) -> Option<NextStep> {
        let step = |earliest_on: Option<Date>| NextStep {
            command: command.name(),
            earliest_on,
            until: self.until(command),
        };
        match self.decide(command, on, catalog) {
            Ok(_) | Err(Rejection::Invalid { .. }) => Some(step(None)),
            Err(Rejection::RuleViolated { rule, .. }) => match rule {
                "APPOINTMENT_NOT_REACHED" => step(self.application.as_ref()?.appointment_on).into(),
                "CARD_COLLECTION_PERIOD" => step(self.card_abandonable_from(catalog)).into(),
                // Decided from the linked case's log, which is not read here:
                // listed while the case holds a link the rule could rest on.
                "PEP_TUTOR_NO_ELIGIBLE_MINOR" => self
                    .active_links()
                    .any(|l| l.role == LinkRole::GuardianOf)
                    .then(|| step(None)),
                _ => None,
            },
            Err(_) => None,
        }
    }

    /// The last day a rule allows `command` on this case.
    fn until(&self, command: &Command) -> Option<Date> {
        match command {
            Command::FileAppeal { .. } => self.application.as_ref()?.denial.as_ref().map(|d| d.appeal_until),
            Command::ExtendSubjectRequest {
                subject_request_id, ..
            }
            | Command::AnswerSubjectRequest {
                subject_request_id, ..
            } => self
                .subject_requests
                .iter()
                .find(|r| r.id == *subject_request_id)
                .map(|r| r.due_on),
            _ => None,
        }
    }

    /// The first day the printed card may be declared abandoned.
    pub(crate) fn card_abandonable_from(&self, catalog: &ChannelCatalog) -> Option<Date> {
        let permit = self.permit.as_ref()?;
        let days = catalog.get(permit.channel)?.card_uncollected_days?;
        Some(permit.last_printed_on?.add_days(i64::from(days)))
    }
}
