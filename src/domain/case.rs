//! The state of one case and what can be read from it.
//!
//! The state is rebuilt by applying the case's events in order (`apply.rs`)
//! and consulted by `decide` (`decide/`), the read APIs and statistics.

use super::channels::ChannelCatalog;
use super::codes::{ChannelCode, CountryCode};
use super::date::{age_on, Date};
use super::divipola::{Department, Municipality};
use super::records::{Application, Certification, Exit, Interim, Milestones, Permit, Person, Visa};
use super::types::code_enum;

code_enum! {
    /// Where the current application (and the permit it led to) stands.
    /// The codes are the state names rejections and read APIs show.
    #[derive(Default)]
    pub enum Stage {
        /// Registered, no application yet.
        #[default]
        Registered => "REGISTERED",
        /// Application pre-registered, waiting for a biometric appointment.
        PreRegistered => "PRE_REGISTERED",
        /// A biometric appointment is pending.
        BiometricsScheduled => "BIOMETRICS_SCHEDULED",
        /// The last appointment was missed; a new one may be scheduled.
        AppointmentMissed => "APPOINTMENT_MISSED",
        /// Biometrics captured; the authority is reviewing.
        UnderReview => "UNDER_REVIEW",
        /// The reviewer asked for information ("required").
        InformationRequired => "INFORMATION_REQUIRED",
        /// Approved, permit not yet issued.
        Approved => "APPROVED",
        /// Denied; may be appealed until the appeal deadline.
        Denied => "DENIED",
        /// An appeal against the denial awaits decision.
        AppealFiled => "APPEAL_FILED",
        /// Denied with no appeal left.
        DeniedFinal => "DENIED_FINAL",
        /// Withdrawn or abandoned before a decision.
        Withdrawn => "WITHDRAWN",
        /// Permit issued, card not printed (or the channel has no card).
        PermitIssued => "PERMIT_ISSUED",
        /// Card printed (or reprinted as a duplicate), awaiting delivery.
        CardPrinted => "CARD_PRINTED",
        /// Card delivered.
        CardDelivered => "CARD_DELIVERED",
        /// A duplicate of the delivered card was requested.
        DuplicateRequested => "DUPLICATE_REQUESTED",
        /// The permit was cancelled (including for an abandoned card).
        PermitCancelled => "PERMIT_CANCELLED",
        /// Regular status rests on a visa.
        SupersededByVisa => "SUPERSEDED_BY_VISA",
    }
}

impl Stage {
    /// Stages of an application not yet decided (withdrawable).
    pub const UNDECIDED: [Stage; 5] = [
        Stage::PreRegistered,
        Stage::BiometricsScheduled,
        Stage::AppointmentMissed,
        Stage::UnderReview,
        Stage::InformationRequired,
    ];

    /// Stages holding an issued permit that has not been cancelled or
    /// superseded (it may still have expired: see `Permit::is_active_on`).
    pub const PERMIT_HELD: [Stage; 4] = [
        Stage::PermitIssued,
        Stage::CardPrinted,
        Stage::CardDelivered,
        Stage::DuplicateRequested,
    ];

    /// Whether the stage is one of `stages`.
    pub fn is_in(self, stages: &[Stage]) -> bool {
        stages.contains(&self)
    }
}

/// State name of an empty stream.
pub const NO_CASE: &str = "NO_CASE";
/// State name of a person who exited the caseload (terminal).
pub const EXITED: &str = "EXITED";

/// Everything the rules and the read APIs need to know about one case.
/// `Default` is the empty stream (no case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaseState {
    /// The registered person (`None` before registration).
    pub(crate) person: Option<Person>,
    /// Where the case stands ([`Stage`]).
    pub(crate) stage: Stage,
    /// The current (latest) application, if one was made.
    pub(crate) application: Option<Application>,
    /// The latest permit issued (possibly cancelled or expired).
    pub(crate) permit: Option<Permit>,
    /// The visa that superseded the permit, if any.
    pub(crate) visa: Option<Visa>,
    /// Certifications requested, in order of request.
    pub(crate) certifications: Vec<Certification>,
    /// Data subject requests (Ley 1581), in order of receipt.
    pub(crate) subject_requests: Vec<super::records::SubjectRequest>,
    /// Family links to other cases, in order recorded (ended ones kept).
    pub(crate) links: Vec<super::family::FamilyLink>,
    /// Channels through which a permit was ever issued (once-only channels).
    pub(crate) permit_channels: Vec<ChannelCode>,
    /// How the person left the caseload, once recorded.
    pub(crate) exit: Option<Exit>,
    /// The date the person's identifying data was erased (then only closing steps remain).
    pub(crate) erased_on: Option<Date>,
    /// The latest business date recorded; commands may not go before it.
    pub(crate) latest_on: Option<Date>,
    /// Applications made so far (the last application id).
    pub(crate) applications: u32,
    /// Events applied so far (the stream version this state reflects).
    pub(crate) events_applied: u64,
}

