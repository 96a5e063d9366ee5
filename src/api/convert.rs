//! Wire <-> domain conversions, by hand, with validation that names the wire
//! field. Prost types stop here.
//!
//! Every command of one case that carries more than its date has its
//! converter here, named after its RPC: `fn <rpc>(message, on, today) ->
//! Result<PendingCommand, CaseError>` (`on` is the header's validated business
//! date). The Caseworker handler generated from the command table calls it.

use super::pb;
use crate::cases::{CaseError, CaseView, Identity, IdentityDocument, PendingCommand};
use crate::domain::{
    CancellationGround, CertificationRoute, ChannelCode, Command, CountryCode, Date, DenialReason,
    Department, DocumentType, DuplicateCause, EligibilityBasis, ExitKind, Municipality, PersonStatus, Sealed,
    Sector, Sex,
};
use crate::limits::{
    ACCESS_PURPOSE_BYTES_MAX, BIRTH_DATE_YEARS_AGO_MAX, CASE_HISTORY_EVENTS_MAX, CODE_BYTES_MAX,
    DOCUMENT_NUMBER_CHARS_MAX, HOUSEHOLD_SIZE_MAX, PERSON_ADDRESS_CHARS_MAX, PERSON_DOCUMENTS_MAX,
    PERSON_EMAIL_CHARS_MAX, PERSON_NAMES_CHARS_MAX, PERSON_PHONE_CHARS_MAX,
};

/// Maps a prost enum value to the domain enum with the same code.
macro_rules! from_wire {
    ($pb:ty, $dom:ty, $prefix:literal, $value:expr, $field:literal) => {{
        let v = <$pb>::try_from($value).map_err(|_| CaseError::invalid($field, "unknown value"))?;
        let name = v.as_str_name();
        let code = name.strip_prefix($prefix).unwrap_or(name);
        if code == "UNSPECIFIED" {
            return Err(CaseError::invalid($field, "required"));
        }
        <$dom>::parse(code).ok_or_else(|| CaseError::invalid($field, "not accepted"))?
    }};
}

/// Maps a domain enum to the prost enum value with the same code (0 if none).
macro_rules! to_wire {
    ($pb:ty, $prefix:literal, $value:expr) => {
        <$pb>::from_str_name(&format!("{}{}", $prefix, $value.as_str()))
            .map(|v| v as i32)
            .unwrap_or(0)
    };
}

pub(super) fn date(text: &str, field: &'static str) -> Result<Date, CaseError> {
    Date::parse(text).ok_or_else(|| CaseError::invalid(field, "expected a date YYYY-MM-DD"))
}

fn optional_date(text: &str, field: &'static str) -> Result<Option<Date>, CaseError> {
    if text.is_empty() {
        Ok(None)
    } else {
        date(text, field).map(Some)
    }
}

/// The business date of a command: the header's, or today; never in the future.
pub(super) fn business_date(text: &str, today: Date) -> Result<Date, CaseError> {
    let on = optional_date(text, "header.on")?.unwrap_or(today);
    if on > today {
        return Err(CaseError::invalid("header.on", "is in the future"));
    }
    Ok(on)
}

/// A code: 1..=[`CODE_BYTES_MAX`] characters of `[A-Z0-9_-]`.
pub(super) fn code(text: &str, field: &'static str) -> Result<String, CaseError> {
    displayable(text, field)?;
    if text.is_empty() {
        return Err(CaseError::invalid(field, "required"));
    }
    if text.len() > CODE_BYTES_MAX {
        return Err(CaseError::invalid(
            field,
            format!("longer than {CODE_BYTES_MAX} characters"),
        ));
    }
    if !text
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(CaseError::invalid(field, "allowed characters are A-Z 0-9 _ -"));
    }
    Ok(text.to_string())
}

/// Why a document, permit or visa number was refused by `pii::normalize`.
fn document_number_rule() -> String {
    format!("1..{DOCUMENT_NUMBER_CHARS_MAX} letters or digits")
}

/// Free text of personal data: bounded, nothing that hides or reorders what
/// is shown ([`displayable`]), trimmed.
fn text(value: &str, field: &'static str, max: usize, required: bool) -> Result<String, CaseError> {
    displayable(value, field)?;
    let v = value.trim();
    if required && v.is_empty() {
        return Err(CaseError::invalid(field, "required"));
    }
    if v.chars().count() > max {
        return Err(CaseError::invalid(field, format!("longer than {max} characters")));
    }
    Ok(v.to_string())
}

