//! The parts of a case state, as read APIs see them.
//!
//! Plain data with public fields: read APIs get shared references through
//! [`CaseState`](super::CaseState)'s accessors and cannot change a case
//! except through events. Sealed values become `None` once the person is
//! erased, so an erased state holds no personal data at all.

use super::codes::{ChannelCode, CountryCode};
use super::date::{age_on, Date};
use super::divipola::{Department, Municipality};
use super::sealed::Sealed;
use super::types::{
    code_enum, AgeBand, CancellationGround, CertificationRoute, DenialReason, DocumentSet, DuplicateCause,
    EligibilityBasis, ExitKind, PermitType, Sector, Sex,
};

/// The person the case is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// When the case was opened.
    pub registered_on: Date,
    /// Sealed identity (`None` after erasure).
    pub identity: Option<Sealed>,
    /// Sex, for breakdowns.
    pub sex: Sex,
    /// Birth year, for age bands.
    pub birth_year: u16,
    /// Birth month (1..=12), for exact minor/adult rules.
    pub birth_month: u8,
    /// Nationality.
    pub nationality: CountryCode,
    /// Department of residence.
    pub department: Department,
    /// Municipality of residence.
    pub municipality: Municipality,
    /// Kinds of document held.
    pub documents: DocumentSet,
}

impl Person {
    /// Age in whole years on `on` (birthday taken as the 1st of the birth month).
    pub fn age_on(&self, on: Date) -> u32 {
        age_on(self.birth_year, self.birth_month, on)
    }

    /// Age band on `on`.
    pub fn age_band_on(&self, on: Date) -> AgeBand {
        AgeBand::of(self.age_on(on))
    }
}

/// The characterization survey's non-identifying answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Survey {
    /// Date answered.
    pub on: Date,
    /// People in the household.
    pub household_size: u8,
    /// Whether the person works.
    pub employed: bool,
    /// Sector of work, when employed.
    pub sector: Option<Sector>,
}

/// A denial and its appeal deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denial {
    /// Decision date.
    pub on: Date,
    /// Why.
    pub reason: DenialReason,
    /// Last day an appeal may be filed.
    pub appeal_until: Date,
}

/// The decision on an appeal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppealDecision {
    /// Decision date.
    pub on: Date,
    /// Whether the applicant won.
    pub upheld: bool,
}

/// An interim certificate (certificado de trámite).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interim {
    /// First issue date.
    pub issued_on: Date,
    /// Current end of validity.
    pub valid_until: Date,
    /// Times extended.
    pub extensions: u8,
}

/// One application through one channel; the case holds the latest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    /// 1, 2, ... within the case.
    pub id: u32,
    /// The channel applied through.
    pub channel: ChannelCode,
    /// The eligibility basis claimed.
    pub basis: EligibilityBasis,
    /// Pre-registration date.
    pub applied_on: Date,
    /// The survey, once answered.
    pub survey: Option<Survey>,
    /// When the first appointment was given.
    pub first_scheduled_on: Option<Date>,
    /// Date of the latest appointment given.
    pub appointment_on: Option<Date>,
    /// Appointments missed.
    pub missed_appointments: u8,
    /// Biometric capture date (review start).
    pub biometrics_on: Option<Date>,
    /// Times information was requested.
    pub information_requests: u8,
    /// Date of the decision now standing (approval, denial or appeal).
    pub decided_on: Option<Date>,
    /// The denial, if denied (kept after an upheld appeal, for history).
    pub denial: Option<Denial>,
    /// When an appeal was filed.
    pub appeal_filed_on: Option<Date>,
    /// The appeal's outcome.
    pub appeal: Option<AppealDecision>,
    /// When the application was withdrawn.
    pub withdrawn_on: Option<Date>,
    /// The interim certificate issued while the card is awaited.
    pub interim: Option<Interim>,
}

impl Application {
    /// A freshly pre-registered application.
    pub(crate) fn new(
        id: u32,
        channel: ChannelCode,
        basis: EligibilityBasis,
        applied_on: Date,
    ) -> Application {
        Application {
            id,
            channel,
            basis,
            applied_on,
            survey: None,
            first_scheduled_on: None,
            appointment_on: None,
            missed_appointments: 0,
            biometrics_on: None,
            information_requests: 0,
            decided_on: None,
            denial: None,
            appeal_filed_on: None,
            appeal: None,
            withdrawn_on: None,
            interim: None,
        }
    }
}

code_enum! {
    /// Where the physical card stands.
    pub enum CardState {
        /// Not printed yet (always so for channels without a card).
        NotPrinted => "NOT_PRINTED",
        /// Printed (or reprinted), awaiting delivery.
        Printed => "PRINTED",
        /// In the holder's hands.
        Delivered => "DELIVERED",
        /// A duplicate was requested.
        DuplicateRequested => "DUPLICATE_REQUESTED",
        /// Never collected; the permit was cancelled.
        Abandoned => "ABANDONED",
    }
}

/// A permit cancellation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancellation {
    /// Date cancelled.
    pub on: Date,
    /// Ground.
    pub ground: CancellationGround,
}