/// Read accessors: what a caseworker view, the statistics projection and the
/// rules need, without exposing mutation.
impl CaseState {
    /// Whether the stream holds a case (a `PersonRegistered` was applied).
    pub fn exists(&self) -> bool {
        self.person.is_some()
    }

    /// The state name rejections show: `NO_CASE`, `EXITED`, or the stage code.
    pub fn state_name(&self) -> &'static str {
        match (&self.person, &self.exit) {
            (None, _) => NO_CASE,
            (Some(_), Some(_)) => EXITED,
            (Some(_), None) => self.stage.as_str(),
        }
    }

    /// Where the current application and permit stand (`REGISTERED` when
    /// no application was ever made). Unaffected by exit and erasure.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The person, if the case exists.
    pub fn person(&self) -> Option<&Person> {
        self.person.as_ref()
    }

    /// The current (latest) application.
    pub fn application(&self) -> Option<&Application> {
        self.application.as_ref()
    }

    /// The channel of the current application.
    pub fn channel(&self) -> Option<ChannelCode> {
        self.application.as_ref().map(|app| app.channel)
    }

    /// The latest permit issued (possibly cancelled, expired or superseded,
    /// possibly from an earlier application).
    pub fn permit(&self) -> Option<&Permit> {
        self.permit.as_ref()
    }

    /// The interim certificate of the current application.
    pub fn interim_certificate(&self) -> Option<&Interim> {
        self.application.as_ref().and_then(|app| app.interim.as_ref())
    }

    /// The visa regular status rests on, if superseded.
    pub fn visa(&self) -> Option<&Visa> {
        self.visa.as_ref()
    }

    /// The data subject's requests, in order of receipt (ids 1, 2, ...).
    pub fn subject_requests(&self) -> &[super::records::SubjectRequest] {
        &self.subject_requests
    }

    /// All certifications, in request order (ids 1, 2, ...).
    pub fn certifications(&self) -> &[Certification] {
        &self.certifications
    }

    /// The exit, if recorded.
    pub fn exit(&self) -> Option<Exit> {
        self.exit
    }

    /// Whether the person's identifying data was erased (permanent).
    pub fn is_erased(&self) -> bool {
        self.erased_on.is_some()
    }

    /// When the identifying data was erased.
    pub fn erased_on(&self) -> Option<Date> {
        self.erased_on
    }

    /// Department of residence.
    pub fn department(&self) -> Option<Department> {
        self.person.as_ref().map(|p| p.department)
    }

    /// Municipality of residence.
    pub fn municipality(&self) -> Option<Municipality> {
        self.person.as_ref().map(|p| p.municipality)
    }

    /// Nationality.
    pub fn nationality(&self) -> Option<CountryCode> {
        self.person.as_ref().map(|p| p.nationality)
    }

    /// Age in whole years on `on`.
    pub fn age_on(&self, on: Date) -> Option<u32> {
        self.person
            .as_ref()
            .map(|p| age_on(p.birth_year, p.birth_month, on))
    }

    /// Missed biometric appointments in the current application.
    pub fn missed_appointments(&self) -> u8 {
        self.application.as_ref().map_or(0, |app| app.missed_appointments)
    }

    /// Duplicates issued for the current permit.
    pub fn duplicates(&self) -> u8 {
        self.permit.as_ref().map_or(0, |permit| permit.duplicates)
    }

    /// Applications made so far (the last application id).
    pub fn applications(&self) -> u32 {
        self.applications
    }

    /// When the authority should decide the current application (review
    /// start plus the channel's `decision_days`), if the review started and
    /// the channel has a deadline. Reported for monitoring, not enforced.
    pub fn decision_due(&self, catalog: &ChannelCatalog) -> Option<Date> {
        let app = self.application.as_ref()?;
        catalog.get(app.channel)?.decision_due(app.biometrics_on?)
    }

    /// Funnel dates of the current application and its permit.
    pub fn milestones(&self) -> Milestones {
        let app = self.application.as_ref();
        let permit = self
            .permit
            .as_ref()
            .filter(|p| app.is_some_and(|a| a.id == p.application_id));
        Milestones {
            pre_registered_on: app.map(|a| a.applied_on),
            biometrics_on: app.and_then(|a| a.biometrics_on),
            decided_on: app.and_then(|a| a.decided_on),
            issued_on: permit.map(|p| p.issued_on),
            printed_on: permit.and_then(|p| p.printed_on),
            delivered_on: permit.and_then(|p| p.delivered_on),
        }
    }

    /// The latest business date recorded; commands may not go before it.
    pub fn latest_on(&self) -> Option<Date> {
        self.latest_on
    }

    /// Events applied so far (the stream version this state reflects).
    pub fn events_applied(&self) -> u64 {
        self.events_applied
    }
}