/// Characters refused in every string that is shown to people: they break
/// lines, reorder or hide text, so a name or number could display as
/// something else (a U+202E makes "ANA\u{202E}ZEMOG" read "ANAGOMEZ").
/// Control characters (Unicode Cc: C0, DEL, C1, so no tab or newline either),
/// the line and paragraph separators, the bidirectional marks, embeddings,
/// overrides and isolates, and the invisible format characters (zero-width
/// space, joiners, word joiner and invisible operators, soft hyphen,
/// deprecated format controls, byte-order mark, interlinear annotations,
/// tags).
const HIDDEN_CHARACTERS: [(char, char); 14] = [
    ('\u{0000}', '\u{001F}'),   // C0 controls
    ('\u{007F}', '\u{009F}'),   // DEL and C1 controls
    ('\u{00AD}', '\u{00AD}'),   // soft hyphen
    ('\u{061C}', '\u{061C}'),   // Arabic letter mark
    ('\u{180E}', '\u{180E}'),   // Mongolian vowel separator
    ('\u{200B}', '\u{200F}'),   // zero-width space, ZWNJ, ZWJ, LRM, RLM
    ('\u{2028}', '\u{2029}'),   // line and paragraph separators
    ('\u{202A}', '\u{202E}'),   // bidi embeddings and overrides
    ('\u{2060}', '\u{2064}'),   // word joiner, invisible operators
    ('\u{2066}', '\u{2069}'),   // bidi isolates
    ('\u{206A}', '\u{206F}'),   // deprecated format controls
    ('\u{FEFF}', '\u{FEFF}'),   // byte-order mark, zero-width no-break space
    ('\u{FFF9}', '\u{FFFB}'),   // interlinear annotations
    ('\u{E0000}', '\u{E007F}'), // tags
];

/// Refuses, naming `field`, a string that will be shown to people and holds
/// one of [`HIDDEN_CHARACTERS`]. Every such field passes here.
pub(super) fn displayable(value: &str, field: &'static str) -> Result<(), CaseError> {
    match value
        .chars()
        .find(|&c| HIDDEN_CHARACTERS.iter().any(|&(lo, hi)| (lo..=hi).contains(&c)))
    {
        None => Ok(()),
        Some(c) => Err(CaseError::invalid(
            field,
            format!(
                "contains U+{:04X}: control, bidirectional and invisible formatting characters are not allowed",
                u32::from(c)
            ),
        )),
    }
}

/// An assigned ISO 3166-1 alpha-3 code, or an ICAO code for a stateless
/// person or a refugee (`XXA`, `XXB`, `XXC`, `XXX`).
fn nationality(text: &str) -> Result<CountryCode, CaseError> {
    CountryCode::parse(text).ok_or_else(|| {
        let well_formed = text.len() == 3 && text.bytes().all(|b| b.is_ascii_uppercase());
        CaseError::invalid(
            "nationality",
            if well_formed {
                "not an assigned ISO 3166-1 alpha-3 code (nor XXA, XXB, XXC, XXX for stateless persons and refugees)"
            } else {
                "expected an ISO 3166-1 alpha-3 code (three letters A-Z)"
            },
        )
    })
}

fn department(text: &str, field: &'static str) -> Result<Department, CaseError> {
    Department::parse(text).ok_or_else(|| CaseError::invalid(field, "not a DIVIPOLA department code"))
}

fn municipality(text: &str, dept: Department, field: &'static str) -> Result<Municipality, CaseError> {
    if text.len() != 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CaseError::invalid(field, "not a 5-digit DIVIPOLA code"));
    }
    let m = Municipality::parse(text).ok_or_else(|| {
        CaseError::invalid(
            field,
            format!(
                "not a municipality or non-municipalized area of DIVIPOLA ({})",
                crate::domain::DIVIPOLA_VERSION
            ),
        )
    })?;
    if m.department() != dept {
        return Err(CaseError::invalid(field, "does not belong to the department"));
    }
    Ok(m)
}