/// An issued permit and its card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit {
    /// The application it came from.
    pub application_id: u32,
    /// The channel it came from.
    pub channel: ChannelCode,
    /// Its type, which decides the regular status.
    pub permit_type: PermitType,
    /// Sealed permit number (`None` after erasure).
    pub number: Option<Sealed>,
    /// Issue date.
    pub issued_on: Date,
    /// Current end of validity (after extensions).
    pub valid_until: Date,
    /// Times extended.
    pub extensions: u8,
    /// Card state.
    pub card: CardState,
    /// First print date (the funnel's "printed").
    pub printed_on: Option<Date>,
    /// Latest print or duplicate date (abandonment counts from here).
    pub last_printed_on: Option<Date>,
    /// First delivery date (the funnel's "delivered").
    pub delivered_on: Option<Date>,
    /// Duplicates issued.
    pub duplicates: u8,
    /// Cause of the latest duplicate request.
    pub duplicate_cause: Option<DuplicateCause>,
    /// The cancellation, if cancelled.
    pub cancelled: Option<Cancellation>,
    /// When a visa superseded it.
    pub superseded_on: Option<Date>,
}

impl Permit {
    /// Whether the permit gives regular status on `on`: not cancelled, not
    /// superseded, and not expired.
    pub fn is_active_on(&self, on: Date) -> bool {
        self.cancelled.is_none() && self.superseded_on.is_none() && self.valid_until >= on
    }
}

/// A visa that regular status rests on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visa {
    /// Date recorded.
    pub on: Date,
    /// Sealed visa number (`None` after erasure).
    pub number: Option<Sealed>,
    /// End of validity (`None`: no end, e.g. resident visa).
    pub valid_until: Option<Date>,
}

impl Visa {
    /// Whether the visa is valid on `on`.
    pub fn is_valid_on(&self, on: Date) -> bool {
        self.valid_until.is_none_or(|end| end >= on)
    }
}

code_enum! {
    /// Where a certification stands; the codes are its state names.
    pub enum CertificationStage {
        /// Requested, awaiting assessment.
        Requested => "CERTIFICATION_REQUESTED",
        /// Assessed and passed; may be awarded.
        AssessedPassed => "CERTIFICATION_ASSESSED_PASSED",
        /// Assessed and failed; may only be denied.
        AssessedFailed => "CERTIFICATION_ASSESSED_FAILED",
        /// Awarded (final).
        Awarded => "CERTIFICATION_AWARDED",
        /// Denied (final).
        Denied => "CERTIFICATION_DENIED",
    }
}

/// A worker certification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certification {
    /// 1, 2, ... within the case.
    pub id: u32,
    /// Request date.
    pub requested_on: Date,
    /// Recognition route.
    pub route: CertificationRoute,
    /// Sector.
    pub sector: Sector,
    /// Where it stands.
    pub stage: CertificationStage,
    /// Assessment date.
    pub assessed_on: Option<Date>,
    /// Award or denial date.
    pub decided_on: Option<Date>,
    /// Standard code, once awarded.
    pub standard_code: Option<String>,
    /// Issuing body code, once awarded.
    pub issuing_body: Option<String>,
    /// Denial reason code, once denied.
    pub denial_reason: Option<String>,
}

impl Certification {
    /// A freshly requested certification.
    pub(crate) fn new(id: u32, on: Date, route: CertificationRoute, sector: Sector) -> Certification {
        Certification {
            id,
            requested_on: on,
            route,
            sector,
            stage: CertificationStage::Requested,
            assessed_on: None,
            decided_on: None,
            standard_code: None,
            issuing_body: None,
            denial_reason: None,
        }
    }
}

/// How and when a person left the caseload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Exit date.
    pub on: Date,
    /// Departed, nationalized or deceased.
    pub kind: ExitKind,
    /// Destination country of a departure, when recorded.
    pub destination: Option<CountryCode>,
}

/// Funnel dates of the current application (DOMAIN.md "the funnel").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Milestones {
    /// Pre-registration.
    pub pre_registered_on: Option<Date>,
    /// Biometric capture.
    pub biometrics_on: Option<Date>,
    /// The standing decision.
    pub decided_on: Option<Date>,
    /// Permit issue.
    pub issued_on: Option<Date>,
    /// First card print.
    pub printed_on: Option<Date>,
    /// First card delivery.
    pub delivered_on: Option<Date>,
}

/// A data subject's request (Ley 1581 de 2012 arts. 14-15) and its legal deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectRequest {
    /// 1, 2, ... within the case.
    pub id: u32,
    /// Query or claim.
    pub kind: super::types::SubjectRequestKind,
    /// Date received.
    pub received_on: Date,
    /// The last day to answer (moved once by an extension).
    pub due_on: Date,
    /// When the extension was recorded, if it was.
    pub extended_on: Option<Date>,
    /// The extension's reason code.
    pub extension_reason: Option<String>,
    /// When it was answered; `None` while open.
    pub answered_on: Option<Date>,
    /// The answer's outcome code.
    pub outcome: Option<String>,
}

impl SubjectRequest {
    /// Whether the request still awaits its answer.
    pub fn is_open(&self) -> bool {
        self.answered_on.is_none()
    }
}
