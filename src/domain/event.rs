//! Events: the facts recorded in a case's stream, and the only input of
//! [`CaseState::apply`](super::CaseState::apply).
//!
//! One stream is one person's case file: the person, one application at a
//! time, the permit it led to, certifications, exit and erasure. Personal
//! identifying data is never in clear: it travels as [`Sealed`] bytes.
//! Everything statistics need (sex, birth year and month, DIVIPOLA codes,
//! channel, dates, reason codes) stays readable.
//!
//! Every event carries its business date `on` (or `applied_on`): the date the
//! fact happened, which the log's own write time does not replace.

use serde::{Deserialize, Serialize};

use super::codes::{ChannelCode, CountryCode};
use super::date::Date;
use super::divipola::{Department, Municipality};
use super::family::{LinkEndReason, LinkEvidence, LinkRole};
use super::sealed::{BiometricRef, Sealed};
use super::types::{
    CancellationGround, CertificationRoute, DenialReason, DocumentType, DuplicateCause, EligibilityBasis,
    ExitKind, PermitType, Sector, Sex, SubjectRequestKind,
};

/// A fact about one case. Serde uses the variant name as tag, which equals
/// [`Event::event_type`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A person entered the registry; opens the case.
    PersonRegistered {
        /// Registration date.
        on: Date,
        /// Names, document numbers, contact: sealed by the `pii` module.
        identity: Sealed,
        /// Sex as in the document.
        sex: Sex,
        /// Birth year, for age bands.
        birth_year: u16,
        /// Birth month (1..=12), for exact minor/adult rules.
        birth_month: u8,
        /// ISO 3166 alpha-3 nationality (`VEN`).
        nationality: CountryCode,
        /// Department of residence.
        department: Department,
        /// Municipality of residence, inside `department`.
        municipality: Municipality,
        /// Kinds of document presented; their numbers are inside `identity`.
        documents: Vec<DocumentType>,
    },
    /// An application through a channel was pre-registered (RUMV for ETPV).
    PreRegistered {
        /// 1, 2, ... within the case: one application at a time.
        application_id: u32,
        /// The channel's catalog code.
        channel: ChannelCode,
        /// The eligibility basis claimed (accepted by the channel).
        basis: EligibilityBasis,
        /// Application date (inside the channel's window).
        applied_on: Date,
    },
    /// The socio-economic characterization survey was answered.
    SurveyCompleted {
        /// Date answered.
        on: Date,
        /// People in the household.
        household_size: u8,
        /// Whether the person works.
        employed: bool,
        /// Sector of work, when employed.
        sector: Option<Sector>,
    },
    /// A biometric appointment was given.
    BiometricAppointmentScheduled {
        /// Date the appointment was given.
        on: Date,
        /// Date of the appointment.
        appointment_on: Date,
        /// Site code.
        site: String,
    },
    /// The person did not come to the appointment.
    BiometricAppointmentMissed {
        /// Date recorded (on or after the appointment).
        on: Date,
    },
    /// Biometrics were captured; the review starts.
    BiometricsCaptured {
        /// Capture date.
        on: Date,
        /// Site code.
        site: String,
        /// Operator code (staff identifier, not a name).
        operator: String,
        /// Reference to the enrolment in the biometric system, never a template.
        #[serde(with = "super::sealed::hex_32")]
        biometric_ref: BiometricRef,
    },
    /// The reviewer needs an inconsistency fixed ("required").
    InformationRequested {
        /// Date asked.
        on: Date,
        /// Reason code.
        reason: String,
    },
    /// The applicant supplied what was required; review resumes.
    InformationReceived {
        /// Date received.
        on: Date,
    },
    /// The application was approved.
    Approved {
        /// Decision date.
        on: Date,
    },
    /// The application was denied.
    Denied {
        /// Decision date.
        on: Date,
        /// Why.
        reason: DenialReason,
        /// Last day an appeal may be filed (decision date plus the channel's
        /// appeal window, fixed when decided so later rule changes do not
        /// rewrite history).
        appeal_until: Date,
    },
    /// An appeal (recurso de reposición) was filed against the denial.
    AppealFiled {
        /// Filing date.
        on: Date,
    },
    /// The appeal was decided.
    AppealDecided {
        /// Decision date.
        on: Date,
        /// Whether the applicant won (the application is then approved).
        upheld: bool,
    },
    /// The application was withdrawn or abandoned before a decision.
    Withdrawn {
        /// Date withdrawn.
        on: Date,
    },
    /// The permit was issued.
    PermitIssued {
        /// Issue date.
        on: Date,
        /// The channel's permit type.
        permit_type: PermitType,
        /// Sealed permit number.
        permit_number: Sealed,
        /// End of validity.
        valid_until: Date,
    },
    /// The card was printed.
    CardPrinted {
        /// Print date.
        on: Date,
    },
    /// The card was delivered in person.
    CardDelivered {
        /// Delivery date.
        on: Date,
    },
    /// The card was not collected in time; always followed by `PermitCancelled`.
    CardAbandoned {
        /// Date declared.
        on: Date,
    },
    /// An interim certificate (certificado de trámite) was issued.
    InterimCertificateIssued {
        /// Issue date.
        on: Date,
        /// End of validity.
        valid_until: Date,
    },
    /// The interim certificate was extended.
    InterimCertificateExtended {
        /// Date extended.
        on: Date,
        /// New end of validity.
        valid_until: Date,
    },
    /// A duplicate card was requested.
    DuplicateRequested {
        /// Request date.
        on: Date,
        /// Why.
        cause: DuplicateCause,
    },
    /// The duplicate was issued; the card is printed again and awaits delivery.
    DuplicateIssued {
        /// Issue (reprint) date.
        on: Date,
    },
    /// The permit's validity was extended.
    ValidityExtended {
        /// Date extended.
        on: Date,
        /// New end of validity.
        valid_until: Date,
    },
    /// The permit was cancelled.
    PermitCancelled {
        /// Cancellation date.
        on: Date,
        /// Ground.
        ground: CancellationGround,
    },
    /// Regular status now rests on a visa (resident visa R, ...).
    SupersededByVisa {
        /// Date of the visa.
        on: Date,
        /// Sealed visa number.
        visa_number: Sealed,
        /// End of validity (`None`: no end).
        valid_until: Option<Date>,
    },
    /// Identity data was rectified.
    PersonalDataUpdated {
        /// Date rectified.
        on: Date,
        /// The new sealed identity.
        identity: Sealed,
        /// Kinds of document now held.
        documents: Vec<DocumentType>,
    },
    /// The person moved.
    ResidenceUpdated {
        /// Date of the move.
        on: Date,
        /// New department.
        department: Department,
        /// New municipality, inside `department`.
        municipality: Municipality,
    },
    /// A worker certification was requested.
    CertificationRequested {
        /// 1, 2, ... within the case.
        certification_id: u32,
        /// Request date.
        on: Date,
        /// Recognition route.
        route: CertificationRoute,
        /// Sector of the skill.
        sector: Sector,
    },
    /// The certification assessment took place.
    CertificationAssessed {
        /// The certification.
        certification_id: u32,
        /// Assessment date.
        on: Date,
        /// Whether the person passed.
        passed: bool,
    },
    /// The certification was awarded.
    CertificationAwarded {
        /// The certification.
        certification_id: u32,
        /// Award date.
        on: Date,
        /// Occupational standard code.
        standard_code: String,
        /// Issuing body code.
        issuing_body: String,
    },
    /// The certification was denied.
    CertificationDenied {
        /// The certification.
        certification_id: u32,
        /// Denial date.
        on: Date,
        /// Reason code.
        reason: String,
    },
    /// The person left the caseload; terminal.
    ExitRecorded {
        /// Exit date.
        on: Date,
        /// Departed, nationalized or deceased.
        kind: ExitKind,
        /// Where a departed person went, when known (ISO 3166-1 alpha-3);
        /// `None` when not recorded (always for the other kinds).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        destination: Option<CountryCode>,
    },
    /// The person's identifying data was made unrecoverable (key destroyed).
    PersonErased {
        /// Erasure date.
        on: Date,
        /// Code of the legal basis.
        legal_basis: String,
    },
    /// A data subject's query or claim (Ley 1581 de 2012 arts. 14-15) was received.
    SubjectRequestReceived {
        /// 1, 2, ... within the case.
        subject_request_id: u32,
        /// Date received.
        on: Date,
        /// Query or claim.
        kind: SubjectRequestKind,
        /// The last day to answer: the 10th (query) or 15th (claim) business
        /// day after `on`, fixed when recorded.
        due_on: Date,
    },
    /// The answer period of a subject request was extended (once).
    SubjectRequestExtended {
        /// The request.
        subject_request_id: u32,
        /// Date the person was told of the delay.
        on: Date,
        /// Reason code of the delay.
        reason: String,
        /// The new last day: 5 (query) or 8 (claim) business days after the first one.
        due_on: Date,
    },
    /// A subject request was answered.
    SubjectRequestAnswered {
        /// The request.
        subject_request_id: u32,
        /// Date answered.
        on: Date,
        /// Outcome code.
        outcome: String,
    },
    /// A family link to another case was recorded (the other case records
    /// the same link with the inverse role, in the same commit).
    FamilyLinkRecorded {
        /// Date the link was established.
        on: Date,
        /// The link id, the same on both cases.
        link_id: String,
        /// What this case's person is to the other.
        role: LinkRole,
        /// The other case's id (no name, no document of it).
        other_case_id: String,
        /// The evidence cited.
        evidence: LinkEvidence,
    },
    /// A family link ended (recorded on both cases).
    FamilyLinkEnded {
        /// Date ended.
        on: Date,
        /// The link.
        link_id: String,
        /// The role this case held in it (as recorded), so a reader of
        /// this stream alone knows what ended.
        role: LinkRole,
        /// Why.
        reason: LinkEndReason,
    },
}

