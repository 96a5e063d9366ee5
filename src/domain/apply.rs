//! `apply`: folds events into a [`CaseState`].
//!
//! `apply` is total: the log is the truth, so an event is never refused here
//! (refusing is `decide`'s job). An event that makes no sense in the current
//! state (impossible through `decide`) still moves the stage and updates what
//! it can. It is also cheap: the state is mostly `Copy` fields; the only heap
//! work is keeping sealed bytes (identity, permit and visa numbers), the rare
//! certification, and the list of channels a permit came from.

use super::case::{CaseState, Stage};
use super::codes::ChannelCode;
use super::event::Event;
use super::records::{
    AppealDecision, Application, Cancellation, CardState, Certification, CertificationStage, Denial, Exit,
    Interim, Permit, Person, SubjectRequest, Survey, Visa,
};
use super::types::DocumentSet;

impl Stage {
    /// The stage after `event`: the application state machine in one table.
    /// Events that do not move the application (person data, certifications,
    /// interim certificates, exit, erasure) keep the stage.
    pub fn after(self, event: &Event) -> Stage {
        match event {
            Event::PreRegistered { .. } => Stage::PreRegistered,
            Event::BiometricAppointmentScheduled { .. } => Stage::BiometricsScheduled,
            Event::BiometricAppointmentMissed { .. } => Stage::AppointmentMissed,
            Event::BiometricsCaptured { .. } | Event::InformationReceived { .. } => Stage::UnderReview,
            Event::InformationRequested { .. } => Stage::InformationRequired,
            Event::Approved { .. } | Event::AppealDecided { upheld: true, .. } => Stage::Approved,
            Event::Denied { .. } => Stage::Denied,
            Event::AppealFiled { .. } => Stage::AppealFiled,
            Event::AppealDecided { upheld: false, .. } => Stage::DeniedFinal,
            Event::Withdrawn { .. } => Stage::Withdrawn,
            Event::PermitIssued { .. } => Stage::PermitIssued,
            Event::CardPrinted { .. } | Event::DuplicateIssued { .. } => Stage::CardPrinted,
            Event::CardDelivered { .. } => Stage::CardDelivered,
            Event::DuplicateRequested { .. } => Stage::DuplicateRequested,
            Event::PermitCancelled { .. } => Stage::PermitCancelled,
            Event::SupersededByVisa { .. } => Stage::SupersededByVisa,
            _ => self,
        }
    }
}

