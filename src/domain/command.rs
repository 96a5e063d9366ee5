//! Commands: what a caseworker or supervisor asks to happen to a case.
//!
//! A command is a request, not a fact: [`CaseState::decide`](super::CaseState::decide)
//! checks it against the case and the channel rules and either refuses it or
//! turns it into events. Every command carries `on`, the business date the
//! step happened (which may be in the past, never after the `today` given to
//! `decide`). Identifiers the system assigns (application and certification
//! ids) are not in commands: `decide` allocates them.

use serde::{Deserialize, Serialize};

use super::codes::{ChannelCode, CountryCode};
use super::date::Date;
use super::divipola::{Department, Municipality};
use super::family::{LinkEndReason, LinkEvidence, LinkRole};
use super::sealed::{BiometricRef, Sealed};
use super::types::{
    CancellationGround, CertificationRoute, DenialReason, DocumentType, DuplicateCause, EligibilityBasis,
    ExitKind, Sector, Sex, SubjectRequestKind,
};

/// A request to change one case. Field meanings match the event each command
/// produces (see [`Event`](super::Event)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Open a case for a person. `identity` is sealed; the rest is statistical.
    RegisterPerson {
        /// Business date of the registration.
        on: Date,
        /// Sealed names, document numbers and contact data.
        identity: Sealed,
        /// Sex as in the document.
        sex: Sex,
        /// Year of birth (with the month, enough for age bands and minor rules).
        birth_year: u16,
        /// Month of birth, 1..=12.
        birth_month: u8,
        /// ISO 3166 alpha-3 nationality.
        nationality: CountryCode,
        /// Department of residence.
        department: Department,
        /// Municipality of residence, inside `department`.
        municipality: Municipality,
        /// Kinds of document presented (at least one).
        documents: Vec<DocumentType>,
    },
    /// Open an application through `channel` on `basis`.
    PreRegister {
        /// Application date, checked against the channel's window.
        on: Date,
        /// A channel code of the catalog.
        channel: ChannelCode,
        /// The eligibility basis claimed; the channel must accept it.
        basis: EligibilityBasis,
    },
    /// Record the characterization survey (once per application).
    CompleteSurvey {
        /// Date answered.
        on: Date,
        /// People in the household, 1..=30.
        household_size: u8,
        /// Whether the person works.
        employed: bool,
        /// Sector of work, only when employed.
        sector: Option<Sector>,
    },
    /// Give (or re-give) a biometric appointment.
    ScheduleBiometrics {
        /// Date the appointment was given.
        on: Date,
        /// Date of the appointment, on or after `on`.
        appointment_on: Date,
        /// Site code.
        site: String,
    },
    /// The person missed the appointment.
    RecordMissedAppointment {
        /// Date recorded, on or after the appointment date.
        on: Date,
    },
    /// Biometrics were captured; starts the review.
    RecordBiometricCapture {
        /// Capture date.
        on: Date,
        /// Site code.
        site: String,
        /// Operator code.
        operator: String,
        /// Reference to the enrolment (not all zero).
        biometric_ref: BiometricRef,
    },
    /// Ask the applicant to fix an inconsistency.
    RequestInformation {
        /// Date asked.
        on: Date,
        /// Reason code.
        reason: String,
    },
    /// The applicant supplied what was asked.
    ReceiveInformation {
        /// Date received.
        on: Date,
    },
    /// Approve the application (supervisor).
    Approve {
        /// Decision date.
        on: Date,
    },
    /// Deny the application (supervisor).
    Deny {
        /// Decision date.
        on: Date,
        /// Reason code.
        reason: DenialReason,
    },
    /// Appeal a denial, within the channel's appeal window.
    FileAppeal {
        /// Filing date.
        on: Date,
    },
    /// Decide the appeal; `upheld` approves the application.
    DecideAppeal {
        /// Decision date.
        on: Date,
        /// Whether the appeal succeeds.
        upheld: bool,
    },
    /// Withdraw (or close as abandoned) an application not yet decided.
    Withdraw {
        /// Date withdrawn.
        on: Date,
    },
    /// Issue the permit of an approved application.
    IssuePermit {
        /// Issue date.
        on: Date,
        /// Sealed permit number.
        permit_number: Sealed,
        /// Validity end; `None` takes the channel's default, a date must be
        /// after `on` and not beyond the default.
        valid_until: Option<Date>,
    },
    /// The card was printed.
    PrintCard {
        /// Print date.
        on: Date,
    },
    /// The card was handed over.
    DeliverCard {
        /// Delivery date.
        on: Date,
    },
    /// Declare an uncollected card abandoned; also cancels the permit.
    AbandonCard {
        /// Date declared, at least the channel's days after printing.
        on: Date,
    },
    /// Issue an interim certificate while the card is awaited.
    IssueInterimCertificate {
        /// Issue date.
        on: Date,
        /// End of validity, after `on`.
        valid_until: Date,
    },
    /// Extend the interim certificate.
    ExtendInterimCertificate {
        /// Date extended.
        on: Date,
        /// New end, after the current one.
        valid_until: Date,
    },
    /// Ask for a duplicate of a delivered card.
    RequestDuplicate {
        /// Request date.
        on: Date,
        /// Why.
        cause: DuplicateCause,
    },
    /// Issue (reprint) the requested duplicate.
    IssueDuplicate {
        /// Issue date.
        on: Date,
    },
    /// Extend the permit's validity, where the channel allows it.
    ExtendValidity {
        /// Date extended.
        on: Date,
        /// New end, after the current one and within one validity period.
        valid_until: Date,
    },
    /// Cancel an active permit (supervisor).
    CancelPermit {
        /// Cancellation date.
        on: Date,
        /// Ground; `UNCOLLECTED_CARD` only through `AbandonCard`.
        ground: CancellationGround,
    },
    /// Record that regular status now rests on a visa.
    SupersedeByVisa {
        /// Date of the visa.
        on: Date,
        /// Sealed visa number.
        visa_number: Sealed,
        /// Visa end, if any (after `on`).
        valid_until: Option<Date>,
    },
    /// Rectify identity data (allowed after an exit, refused after erasure).
    UpdatePersonalData {
        /// Date rectified.
        on: Date,
        /// The new sealed identity.
        identity: Sealed,
        /// The kinds of document now held (at least one).
        documents: Vec<DocumentType>,
    },
    /// Record a move.
    UpdateResidence {
        /// Date of the move.
        on: Date,
        /// New department.
        department: Department,
        /// New municipality, inside `department`.
        municipality: Municipality,
    },
    /// Request a worker certification (adults only).
    RequestCertification {
        /// Request date.
        on: Date,
        /// Recognition route.
        route: CertificationRoute,
        /// Sector of the skill.
        sector: Sector,
    },
    /// Record the assessment of a requested certification.
    AssessCertification {
        /// The certification, as allocated by `RequestCertification`.
        certification_id: u32,
        /// Assessment date.
        on: Date,
        /// Whether the person passed.
        passed: bool,
    },
    /// Award a certification whose assessment was passed.
    AwardCertification {
        /// The certification.
        certification_id: u32,
        /// Award date.
        on: Date,
        /// Occupational standard code.
        standard_code: String,
        /// Issuing body code (SENA, a council ...).
        issuing_body: String,
    },
    /// Deny a requested or failed certification.
    DenyCertification {
        /// The certification.
        certification_id: u32,
        /// Denial date.
        on: Date,
        /// Reason code.
        reason: String,
    },
    /// Record that the person left the caseload (terminal).
    RecordExit {
        /// Exit date.
        on: Date,
        /// How.
        kind: ExitKind,
        /// Destination country of a departure, if known (DEPARTED only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        destination: Option<CountryCode>,
    },
    /// Make the person's identifying data unrecoverable.
    ErasePerson {
        /// Erasure date.
        on: Date,
        /// Code of the legal basis (e.g. `LEY_1581_2012_ART_8`).
        legal_basis: String,
    },
    /// Record a data subject's query or claim (Ley 1581 de 2012 arts.
    /// 14-15); `decide` fixes its answer deadline in business days.
    ReceiveSubjectRequest {
        /// Date received.
        on: Date,
        /// Query or claim.
        kind: SubjectRequestKind,
    },
    /// Extend an open subject request's deadline, once, on or before it.
    ExtendSubjectRequest {
        /// The request, as allocated by `ReceiveSubjectRequest`.
        subject_request_id: u32,
        /// Date the person was told of the delay.
        on: Date,
        /// Reason code of the delay (the law requires the motive).
        reason: String,
    },
    /// Record the answer to an open subject request (late answers too).
    AnswerSubjectRequest {
        /// The request.
        subject_request_id: u32,
        /// Date answered.
        on: Date,
        /// Outcome code (e.g. `REPORT_DELIVERED`, `RECTIFIED`, `REFUSED_LEGAL_DUTY`).
        outcome: String,
    },
    /// Link this case to another (both record it: see
    /// [`CaseState::decide_link`](super::CaseState::decide_link)).
    RecordFamilyLink {
        /// Date the link was established from the evidence.
        on: Date,
        /// The link id, assigned by the case service from the request id
        /// ([`link_id_for_request`](super::family::link_id_for_request)).
        link_id: String,
        /// What this case's person is to the other (the other records the inverse).
        role: LinkRole,
        /// The other case.
        other_case_id: String,
        /// The document that proves it.
        evidence: LinkEvidence,
    },
    /// End an active link (on both cases).
    EndFamilyLink {
        /// Date ended.
        on: Date,
        /// The link.
        link_id: String,
        /// Why.
        reason: LinkEndReason,
    },
}