/// Every event type name, in declaration order; the log's `event_type` field
/// holds one of these.
pub const EVENT_TYPES: [&str; 37] = [
    "PersonRegistered",
    "PreRegistered",
    "SurveyCompleted",
    "BiometricAppointmentScheduled",
    "BiometricAppointmentMissed",
    "BiometricsCaptured",
    "InformationRequested",
    "InformationReceived",
    "Approved",
    "Denied",
    "AppealFiled",
    "AppealDecided",
    "Withdrawn",
    "PermitIssued",
    "CardPrinted",
    "CardDelivered",
    "CardAbandoned",
    "InterimCertificateIssued",
    "InterimCertificateExtended",
    "DuplicateRequested",
    "DuplicateIssued",
    "ValidityExtended",
    "PermitCancelled",
    "SupersededByVisa",
    "PersonalDataUpdated",
    "ResidenceUpdated",
    "CertificationRequested",
    "CertificationAssessed",
    "CertificationAwarded",
    "CertificationDenied",
    "ExitRecorded",
    "PersonErased",
    "SubjectRequestReceived",
    "SubjectRequestExtended",
    "SubjectRequestAnswered",
    "FamilyLinkRecorded",
    "FamilyLinkEnded",
];

impl Event {
    /// The stable type name stored with the event in the log (`PermitIssued`).
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::PersonRegistered { .. } => "PersonRegistered",
            Event::PreRegistered { .. } => "PreRegistered",
            Event::SurveyCompleted { .. } => "SurveyCompleted",
            Event::BiometricAppointmentScheduled { .. } => "BiometricAppointmentScheduled",
            Event::BiometricAppointmentMissed { .. } => "BiometricAppointmentMissed",
            Event::BiometricsCaptured { .. } => "BiometricsCaptured",
            Event::InformationRequested { .. } => "InformationRequested",
            Event::InformationReceived { .. } => "InformationReceived",
            Event::Approved { .. } => "Approved",
            Event::Denied { .. } => "Denied",
            Event::AppealFiled { .. } => "AppealFiled",
            Event::AppealDecided { .. } => "AppealDecided",
            Event::Withdrawn { .. } => "Withdrawn",
            Event::PermitIssued { .. } => "PermitIssued",
            Event::CardPrinted { .. } => "CardPrinted",
            Event::CardDelivered { .. } => "CardDelivered",
            Event::CardAbandoned { .. } => "CardAbandoned",
            Event::InterimCertificateIssued { .. } => "InterimCertificateIssued",
            Event::InterimCertificateExtended { .. } => "InterimCertificateExtended",
            Event::DuplicateRequested { .. } => "DuplicateRequested",
            Event::DuplicateIssued { .. } => "DuplicateIssued",
            Event::ValidityExtended { .. } => "ValidityExtended",
            Event::PermitCancelled { .. } => "PermitCancelled",
            Event::SupersededByVisa { .. } => "SupersededByVisa",
            Event::PersonalDataUpdated { .. } => "PersonalDataUpdated",
            Event::ResidenceUpdated { .. } => "ResidenceUpdated",
            Event::CertificationRequested { .. } => "CertificationRequested",
            Event::CertificationAssessed { .. } => "CertificationAssessed",
            Event::CertificationAwarded { .. } => "CertificationAwarded",
            Event::CertificationDenied { .. } => "CertificationDenied",
            Event::ExitRecorded { .. } => "ExitRecorded",
            Event::PersonErased { .. } => "PersonErased",
            Event::SubjectRequestReceived { .. } => "SubjectRequestReceived",
            Event::SubjectRequestExtended { .. } => "SubjectRequestExtended",
            Event::SubjectRequestAnswered { .. } => "SubjectRequestAnswered",
            Event::FamilyLinkRecorded { .. } => "FamilyLinkRecorded",
            Event::FamilyLinkEnded { .. } => "FamilyLinkEnded",
        }
    }

    /// The business date of the fact.
    pub fn on(&self) -> Date {
        match self {
            Event::PreRegistered { applied_on, .. } => *applied_on,
            Event::PersonRegistered { on, .. }
            | Event::SurveyCompleted { on, .. }
            | Event::BiometricAppointmentScheduled { on, .. }
            | Event::BiometricAppointmentMissed { on }
            | Event::BiometricsCaptured { on, .. }
            | Event::InformationRequested { on, .. }
            | Event::InformationReceived { on }
            | Event::Approved { on }
            | Event::Denied { on, .. }
            | Event::AppealFiled { on }
            | Event::AppealDecided { on, .. }
            | Event::Withdrawn { on }
            | Event::PermitIssued { on, .. }
            | Event::CardPrinted { on }
            | Event::CardDelivered { on }
            | Event::CardAbandoned { on }
            | Event::InterimCertificateIssued { on, .. }
            | Event::InterimCertificateExtended { on, .. }
            | Event::DuplicateRequested { on, .. }
            | Event::DuplicateIssued { on }
            | Event::ValidityExtended { on, .. }
            | Event::PermitCancelled { on, .. }
            | Event::SupersededByVisa { on, .. }
            | Event::PersonalDataUpdated { on, .. }
            | Event::ResidenceUpdated { on, .. }
            | Event::CertificationRequested { on, .. }
            | Event::CertificationAssessed { on, .. }
            | Event::CertificationAwarded { on, .. }
            | Event::CertificationDenied { on, .. }
            | Event::ExitRecorded { on, .. }
            | Event::PersonErased { on, .. }
            | Event::SubjectRequestReceived { on, .. }
            | Event::SubjectRequestExtended { on, .. }
            | Event::SubjectRequestAnswered { on, .. }
            | Event::FamilyLinkRecorded { on, .. }
            | Event::FamilyLinkEnded { on, .. } => *on,
        }
    }

    /// The sealed personal data the event carries, if any: what the `pii`
    /// module must have sealed, and what erasure makes unreadable.
    pub fn sealed(&self) -> Option<&Sealed> {
        match self {
            Event::PersonRegistered { identity, .. } | Event::PersonalDataUpdated { identity, .. } => {
                Some(identity)
            }
            Event::PermitIssued { permit_number, .. } => Some(permit_number),
            Event::SupersededByVisa { visa_number, .. } => Some(visa_number),
            _ => None,
        }
    }
}