/// Validates identifying data; returns it with the birth date.
pub(super) fn identity(p: Option<pb::PersonalData>, today: Date) -> Result<(Identity, Date), CaseError> {
    let p = p.ok_or_else(|| CaseError::invalid("person", "required"))?;
    let birth = date(&p.birth_date, "person.birth_date")?;
    if birth > today {
        return Err(CaseError::invalid("person.birth_date", "is in the future"));
    }
    if birth < today.add_months(-12 * BIRTH_DATE_YEARS_AGO_MAX) {
        return Err(CaseError::invalid(
            "person.birth_date",
            format!("more than {BIRTH_DATE_YEARS_AGO_MAX} years ago"),
        ));
    }
    if p.documents.is_empty() {
        return Err(CaseError::invalid(
            "person.documents",
            "at least one document is required",
        ));
    }
    if p.documents.len() > PERSON_DOCUMENTS_MAX {
        return Err(CaseError::invalid(
            "person.documents",
            format!("at most {PERSON_DOCUMENTS_MAX} documents"),
        ));
    }
    let mut documents: Vec<IdentityDocument> = Vec::with_capacity(p.documents.len());
    for d in &p.documents {
        let kind = from_wire!(
            pb::DocumentType,
            DocumentType,
            "DOCUMENT_TYPE_",
            d.r#type,
            "person.documents.type"
        );
        displayable(&d.number, "person.documents.number")?;
        let number = crate::pii::normalize(kind.as_str(), &d.number)
            .map_err(|_| CaseError::invalid("person.documents.number", document_number_rule()))?;
        if documents
            .iter()
            .any(|x| x.doc_type == kind.as_str() && x.number == number)
        {
            return Err(CaseError::invalid("person.documents", "the same document twice"));
        }
        documents.push(IdentityDocument {
            doc_type: kind.as_str().to_string(),
            number,
        });
    }
    if !p.email.is_empty() && !p.email.contains('@') {
        return Err(CaseError::invalid("person.email", "not an e-mail address"));
    }
    let identity = Identity {
        given_names: text(&p.given_names, "person.given_names", PERSON_NAMES_CHARS_MAX, true)?,
        family_names: text(
            &p.family_names,
            "person.family_names",
            PERSON_NAMES_CHARS_MAX,
            true,
        )?,
        birth_date: birth.to_string(),
        documents,
        phone: text(&p.phone, "person.phone", PERSON_PHONE_CHARS_MAX, false)?,
        email: text(&p.email, "person.email", PERSON_EMAIL_CHARS_MAX, false)?,
        address: text(&p.address, "person.address", PERSON_ADDRESS_CHARS_MAX, false)?,
    };
    Ok((identity, birth))
}

fn document_types(identity: &Identity) -> Vec<DocumentType> {
    identity
        .documents
        .iter()
        .filter_map(|d| DocumentType::parse(&d.doc_type))
        .collect()
}

pub(super) fn register_person(
    m: pb::RegisterPersonRequest,
    on: Date,
    today: Date,
) -> Result<PendingCommand, CaseError> {
    let (identity, birth) = identity(m.person, today)?;
    let dept = department(&m.department, "department")?;
    let command = Command::RegisterPerson {
        on,
        identity: Sealed(Vec::new()),
        sex: from_wire!(pb::Sex, Sex, "SEX_", m.sex, "sex"),
        birth_year: birth.year(),
        birth_month: birth.month(),
        nationality: nationality(&m.nationality)?,
        department: dept,
        municipality: municipality(&m.municipality, dept, "municipality")?,
        documents: document_types(&identity),
    };
    Ok(PendingCommand::Register { identity, command })
}

pub(super) use super::subject::{answer_subject_request, extend_subject_request, receive_subject_request};

pub(super) fn update_personal_data(
    m: pb::UpdatePersonalDataRequest,
    on: Date,
    today: Date,
) -> Result<PendingCommand, CaseError> {
    let (identity, _) = identity(m.person, today)?;
    let command = Command::UpdatePersonalData {
        on,
        identity: Sealed(Vec::new()),
        documents: document_types(&identity),
    };
    Ok(PendingCommand::UpdatePersonalData { identity, command })
}

pub(super) fn pre_register(
    m: pb::PreRegisterRequest,
    on: Date,
    _today: Date,
) -> Result<PendingCommand, CaseError> {
    Ok(PendingCommand::Plain(Command::PreRegister {
        on,
        channel: {
            displayable(&m.channel, "channel")?;
            ChannelCode::parse(&m.channel)
                .ok_or_else(|| CaseError::invalid("channel", "not a channel code"))?
        },
        basis: from_wire!(
            pb::EligibilityBasis,
            EligibilityBasis,
            "ELIGIBILITY_BASIS_",
            m.basis,
            "basis"
        ),
    }))
}

pub(super) fn complete_survey(
    m: pb::CompleteSurveyRequest,
    on: Date,
    _today: Date,
) -> Result<PendingCommand, CaseError> {
    if !(1..=HOUSEHOLD_SIZE_MAX).contains(&m.household_size) {
        return Err(CaseError::invalid(
            "household_size",
            format!("must be 1..{HOUSEHOLD_SIZE_MAX}"),
        ));
    }
    let sector = if m.sector == 0 {
        None
    } else {
        Some(from_wire!(pb::Sector, Sector, "SECTOR_", m.sector, "sector"))
    };
    Ok(PendingCommand::Plain(Command::CompleteSurvey {
        on,
        household_size: m.household_size as u8,
        employed: m.employed,
        sector,
    }))
}