impl Command {
    /// The command's stable name, used in rejections (`DeliverCard`).
    pub fn name(&self) -> &'static str {
        match self {
            Command::RegisterPerson { .. } => "RegisterPerson",
            Command::PreRegister { .. } => "PreRegister",
            Command::CompleteSurvey { .. } => "CompleteSurvey",
            Command::ScheduleBiometrics { .. } => "ScheduleBiometrics",
            Command::RecordMissedAppointment { .. } => "RecordMissedAppointment",
            Command::RecordBiometricCapture { .. } => "RecordBiometricCapture",
            Command::RequestInformation { .. } => "RequestInformation",
            Command::ReceiveInformation { .. } => "ReceiveInformation",
            Command::Approve { .. } => "Approve",
            Command::Deny { .. } => "Deny",
            Command::FileAppeal { .. } => "FileAppeal",
            Command::DecideAppeal { .. } => "DecideAppeal",
            Command::Withdraw { .. } => "Withdraw",
            Command::IssuePermit { .. } => "IssuePermit",
            Command::PrintCard { .. } => "PrintCard",
            Command::DeliverCard { .. } => "DeliverCard",
            Command::AbandonCard { .. } => "AbandonCard",
            Command::IssueInterimCertificate { .. } => "IssueInterimCertificate",
            Command::ExtendInterimCertificate { .. } => "ExtendInterimCertificate",
            Command::RequestDuplicate { .. } => "RequestDuplicate",
            Command::IssueDuplicate { .. } => "IssueDuplicate",
            Command::ExtendValidity { .. } => "ExtendValidity",
            Command::CancelPermit { .. } => "CancelPermit",
            Command::SupersedeByVisa { .. } => "SupersedeByVisa",
            Command::UpdatePersonalData { .. } => "UpdatePersonalData",
            Command::UpdateResidence { .. } => "UpdateResidence",
            Command::RequestCertification { .. } => "RequestCertification",
            Command::AssessCertification { .. } => "AssessCertification",
            Command::AwardCertification { .. } => "AwardCertification",
            Command::DenyCertification { .. } => "DenyCertification",
            Command::RecordExit { .. } => "RecordExit",
            Command::ErasePerson { .. } => "ErasePerson",
            Command::ReceiveSubjectRequest { .. } => "ReceiveSubjectRequest",
            Command::ExtendSubjectRequest { .. } => "ExtendSubjectRequest",
            Command::AnswerSubjectRequest { .. } => "AnswerSubjectRequest",
            Command::RecordFamilyLink { .. } => "RecordFamilyLink",
            Command::EndFamilyLink { .. } => "EndFamilyLink",
        }
    }

    /// The business date the command claims.
    pub fn on(&self) -> Date {
        match self {
            Command::RegisterPerson { on, .. }
            | Command::PreRegister { on, .. }
            | Command::CompleteSurvey { on, .. }
            | Command::ScheduleBiometrics { on, .. }
            | Command::RecordMissedAppointment { on }
            | Command::RecordBiometricCapture { on, .. }
            | Command::RequestInformation { on, .. }
            | Command::ReceiveInformation { on }
            | Command::Approve { on }
            | Command::Deny { on, .. }
            | Command::FileAppeal { on }
            | Command::DecideAppeal { on, .. }
            | Command::Withdraw { on }
            | Command::IssuePermit { on, .. }
            | Command::PrintCard { on }
            | Command::DeliverCard { on }
            | Command::AbandonCard { on }
            | Command::IssueInterimCertificate { on, .. }
            | Command::ExtendInterimCertificate { on, .. }
            | Command::RequestDuplicate { on, .. }
            | Command::IssueDuplicate { on }
            | Command::ExtendValidity { on, .. }
            | Command::CancelPermit { on, .. }
            | Command::SupersedeByVisa { on, .. }
            | Command::UpdatePersonalData { on, .. }
            | Command::UpdateResidence { on, .. }
            | Command::RequestCertification { on, .. }
            | Command::AssessCertification { on, .. }
            | Command::AwardCertification { on, .. }
            | Command::DenyCertification { on, .. }
            | Command::RecordExit { on, .. }
            | Command::ErasePerson { on, .. }
            | Command::ReceiveSubjectRequest { on, .. }
            | Command::ExtendSubjectRequest { on, .. }
            | Command::AnswerSubjectRequest { on, .. }
            | Command::RecordFamilyLink { on, .. }
            | Command::EndFamilyLink { on, .. } => *on,
        }
    }

    /// The steps an erased case may still record: how its process ends
    /// (withdrawal of an undecided application, cancellation of a permit or
    /// of an uncollected card, denial of a pending certification) and the
    /// person's exit. None of them carries or produces personal data; an
    /// erased case records nothing that continues its process (Ley 1581 de
    /// 2012: the data was suppressed, so no new decision is taken on it).
    /// The person's own requests under that law also stay open to them
    /// (an erasure is itself the answer to such a claim, and the person may
    /// still ask what is held and who consulted it): none carries personal data.
    pub fn allowed_after_erasure(&self) -> bool {
        matches!(
            self,
            Command::Withdraw { .. }
                | Command::CancelPermit { .. }
                | Command::AbandonCard { .. }
                | Command::DenyCertification { .. }
                | Command::RecordExit { .. }
                | Command::EndFamilyLink { .. }
        ) || self.is_subject_request()
    }

    /// Whether the command is one of a data subject's requests (Ley 1581):
    /// accepted in every stage, after an exit and after erasure.
    pub fn is_subject_request(&self) -> bool {
        matches!(
            self,
            Command::ReceiveSubjectRequest { .. }
                | Command::ExtendSubjectRequest { .. }
                | Command::AnswerSubjectRequest { .. }
        )
    }

    /// Whether the command carries sealed personal data (never allowed
    /// once the person is erased: it would make them identifiable again).
    pub fn carries_personal_data(&self) -> bool {
        matches!(
            self,
            Command::RegisterPerson { .. }
                | Command::IssuePermit { .. }
                | Command::SupersedeByVisa { .. }
                | Command::UpdatePersonalData { .. }
        )
    }
}