impl CaseState {
    /// Rebuilds a state from a stream's events, in order.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> CaseState {
        let mut state = CaseState::default();
        for event in events {
            state.apply(event);
        }
        state
    }

    /// Folds one event into the state. Never fails and never refuses.
    pub fn apply(&mut self, event: &Event) {
        self.events_applied += 1;
        let on = event.on();
        self.latest_on = Some(self.latest_on.map_or(on, |latest| latest.max(on)));
        self.stage = self.stage.after(event);
        match event {
            Event::PersonRegistered { .. }
            | Event::PersonalDataUpdated { .. }
            | Event::ResidenceUpdated { .. }
            | Event::ExitRecorded { .. }
            | Event::PersonErased { .. } => self.apply_person(event),
            Event::PreRegistered {
                application_id,
                channel,
                basis,
                applied_on,
            } => {
                self.applications = self.applications.max(*application_id);
                self.application = Some(Application::new(*application_id, *channel, *basis, *applied_on));
            }
            Event::PermitIssued { .. } => self.apply_permit_issued(event),
            Event::CardPrinted { .. }
            | Event::CardDelivered { .. }
            | Event::CardAbandoned { .. }
            | Event::DuplicateRequested { .. }
            | Event::DuplicateIssued { .. }
            | Event::ValidityExtended { .. }
            | Event::PermitCancelled { .. }
            | Event::SupersededByVisa { .. } => self.apply_permit(event),
            Event::CertificationRequested { .. }
            | Event::CertificationAssessed { .. }
            | Event::CertificationAwarded { .. }
            | Event::CertificationDenied { .. } => self.apply_certification(event),
            Event::SubjectRequestReceived { .. }
            | Event::SubjectRequestExtended { .. }
            | Event::SubjectRequestAnswered { .. } => self.apply_subject_request(event),
            Event::FamilyLinkRecorded {
                on,
                link_id,
                role,
                other_case_id,
                evidence,
            } => self.links.push(super::family::FamilyLink {
                link_id: link_id.clone(),
                role: *role,
                other_case_id: other_case_id.clone(),
                evidence: *evidence,
                since: *on,
                ended: None,
            }),
            Event::FamilyLinkEnded {
                on, link_id, reason, ..
            } => {
                if let Some(link) = self.links.iter_mut().find(|l| l.link_id == *link_id) {
                    link.ended = Some((*on, *reason));
                }
            }
            _ => self.apply_application(event),
        }
    }

    /// Person-level events. Sealed data is never kept once erased.
    fn apply_person(&mut self, event: &Event) {
        let erased = self.erased_on.is_some();
        match event {
            Event::PersonRegistered {
                on,
                identity,
                sex,
                birth_year,
                birth_month,
                nationality,
                department,
                municipality,
                documents,
            } => {
                self.person = Some(Person {
                    registered_on: *on,
                    identity: (!erased).then(|| identity.clone()),
                    sex: *sex,
                    birth_year: *birth_year,
                    birth_month: *birth_month,
                    nationality: *nationality,
                    department: *department,
                    municipality: *municipality,
                    documents: DocumentSet::from_types(documents),
                });
            }
            Event::PersonalDataUpdated {
                identity, documents, ..
            } => {
                if let Some(person) = &mut self.person {
                    person.identity = (!erased).then(|| identity.clone());
                    person.documents = DocumentSet::from_types(documents);
                }
            }
            Event::ResidenceUpdated {
                department,
                municipality,
                ..
            } => {
                if let Some(person) = &mut self.person {
                    person.department = *department;
                    person.municipality = *municipality;
                }
            }
            Event::ExitRecorded {
                on,
                kind,
                destination,
            } => {
                self.exit = Some(Exit {
                    on: *on,
                    kind: *kind,
                    destination: *destination,
                })
            }
            Event::PersonErased { on, .. } => {
                self.erased_on.get_or_insert(*on);
                if let Some(person) = &mut self.person {
                    person.identity = None;
                }
                if let Some(permit) = &mut self.permit {
                    permit.number = None;
                }
                if let Some(visa) = &mut self.visa {
                    visa.number = None;
                }
            }
            _ => {}
        }
    }

    /// Events of the current application before its permit.
    fn apply_application(&mut self, event: &Event) {
        let Some(app) = &mut self.application else { return };
        match *event {
            Event::SurveyCompleted {
                on,
                household_size,
                employed,
                sector,
            } => {
                app.survey = Some(Survey {
                    on,
                    household_size,
                    employed,
                    sector,
                });
            }
            Event::BiometricAppointmentScheduled {
                on, appointment_on, ..
            } => {
                app.first_scheduled_on.get_or_insert(on);
                app.appointment_on = Some(appointment_on);
            }
            Event::BiometricAppointmentMissed { .. } => {
                app.missed_appointments = app.missed_appointments.saturating_add(1);
            }
            Event::BiometricsCaptured { on, .. } => app.biometrics_on = Some(on),
            Event::InformationRequested { .. } => {
                app.information_requests = app.information_requests.saturating_add(1);
            }
            Event::Approved { on } => app.decided_on = Some(on),
            Event::Denied {
                on,
                reason,
                appeal_until,
            } => {
                app.decided_on = Some(on);
                app.denial = Some(Denial {
                    on,
                    reason,
                    appeal_until,
                });
            }
            Event::AppealFiled { on } => app.appeal_filed_on = Some(on),
            Event::AppealDecided { on, upheld } => {
                app.decided_on = Some(on);
                app.appeal = Some(AppealDecision { on, upheld });
            }
            Event::Withdrawn { on } => app.withdrawn_on = Some(on),
            Event::InterimCertificateIssued { on, valid_until } => {
                app.interim = Some(Interim {
                    issued_on: on,
                    valid_until,
                    extensions: 0,
                });
            }
            Event::InterimCertificateExtended { on, valid_until } => {
                let interim = app.interim.get_or_insert(Interim {
                    issued_on: on,
                    valid_until,
                    extensions: 0,
                });
                interim.valid_until = valid_until;
                interim.extensions = interim.extensions.saturating_add(1);
            }
            _ => {}
        }
    }

    fn apply_permit_issued(&mut self, event: &Event) {
        let Event::PermitIssued {
            on,
            permit_type,
            permit_number,
            valid_until,
        } = event
        else {
            return;
        };
        let (application_id, channel) = self
            .application
            .as_ref()
            .map_or((0, ChannelCode::UNKNOWN), |app| (app.id, app.channel));
        if !self.permit_channels.contains(&channel) {
            self.permit_channels.push(channel);
        }
        self.permit = Some(Permit {
            application_id,
            channel,
            permit_type: *permit_type,
            number: self.erased_on.is_none().then(|| permit_number.clone()),
            issued_on: *on,
            valid_until: *valid_until,
            extensions: 0,
            card: CardState::NotPrinted,
            printed_on: None,
            last_printed_on: None,
            delivered_on: None,
            duplicates: 0,
            duplicate_cause: None,
            cancelled: None,
            superseded_on: None,
        });
    }

    /// Card, permit-life and visa events.
    fn apply_permit(&mut self, event: &Event) {
        if let Event::SupersededByVisa {
            on,
            visa_number,
            valid_until,
        } = event
        {
            let number = self.erased_on.is_none().then(|| visa_number.clone());
            self.visa = Some(Visa {
                on: *on,
                number,
                valid_until: *valid_until,
            });
        }
        let Some(permit) = &mut self.permit else { return };
        match *event {
            Event::CardPrinted { on } => {
                permit.card = CardState::Printed;
                permit.printed_on.get_or_insert(on);
                permit.last_printed_on = Some(on);
            }
            Event::CardDelivered { on } => {
                permit.card = CardState::Delivered;
                permit.delivered_on.get_or_insert(on);
            }
            Event::CardAbandoned { .. } => permit.card = CardState::Abandoned,
            Event::DuplicateRequested { cause, .. } => {
                permit.card = CardState::DuplicateRequested;
                permit.duplicate_cause = Some(cause);
            }
            Event::DuplicateIssued { on } => {
                permit.card = CardState::Printed;
                permit.duplicates = permit.duplicates.saturating_add(1);
                permit.last_printed_on = Some(on);
            }
            Event::ValidityExtended { valid_until, .. } => {
                permit.valid_until = valid_until;
                permit.extensions = permit.extensions.saturating_add(1);
            }
            Event::PermitCancelled { on, ground } => permit.cancelled = Some(Cancellation { on, ground }),
            Event::SupersededByVisa { on, .. }
                if permit.cancelled.is_none() && permit.superseded_on.is_none() =>
            {
                permit.superseded_on = Some(on);
            }
            _ => {}
        }
    }

    fn apply_certification(&mut self, event: &Event) {
        if let Event::CertificationRequested {
            certification_id,
            on,
            route,
            sector,
        } = *event
        {
            self.certifications
                .push(Certification::new(certification_id, on, route, sector));
            return;
        }
        let id = match event {
            Event::CertificationAssessed { certification_id, .. }
            | Event::CertificationAwarded { certification_id, .. }
            | Event::CertificationDenied { certification_id, .. } => *certification_id,
            _ => return,
        };
        let Some(cert) = self.certifications.iter_mut().find(|cert| cert.id == id) else {
            return;
        };
        match event {
            Event::CertificationAssessed { on, passed, .. } => {
                cert.assessed_on = Some(*on);
                cert.stage = if *passed {
                    CertificationStage::AssessedPassed
                } else {
                    CertificationStage::AssessedFailed
                };
            }
            Event::CertificationAwarded {
                on,
                standard_code,
                issuing_body,
                ..
            } => {
                cert.decided_on = Some(*on);
                cert.stage = CertificationStage::Awarded;
                cert.standard_code = Some(standard_code.clone());
                cert.issuing_body = Some(issuing_body.clone());
            }
            Event::CertificationDenied { on, reason, .. } => {
                cert.decided_on = Some(*on);
                cert.stage = CertificationStage::Denied;
                cert.denial_reason = Some(reason.clone());
            }
            _ => {}
        }
    }
}

impl CaseState {
    /// A data subject's request and its deadline (they never move the stage).
    fn apply_subject_request(&mut self, event: &Event) {
        match event {
            Event::SubjectRequestReceived {
                subject_request_id,
                on,
                kind,
                due_on,
            } => self.subject_requests.push(SubjectRequest {
                id: *subject_request_id,
                kind: *kind,
                received_on: *on,
                due_on: *due_on,
                extended_on: None,
                extension_reason: None,
                answered_on: None,
                outcome: None,
            }),
            Event::SubjectRequestExtended {
                subject_request_id,
                on,
                reason,
                due_on,
            } => {
                if let Some(r) = self
                    .subject_requests
                    .iter_mut()
                    .find(|r| r.id == *subject_request_id)
                {
                    r.extended_on = Some(*on);
                    r.extension_reason = Some(reason.clone());
                    r.due_on = *due_on;
                }
            }
            Event::SubjectRequestAnswered {
                subject_request_id,
                on,
                outcome,
            } => {
                if let Some(r) = self
                    .subject_requests
                    .iter_mut()
                    .find(|r| r.id == *subject_request_id)
                {
                    r.answered_on = Some(*on);
                    r.outcome = Some(outcome.clone());
                }
            }
            _ => {}
        }
    }
}