pub(super) fn schedule_biometrics(
    m: pb::ScheduleBiometricsRequest,
    on: Date,
    _today: Date,
) -> Result<PendingCommand, CaseError> {
    Ok(PendingCommand::Plain(Command::ScheduleBiometrics {
        on,
        appointment_on: date(&m.appointment_on, "appointment_on")?,
        site: code(&m.site, "site")?,
    }))
}

pub(super) fn record_biometric_capture(
    m: pb::RecordBiometricCaptureRequest,
    on: Date,
    _today: Date,
) -> Result<PendingCommand, CaseError> {
    let biometric_ref: [u8; 32] = m
        .biometric_ref
        .as_slice()
        .try_into()
        .map_err(|_| CaseError::invalid("biometric_ref", "must be 32 bytes"))?;
    Ok(PendingCommand::Plain(Command::RecordBiometricCapture {
        on,
        site: code(&m.site, "site")?,
        operator: code(&m.operator, "operator")?,
        biometric_ref,
    }))
}

pub(super) fn request_information(
    m: pb::RequestInformationRequest,
    on: Date,
    _today: Date,
) -> Result<PendingCommand, CaseError> {
    Ok(PendingCommand::Plain(Command::RequestInformation {
        on,
        reason: code(&m.reason, "reason")?,
    }))
}

pub(super) fn decide_appeal(
    m: pb::DecideAppealRequest,
    on: Date,
    _today: Date,
) -> Result<PendingCommand, CaseError> {
    Ok(PendingCommand::Plain(Command::DecideAppeal {
        on,
        upheld: m.upheld,
    }))
}

pub(super) fn deny(m: pb::DenyRequest, on: Date, _today: Date) -> Result<PendingCommand, CaseError> {
    Ok(PendingCommand::Plain(Command::Deny {
        on,
        reason: from_wire!(
            pb::DenialReason,
            DenialReason,
            "DENIAL_REASON_",
            m.reason,
            "reason"
        ),
    }))
}

pub(super) fn issue_permit(
    m: pb::IssuePermitRequest,
    on: Date,
    _today: Date,
) -> Result<PendingCommand, CaseError> {
    displayable(&m.permit_number, "permit_number")?;
    let permit_number = crate::pii::normalize("PPT", &m.permit_number)
        .map_err(|_| CaseError::invalid("permit_number", document_number_rule()))?;
    Ok(PendingCommand::IssuePermit {
        permit_number,
        command: Command::IssuePermit {
            on,
            permit_number: Sealed(Vec::new()),
            valid_until: optional_date(&m.valid_until, "valid_until")?,
        },
    })
}

pub(super) fn supersede_by_visa(
    m: pb::SupersedeByVisaRequest,
    on: Date,
    _today: Date,
) -> Result<PendingCommand, CaseError> {
    displayable(&m.visa_number, "visa_number")?;
    let visa_number = crate::pii::normalize("VISA", &m.visa_number)
        .map_err(|_| CaseError::invalid("visa_number", document_number_rule()))?;
    Ok(PendingCommand::SupersedeByVisa {
        visa_number,
        command: Command::SupersedeByVisa {
            on,
            visa_number: Sealed(Vec::new()),
            valid_until: optional_date(&m.valid_until, "valid_until")?,
        },
    })
}

pub(super) fn issue_interim_certificate(
    m: pb::InterimCertificateRequest,
    on: Date,
    _today: Date,
) -> Result<PendingCommand, CaseError> {
    Ok(PendingCommand::Plain(Command::IssueInterimCertificate {
        on,
        valid_until: date(&m.valid_until, "valid_until")?,
    }))
}

pub(super) fn extend_interim_certificate(
    m: pb::InterimCertificateRequest,
    on: Date,
    _today: Date,
) -> Result<PendingCommand, CaseError> {
    Ok(PendingCommand::Plain(Command::ExtendInterimCertificate {
        on,
        valid_until: date(&m.valid_until, "valid_until")?,
    }))
}

pub(super) fn request_duplicate(
    m: pb::RequestDuplicateRequest,
    on: Date,
    _today: Date,
) -> Result<PendingCommand, CaseError> {
    Ok(PendingCommand::Plain(Command::RequestDuplicate {
        on,
        cause: from_wire!(
            pb::DuplicateCause,
            DuplicateCause,
            "DUPLICATE_CAUSE_",
            m.cause,
            "cause"
        ),
    }))
}

pub(super) fn extend_validity(
    m: pb::ExtendValidityRequest,
    on: Date,
    _today: Date,
) -> Result<PendingCommand, CaseError> {
    let valid_until = date(&m.valid_until, "valid_until")?;
    Ok(PendingCommand::Plain(Command::ExtendValidity { on, valid_until }))
}

pub(super) fn cancel_permit(
    m: pb::CancelPermitRequest,
    on: Date,
    _today: Date,
) -> Result<PendingCommand, CaseError> {
    Ok(PendingCommand::Plain(Command::CancelPermit {
        on,
        ground: from_wire!(
            pb::CancellationGround,
            CancellationGround,
            "CANCELLATION_GROUND_",
            m.ground,
            "ground"
        ),
    }))
}

pub(super) fn update_residence(
    m: pb::UpdateResidenceRequest,
    on: Date,
    _today: Date,
) -> Result<PendingCommand, CaseError> {
    let dept = department(&m.department, "department")?;
    Ok(PendingCommand::Plain(Command::UpdateResidence {
        on,
        department: dept,
        municipality: municipality(&m.municipality, dept, "municipality")?,
    }))
}

pub(super) fn request_certification(
    m: pb::RequestCertificationRequest,
    on: Date,
    _today: Date,
) -> Result<PendingCommand, CaseError> {
    Ok(PendingCommand::Plain(Command::RequestCertification {
        on,
        route: from_wire!(
            pb::CertificationRoute,
            CertificationRoute,
            "CERTIFICATION_ROUTE_",
            m.route,
            "route"
        ),
        sector: from_wire!(pb::Sector, Sector, "SECTOR_", m.sector, "sector"),
    }))
}

pub(super) fn assess_certification(
    m: pb::AssessCertificationRequest,
    on: Date,
    _today: Date,
) -> Result<PendingCommand, CaseError> {
    Ok(PendingCommand::Plain(Command::AssessCertification {
        certification_id: certification_id(m.certification_id)?,
        on,
        passed: m.passed,
    }))
}

fn certification_id(id: u32) -> Result<u32, CaseError> {
    if id == 0 {
        return Err(CaseError::invalid("certification_id", "required"));
    }
    Ok(id)
}

pub(super) fn award_certification(
    m: pb::AwardCertificationRequest,
    on: Date,
    _today: Date,
) -> Result<PendingCommand, CaseError> {
    Ok(PendingCommand::Plain(Command::AwardCertification {
        certification_id: certification_id(m.certification_id)?,
        on,
        standard_code: code(&m.standard_code, "standard_code")?,
        issuing_body: code(&m.issuing_body, "issuing_body")?,
    }))
}

pub(super) fn deny_certification(
    m: pb::DenyCertificationRequest,
    on: Date,
    _today: Date,
) -> Result<PendingCommand, CaseError> {
    Ok(PendingCommand::Plain(Command::DenyCertification {
        certification_id: certification_id(m.certification_id)?,
        on,
        reason: code(&m.reason, "reason")?,
    }))
}

pub(super) fn record_exit(
    m: pb::RecordExitRequest,
    on: Date,
    _today: Date,
) -> Result<PendingCommand, CaseError> {
    Ok(PendingCommand::Plain(Command::RecordExit {
        on,
        kind: from_wire!(pb::ExitKind, ExitKind, "EXIT_KIND_", m.kind, "kind"),
        destination: exit_destination(&m)?,
    }))
}

/// The destination of a departure: empty (not known) or an assigned ISO
/// 3166-1 alpha-3 code (the ICAO nationality codes are not countries).
fn exit_destination(m: &pb::RecordExitRequest) -> Result<Option<CountryCode>, CaseError> {
    if m.destination.is_empty() {
        return Ok(None);
    }
    CountryCode::parse(&m.destination)
        .filter(|c| !c.as_str().starts_with("XX"))
        .map(Some)
        .ok_or_else(|| {
            CaseError::invalid(
                "destination",
                "expected an assigned ISO 3166-1 alpha-3 country code",
            )
        })
}

pub(super) fn erase_person(
    m: pb::ErasePersonRequest,
    on: Date,
    _today: Date,
) -> Result<PendingCommand, CaseError> {
    Ok(PendingCommand::Plain(Command::ErasePerson {
        on,
        legal_basis: code(&m.legal_basis, "legal_basis")?,
    }))
}

pub(super) fn document_query(d: Option<pb::IdentityDocument>) -> Result<(String, String), CaseError> {
    let d = d.ok_or_else(|| CaseError::invalid("document", "required"))?;
    let kind = from_wire!(
        pb::DocumentType,
        DocumentType,
        "DOCUMENT_TYPE_",
        d.r#type,
        "document.type"
    );
    Ok((kind.as_str().to_string(), d.number))
}

pub(super) fn purpose(p: &str) -> Result<String, CaseError> {
    displayable(p, "purpose")?;
    let p = p.trim();
    // A code (recorded in the access event), so no name can be typed into it.
    if p.is_empty()
        || p.len() > ACCESS_PURPOSE_BYTES_MAX
        || !p
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
    {
        return Err(CaseError::invalid(
            "purpose",
            format!("required: a code of 1..{ACCESS_PURPOSE_BYTES_MAX} characters A-Z a-z 0-9 _ . : -"),
        ));
    }
    Ok(p.to_string())
}

pub(super) fn status(s: PersonStatus) -> i32 {
    to_wire!(pb::PersonStatus, "PERSON_STATUS_", s)
}

pub(super) fn opt_date(d: Option<Date>) -> String {
    d.map(|d| d.to_string()).unwrap_or_default()
}

pub(super) fn event_summary(ev: &crate::log::StoredEvent, e: &crate::domain::Event) -> pb::EventSummary {
    let r = &ev.record;
    pb::EventSummary {
        seq: r.seq,
        version: r.stream_version,
        event_type: r.event_type.clone(),
        recorded_at_us: r.recorded_at_us,
        actor_user: r.actor.user_id.clone(),
        actor_office: r.actor.office.clone(),
        request_id: r.request_id.clone(),
        on: e.on().to_string(),
        hash: crate::hex::encode(&ev.hash),
        policy_seq: crate::codec::policy_citation(&r.payload).unwrap_or(0),
    }
}

/// The wire form of an opened identity.
pub(super) fn identity_pb(i: &Identity) -> pb::PersonalData {
    pb::PersonalData {
        given_names: i.given_names.clone(),
        family_names: i.family_names.clone(),
        birth_date: i.birth_date.clone(),
        documents: i
            .documents
            .iter()
            .map(|d| pb::IdentityDocument {
                r#type: pb::DocumentType::from_str_name(&format!("DOCUMENT_TYPE_{}", d.doc_type))
                    .map(|v| v as i32)
                    .unwrap_or(0),
                number: d.number.clone(),
            })
            .collect(),
        phone: i.phone.clone(),
        email: i.email.clone(),
        address: i.address.clone(),
    }
}

/// The wire form of a case read, under the policy as it stands (`book`):
/// next steps by the rules in force today, the interim certificate with
/// the general measures applied.
pub(super) fn case(view: CaseView, today: Date, book: &crate::domain::PolicyBook) -> pb::Case {
    let catalog = book.current_on(today);
    let s = &view.state;
    let person = s.person();
    let identity = view.identity.as_ref().map(identity_pb);
    let application = s.application().map(|a| pb::Application {
        application_id: a.id,
        channel: a.channel.as_str().to_string(),
        basis: to_wire!(pb::EligibilityBasis, "ELIGIBILITY_BASIS_", a.basis),
        applied_on: a.applied_on.to_string(),
        missed_appointments: a.missed_appointments as u32,
        biometrics_on: opt_date(a.biometrics_on),
        decided_on: opt_date(a.decided_on),
        denial_reason: a
            .denial
            .map(|d| to_wire!(pb::DenialReason, "DENIAL_REASON_", d.reason))
            .unwrap_or(0),
    });
    let interim = s.interim_certificate().map(|i| {
        let channel = s
            .application()
            .map_or(crate::domain::ChannelCode::UNKNOWN, |a| a.channel);
        (
            i.valid_until,
            book.interim_validity(channel, i.valid_until, book.version()),
        )
    });
    let permit = s.permit().map(|p| pb::Permit {
        r#type: to_wire!(pb::PermitType, "PERMIT_TYPE_", p.permit_type),
        permit_number: view.permit_number.clone().unwrap_or_default(),
        issued_on: p.issued_on.to_string(),
        valid_until: p.valid_until.to_string(),
        card_state: p.card.as_str().to_string(),
        cancelled: p.cancelled.is_some(),
        cancellation_ground: p
            .cancelled
            .map(|c| to_wire!(pb::CancellationGround, "CANCELLATION_GROUND_", c.ground))
            .unwrap_or(0),
        duplicates: p.duplicates as u32,
        interim_valid_until: opt_date(interim.as_ref().map(|(_, d)| d.valid_until)),
        interim_valid_until_recorded: opt_date(interim.as_ref().map(|(r, _)| *r)),
        interim_extended_by: interim
            .as_ref()
            .map(|(_, d)| d.extended_by.clone())
            .unwrap_or_default(),
    });
    let history_from = view.events.len().saturating_sub(CASE_HISTORY_EVENTS_MAX);
    pb::Case {
        case_id: view.case_id.clone(),
        version: view.version,
        status: status(crate::domain::person_status(s, today)),
        stage: s.state_name().to_string(),
        person: identity,
        erased: s.is_erased(),
        sex: person.map(|p| to_wire!(pb::Sex, "SEX_", p.sex)).unwrap_or(0),
        birth_year: person.map(|p| p.birth_year as u32).unwrap_or(0),
        birth_month: person.map(|p| p.birth_month as u32).unwrap_or(0),
        nationality: person
            .map(|p| p.nationality.as_str().to_string())
            .unwrap_or_default(),
        department: person.map(|p| p.department.to_string()).unwrap_or_default(),
        municipality: person.map(|p| p.municipality.to_string()).unwrap_or_default(),
        application,
        permit,
        certifications: s
            .certifications()
            .iter()
            .map(|c| pb::Certification {
                certification_id: c.id,
                route: to_wire!(pb::CertificationRoute, "CERTIFICATION_ROUTE_", c.route),
                sector: to_wire!(pb::Sector, "SECTOR_", c.sector),
                stage: c.stage.as_str().to_string(),
                standard_code: c.standard_code.clone().unwrap_or_default(),
                issuing_body: c.issuing_body.clone().unwrap_or_default(),
            })
            .collect(),
        exit: s
            .exit()
            .map(|x| to_wire!(pb::ExitKind, "EXIT_KIND_", x.kind))
            .unwrap_or(0),
        history: view.events[history_from..]
            .iter()
            .map(|(ev, e)| event_summary(ev, e))
            .collect(),
        stage_code: stage_code(s),
        erased_on: opt_date(s.erased_on()),
        next_steps: s
            .next_steps(today, catalog)
            .into_iter()
            .map(|n| pb::NextStep {
                command: n.command.to_string(),
                earliest_on: opt_date(n.earliest_on),
                until: opt_date(n.until),
            })
            .collect(),
        subject_requests: s
            .subject_requests()
            .iter()
            .map(super::subject::subject_request)
            .collect(),
        family_links: s.active_links().map(super::family::link).collect(),
    }
}

/// The stage of a case as the wire enum (`CASE_STAGE_<stage code>`).
pub(super) fn stage_code(s: &crate::domain::CaseState) -> i32 {
    to_wire!(pb::CaseStage, "CASE_STAGE_", s.stage())
}

/// The wire form of a channel's rules as they stand on `on`.
pub(super) fn channel(rules: &crate::domain::ChannelRules, on: Date) -> pb::Channel {
    let window = |w: &crate::domain::channels::Window| pb::ChannelWindow {
        opens_on: opt_date(w.opens_on),
        closes_on: opt_date(w.closes_on),
        minors_close_on: opt_date(w.minors_close_on),
    };
    let current = rules.window_on(on).map(window).unwrap_or_default();
    let in_force = rules.in_force.as_ref();
    let repealed = in_force.and_then(|f| f.repealed.as_ref());
    let (valid_until, validity_months) = match rules.validity {
        crate::domain::Validity::Until(end) => (end.to_string(), 0),
        crate::domain::Validity::Months(months) => (String::new(), u32::from(months)),
    };
    let linked = rules.linked_permit.as_ref();
    pb::Channel {
        code: rules.code.as_str().to_string(),
        name: rules.name.clone(),
        source: rules.source.clone(),
        permit_type: to_wire!(pb::PermitType, "PERMIT_TYPE_", rules.permit_type),
        bases: rules
            .bases
            .iter()
            .map(|b| to_wire!(pb::EligibilityBasis, "ELIGIBILITY_BASIS_", *b))
            .collect(),
        opens_on: current.opens_on,
        closes_on: current.closes_on,
        minors_close_on: current.minors_close_on,
        valid_until,
        validity_months,
        extendable: rules.extendable,
        extensions_max: u32::from(rules.extensions_max),
        once_per_person: rules.once_per_person,
        physical_card: rules.physical_card,
        card_uncollected_days: rules.card_uncollected_days.map(u32::from).unwrap_or(0),
        interim_days_max: rules.interim_days_max.map(u32::from).unwrap_or(0),
        decision_days: rules.decision_days.map(u32::from).unwrap_or(0),
        appeal_window_days: u32::from(rules.appeal_window_days),
        appeal_window_count: rules.appeal_window_count.as_str().to_string(),
        missed_appointments_max: u32::from(rules.missed_appointments_max),
        windows: rules.windows.iter().map(window).collect(),
        instrument: in_force.map(|f| f.instrument.clone()).unwrap_or_default(),
        policy_seq: in_force.map(|f| f.seq).unwrap_or(0),
        in_force_since: opt_date(in_force.map(|f| f.since)),
        repealed_on: opt_date(repealed.map(|r| r.0)),
        repealed_by: repealed.map(|r| r.1.clone()).unwrap_or_default(),
        linked_permit_role: linked.map(|l| l.role.as_str().to_string()).unwrap_or_default(),
        linked_permit_type: linked
            .map(|l| l.permit_type.as_str().to_string())
            .unwrap_or_default(),
        linked_permit_held_on: opt_date(linked.map(|l| l.held_on)),
    }
}

#[cfg(test)]
mod displayable_tests {
    use super::displayable;

    #[test]
    fn hidden_characters_are_refused_at_every_range_edge() {
        let edges =
            "\u{0}\t\n\r\u{1F}\u{7F}\u{85}\u{9F}\u{AD}\u{61C}\u{180E}\u{200B}\u{200C}\u{200D}\u{200E}\
            \u{200F}\u{2028}\u{2029}\u{202A}\u{202E}\u{2060}\u{2064}\u{2066}\u{2069}\u{206A}\u{206F}\u{FEFF}\
            \u{FFF9}\u{FFFB}\u{E0000}\u{E007F}";
        assert_eq!(edges.chars().count(), 31);
        for c in edges.chars() {
            let e = displayable(&format!("ANA{c}MARIA"), "person.given_names").unwrap_err();
            assert!(
                e.to_string().contains("person.given_names"),
                "U+{:04X}: {e}",
                u32::from(c)
            );
        }
    }

    #[test]
    fn names_in_any_script_with_ordinary_spaces_and_marks_pass() {
        for ok in [
            "María José",
            "NÚÑEZ-O'BRIEN",
            "Ğülşen",
            "محمد",
            "Nguyễn",
            "Ana\u{A0}Paula",
            "Jose\u{301}",
            "\u{2000}\u{200A}",
            "\u{2010}\u{2065}\u{2070}",
            "+57 300 123 4567",
            "ana@example.org",
        ] {
            assert!(displayable(ok, "person.given_names").is_ok(), "{ok:?}");
        }
    }
}

/// The Caseworker request conversion fed arbitrary field values
/// (proptest-driven fuzzing): it answers with a command or a field error,
/// never panics, and every error names a field of the request.
#[cfg(test)]
mod fuzz_tests {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "\\PC{0,40}",
            "[0-9]{0,6}",
            "[A-Z]{0,4}",
            "[0-9-]{0,12}",
            ".{0,300}"
        ]
    }

    fn person() -> impl Strategy<Value = pb::PersonalData> {
        (
            text(),
            text(),
            text(),
            prop::collection::vec((any::<i32>(), text()), 0..10),
            text(),
            text(),
        )
            .prop_map(|(given_names, family_names, birth_date, docs, phone, email)| {
                pb::PersonalData {
                    given_names,
                    family_names,
                    birth_date,
                    documents: docs
                        .into_iter()
                        .map(|(r#type, number)| pb::IdentityDocument { r#type, number })
                        .collect(),
                    phone,
                    email,
                    address: String::new(),
                }
            })
    }

    fn today() -> Date {
        Date::parse("2026-12-06").unwrap()
    }

    fn named_field(e: &CaseError) -> bool {
        matches!(e, CaseError::Invalid { field, .. } if !field.is_empty())
            || matches!(e, CaseError::TooLarge { field, .. } if !field.is_empty())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn registration_and_residence_take_any_values(
            person in prop::option::of(person()),
            sex in any::<i32>(),
            nationality in text(),
            department in text(),
            municipality in text(),
        ) {
            let m = pb::RegisterPersonRequest {
                header: None,
                person,
                sex,
                nationality,
                department: department.clone(),
                municipality: municipality.clone(),
            };
            if let Err(e) = register_person(m, today(), today()) {
                prop_assert!(named_field(&e), "{e:?}");
            }
            let m = pb::UpdateResidenceRequest { header: None, department, municipality };
            if let Err(e) = update_residence(m, today(), today()) {
                prop_assert!(named_field(&e), "{e:?}");
            }
        }

        #[test]
        fn steps_take_any_values(a in text(), b in text(), n in any::<i32>(), bytes in prop::collection::vec(any::<u8>(), 0..40)) {
            let on = today();
            let results = [
                pre_register(pb::PreRegisterRequest { header: None, channel: a.clone(), basis: n }, on, on).err(),
                schedule_biometrics(pb::ScheduleBiometricsRequest { header: None, appointment_on: a.clone(), site: b.clone() }, on, on).err(),
                record_biometric_capture(pb::RecordBiometricCaptureRequest { header: None, site: a.clone(), operator: b.clone(), biometric_ref: bytes }, on, on).err(),
                issue_permit(pb::IssuePermitRequest { header: None, permit_number: a.clone(), valid_until: b.clone() }, on, on).err(),
                supersede_by_visa(pb::SupersedeByVisaRequest { header: None, visa_number: a.clone(), valid_until: b.clone() }, on, on).err(),
                award_certification(pb::AwardCertificationRequest { header: None, certification_id: n as u32, standard_code: a.clone(), issuing_body: b.clone() }, on, on).err(),
                date(&a, "header.on").err(),
                purpose(&b).err(),
            ];
            for e in results.into_iter().flatten() {
                prop_assert!(named_field(&e), "{e:?}");
            }
        }
    }
}
