//! The command and event vocabulary, once: two tables that every layer
//! expands with a macro of its own (the "X-macro" pattern), so that a command
//! or an event is spelled in one row here and nowhere else by enumeration.
//!
//! [`command_table!`] lists every [`Command`](super::Command): its fields
//! (the domain enum is generated from them), the `decide` module that holds
//! its rule, the Caseworker RPC that takes it (its snake-case method name,
//! which is also its `ImportCommand` field, and its request message), the
//! role that may call it, and its traits (`after_erasure`).
//! Commands of one case are under `one_case`; the family-link commands,
//! decided on two cases and answered with a `FamilyLinkResult`, under
//! `two_cases`. Its expansions: `domain/command.rs` (the enum, `name`, `on`,
//! `rules`, the traits), `api/mod.rs` (the Caseworker handlers),
//! `api/import.rs` (import dispatch), `auth/policy.rs` (roles) and
//! `simulate/wire.rs` (the client call). How to add a command:
//! ARCHITECTURE.md, "Adding a command".
//!
//! [`event_table!`] lists every [`Event`](super::Event): its business-date
//! field and its fields, each with the field of the stored protobuf message
//! of the same name (`proto/regularization/v1/events.proto`) it is kept in.
//! Its expansions: `domain/event.rs` (the enum, `EVENT_TYPES`,
//! `event_type`, `on`) and `codec/mod.rs` (encode and decode, field by field
//! through the `Stored` conversions of each field type). A stored name or
//! field never changes (the log is hash-chained): a row is only ever added.
//!
//! `event_table!(expander)` calls `expander!` with the rows. The command
//! table has three views: `command_table!(rows => expander)` passes every
//! column (the domain's enum), `command_table!(wire => expander)` one
//! `(Name rpc_method RequestMessage Who)` a command, grouped as
//! `one_case [...] two_cases [...]` (the API, import, auth and simulator
//! expansions), `command_table!(fields => expander)` one
//! `Name { field: Type, ... }` a command (the next-steps probes). Either may carry extra tokens for the expander,
//! `command_table!(wire => expander { ... })`; they come first, in braces
//! (empty if none). The tables hold tokens only: the domain's expansion
//! ignores the wire columns, so the domain still does not depend on prost.
//!
//! Row order is the order of the Caseworker service's RPCs (commands) and of
//! [`EVENT_TYPES`](super::EVENT_TYPES) (events).

/// Every command (see the module documentation). A row:
/// `Name in Rules via rpc_method(RequestMessage) by Who, trait, ... records Event { fields }`
/// where `Rules` names the `decide` module that holds its rule
/// ([`Rules`](super::command::Rules)), `Who` is `CaseWork` (caseworkers and
/// supervisors) or `Supervisor`, and a request message `SimpleStepRequest`
/// means the command carries nothing but its date (any other has its
/// converter `api/convert.rs::<rpc_method>`). `records Event` (optional)
/// says that the command, once its rule passed, records that one event with
/// its own fields, value for value ([`Command::recorded`](super::Command)):
/// the two rows' fields must then be the same, which the compiler checks.
macro_rules! command_table {
    ($view:ident => $expand:ident) => {
        $crate::domain::vocabulary::command_table! { $view => $expand {} }
    };
    ($view:ident => $expand:ident { $($extra:tt)* }) => {
        $crate::domain::vocabulary::command_view! {
            $view $expand { $($extra)* }
            one_case {
                /// Open a case for a person. `identity` is sealed; the rest is statistical.
                RegisterPerson in Person via register_person(RegisterPersonRequest) by CaseWork records PersonRegistered {
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
                }
                /// Open an application through `channel` on `basis`.
                PreRegister in Application via pre_register(PreRegisterRequest) by CaseWork {
                    /// Application date, checked against the channel's window.
                    on: Date,
                    /// A channel code of the catalog.
                    channel: ChannelCode,
                    /// The eligibility basis claimed; the channel must accept it.
                    basis: EligibilityBasis,
                }
                /// Record the characterization survey (once per application).
                CompleteSurvey in Application via complete_survey(CompleteSurveyRequest) by CaseWork records SurveyCompleted {
                    /// Date answered.
                    on: Date,
                    /// People in the household, 1..=30.
                    household_size: u8,
                    /// Whether the person works.
                    employed: bool,
                    /// Sector of work, only when employed.
                    sector: Option<Sector>,
                }
                /// Give (or re-give) a biometric appointment.
                ScheduleBiometrics in Application via schedule_biometrics(ScheduleBiometricsRequest) by CaseWork {
                    /// Date the appointment was given.
                    on: Date,
                    /// Date of the appointment, on or after `on`.
                    appointment_on: Date,
                    /// Site code.
                    site: String,
                }
                /// The person missed the appointment.
                RecordMissedAppointment in Application via record_missed_appointment(SimpleStepRequest) by CaseWork {
                    /// Date recorded, on or after the appointment date.
                    on: Date,
                }
                /// Biometrics were captured; starts the review.
                RecordBiometricCapture in Application via record_biometric_capture(RecordBiometricCaptureRequest) by CaseWork records BiometricsCaptured {
                    /// Capture date.
                    on: Date,
                    /// Site code.
                    site: String,
                    /// Operator code.
                    operator: String,
                    /// Reference to the enrolment (not all zero).
                    biometric_ref: BiometricRef,
                }
                /// Ask the applicant to fix an inconsistency.
                RequestInformation in Application via request_information(RequestInformationRequest) by CaseWork {
                    /// Date asked.
                    on: Date,
                    /// Reason code.
                    reason: String,
                }
                /// The applicant supplied what was asked.
                ReceiveInformation in Application via receive_information(SimpleStepRequest) by CaseWork {
                    /// Date received.
                    on: Date,
                }
                /// Approve the application (supervisor).
                Approve in Application via approve(SimpleStepRequest) by Supervisor {
                    /// Decision date.
                    on: Date,
                }
                /// Deny the application (supervisor).
                Deny in Application via deny(DenyRequest) by Supervisor {
                    /// Decision date.
                    on: Date,
                    /// Reason code.
                    reason: DenialReason,
                }
                /// Appeal a denial, within the channel's appeal window.
                FileAppeal in Application via file_appeal(SimpleStepRequest) by CaseWork {
                    /// Filing date.
                    on: Date,
                }
                /// Decide the appeal; `upheld` approves the application.
                DecideAppeal in Application via decide_appeal(DecideAppealRequest) by Supervisor {
                    /// Decision date.
                    on: Date,
                    /// Whether the appeal succeeds.
                    upheld: bool,
                }
                /// Withdraw (or close as abandoned) an application not yet decided.
                Withdraw in Application via withdraw(SimpleStepRequest) by CaseWork, after_erasure {
                    /// Date withdrawn.
                    on: Date,
                }
                /// Issue the permit of an approved application.
                IssuePermit in Permit via issue_permit(IssuePermitRequest) by CaseWork {
                    /// Issue date.
                    on: Date,
                    /// Sealed permit number.
                    permit_number: Sealed,
                    /// Validity end; `None` takes the channel's default, a date must be
                    /// after `on` and not beyond the default.
                    valid_until: Option<Date>,
                }
                /// The card was printed.
                PrintCard in Permit via print_card(SimpleStepRequest) by CaseWork {
                    /// Print date.
                    on: Date,
                }
                /// The card was handed over.
                DeliverCard in Permit via deliver_card(SimpleStepRequest) by CaseWork {
                    /// Delivery date.
                    on: Date,
                }
                /// Declare an uncollected card abandoned; also cancels the permit.
                AbandonCard in Permit via abandon_card(SimpleStepRequest) by Supervisor, after_erasure {
                    /// Date declared, at least the channel's days after printing.
                    on: Date,
                }
                /// Issue an interim certificate while the card is awaited.
                IssueInterimCertificate in Permit via issue_interim_certificate(InterimCertificateRequest) by CaseWork {
                    /// Issue date.
                    on: Date,
                    /// End of validity, after `on`.
                    valid_until: Date,
                }
                /// Extend the interim certificate.
                ExtendInterimCertificate in Permit via extend_interim_certificate(InterimCertificateRequest) by CaseWork {
                    /// Date extended.
                    on: Date,
                    /// New end, after the current one.
                    valid_until: Date,
                }
                /// Ask for a duplicate of a delivered card.
                RequestDuplicate in Permit via request_duplicate(RequestDuplicateRequest) by CaseWork {
                    /// Request date.
                    on: Date,
                    /// Why.
                    cause: DuplicateCause,
                }
                /// Issue (reprint) the requested duplicate.
                IssueDuplicate in Permit via issue_duplicate(SimpleStepRequest) by CaseWork {
                    /// Issue date.
                    on: Date,
                }
                /// Extend the permit's validity, where the channel allows it.
                ExtendValidity in Permit via extend_validity(ExtendValidityRequest) by CaseWork {
                    /// Date extended.
                    on: Date,
                    /// New end, after the current one and within one validity period.
                    valid_until: Date,
                }
                /// Cancel an active permit (supervisor).
                CancelPermit in Permit via cancel_permit(CancelPermitRequest) by Supervisor, after_erasure {
                    /// Cancellation date.
                    on: Date,
                    /// Ground; `UNCOLLECTED_CARD` only through `AbandonCard`.
                    ground: CancellationGround,
                }
                /// Record that regular status now rests on a visa.
                SupersedeByVisa in Permit via supersede_by_visa(SupersedeByVisaRequest) by CaseWork {
                    /// Date of the visa.
                    on: Date,
                    /// Sealed visa number.
                    visa_number: Sealed,
                    /// Visa end, if any (after `on`).
                    valid_until: Option<Date>,
                }
                /// Rectify identity data (allowed after an exit, refused after erasure).
                UpdatePersonalData in Person via update_personal_data(UpdatePersonalDataRequest) by CaseWork {
                    /// Date rectified.
                    on: Date,
                    /// The new sealed identity.
                    identity: Sealed,
                    /// The kinds of document now held (at least one).
                    documents: Vec<DocumentType>,
                }
                /// Record a move.
                UpdateResidence in Person via update_residence(UpdateResidenceRequest) by CaseWork {
                    /// Date of the move.
                    on: Date,
                    /// New department.
                    department: Department,
                    /// New municipality, inside `department`.
                    municipality: Municipality,
                }
                /// Request a worker certification (adults only).
                RequestCertification in Certification via request_certification(RequestCertificationRequest) by CaseWork {
                    /// Request date.
                    on: Date,
                    /// Recognition route.
                    route: CertificationRoute,
                    /// Sector of the skill.
                    sector: Sector,
                }
                /// Record the assessment of a requested certification.
                AssessCertification in Certification via assess_certification(AssessCertificationRequest) by CaseWork {
                    /// The certification, as allocated by `RequestCertification`.
                    certification_id: u32,
                    /// Assessment date.
                    on: Date,
                    /// Whether the person passed.
                    passed: bool,
                }
                /// Award a certification whose assessment was passed.
                AwardCertification in Certification via award_certification(AwardCertificationRequest) by Supervisor {
                    /// The certification.
                    certification_id: u32,
                    /// Award date.
                    on: Date,
                    /// Occupational standard code.
                    standard_code: String,
                    /// Issuing body code (SENA, a council ...).
                    issuing_body: String,
                }
                /// Deny a requested or failed certification.
                DenyCertification in Certification via deny_certification(DenyCertificationRequest) by Supervisor, after_erasure {
                    /// The certification.
                    certification_id: u32,
                    /// Denial date.
                    on: Date,
                    /// Reason code.
                    reason: String,
                }
                /// Record that the person left the caseload (terminal).
                RecordExit in Person via record_exit(RecordExitRequest) by CaseWork, after_erasure {
                    /// Exit date.
                    on: Date,
                    /// How.
                    kind: ExitKind,
                    /// Destination country of a departure, if known (DEPARTED only).
                    #[serde(default, skip_serializing_if = "Option::is_none")]
                    destination: Option<CountryCode>,
                }
                /// Make the person's identifying data unrecoverable.
                ErasePerson in Person via erase_person(ErasePersonRequest) by Supervisor {
                    /// Erasure date.
                    on: Date,
                    /// Code of the legal basis (e.g. `LEY_1581_2012_ART_8`).
                    legal_basis: String,
                }
                /// Record a data subject's query or claim (Ley 1581 de 2012 arts.
                /// 14-15); `decide` fixes its answer deadline in business days.
                ReceiveSubjectRequest in Subject via receive_subject_request(ReceiveSubjectRequestRequest) by CaseWork {
                    /// Date received.
                    on: Date,
                    /// Query or claim.
                    kind: SubjectRequestKind,
                }
                /// Extend an open subject request's deadline, once, on or before it.
                ExtendSubjectRequest in Subject via extend_subject_request(ExtendSubjectRequestRequest) by Supervisor {
                    /// The request, as allocated by `ReceiveSubjectRequest`.
                    subject_request_id: u32,
                    /// Date the person was told of the delay.
                    on: Date,
                    /// Reason code of the delay (the law requires the motive).
                    reason: String,
                }
                /// Record the answer to an open subject request (late answers too).
                AnswerSubjectRequest in Subject via answer_subject_request(AnswerSubjectRequestRequest) by Supervisor {
                    /// The request.
                    subject_request_id: u32,
                    /// Date answered.
                    on: Date,
                    /// Outcome code (e.g. `REPORT_DELIVERED`, `RECTIFIED`, `REFUSED_LEGAL_DUTY`).
                    outcome: String,
                }
            }
            two_cases {
                /// Link this case to another (both record it: see
                /// [`CaseState::decide_link`](super::CaseState::decide_link)).
                RecordFamilyLink in Family via record_family_link(RecordFamilyLinkRequest) by CaseWork {
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
                }
                /// End an active link (on both cases).
                EndFamilyLink in Family via end_family_link(EndFamilyLinkRequest) by CaseWork, after_erasure {
                    /// Date ended.
                    on: Date,
                    /// The link.
                    link_id: String,
                    /// Why.
                    reason: LinkEndReason,
                }
            }
        }
    };
}
pub(crate) use command_table;

/// The views of [`command_table!`], each from the rows read once here:
/// `rows` every column, one
/// `([attributes] Name Rules rpc_method RequestMessage Who [traits] [Event?] { fields })`
/// a command, grouped as `one_case [...] two_cases [...]`; `wire` the
/// columns the gRPC side reads; `fields` each command's name and fields,
/// one `Name { field: Type, ... }` a command in table order (no groups, no
/// documentation).
macro_rules! command_view {
    (
        $view:ident $expand:ident $extra:tt
        $(
            $group:ident {
                $(
                    $(#[$meta:meta])*
                    $name:ident in $rules:ident via $rpc:ident ($request:ident) by $who:ident $(, $trait_:ident)*
                    $(records $event:ident)?
                    { $( $(#[$fmeta:meta])* $field:ident : $ty:ty ),* $(,)? }
                )*
            }
        )*
    ) => {
        $crate::domain::vocabulary::command_view! {
            @$view $expand $extra
            $( $group [ $(
                ([$(#[$meta])*] $name $rules $rpc $request $who [$($trait_)*] [$($event)?]
                    { $( $(#[$fmeta])* $field : $ty ),* })
            )* ] )*
        }
    };
    (@rows $expand:ident $extra:tt $($rows:tt)*) => {
        $expand! { $extra $($rows)* }
    };
    (@wire $expand:ident $extra:tt $( $group:ident [ $( ($meta:tt $name:ident $rules:ident $rpc:ident $request:ident $who:ident $traits:tt $event:tt $fields:tt) )* ] )*) => {
        $expand! { $extra $( $group [ $( ($name $rpc $request $who) )* ] )* }
    };
    (@fields $expand:ident $extra:tt $( $group:ident [ $( ($meta:tt $name:ident $rules:ident $rpc:ident $request:ident $who:ident $traits:tt $event:tt { $( $(#[$fmeta:meta])* $field:ident : $ty:ty ),* }) )* ] )*) => {
        $expand! { $extra $($( $name { $($field : $ty),* } )*)* }
    };
}
pub(crate) use command_view;

/// Every event of a case stream (see the module documentation). A row:
/// `Name (business date field) { field: Type => stored_field, ... }`.
macro_rules! event_table {
    ($expand:ident) => {
        $expand! {
            /// A person entered the registry; opens the case.
            PersonRegistered (on) {
                /// Registration date.
                on: Date => on_days,
                /// Names, document numbers, contact: sealed by the `pii` module.
                identity: Sealed => identity_sealed,
                /// Sex as in the document.
                sex: Sex => sex,
                /// Birth year, for age bands.
                birth_year: u16 => birth_year,
                /// Birth month (1..=12), for exact minor/adult rules.
                birth_month: u8 => birth_month,
                /// ISO 3166 alpha-3 nationality (`VEN`).
                nationality: CountryCode => nationality,
                /// Department of residence.
                department: Department => department,
                /// Municipality of residence, inside `department`.
                municipality: Municipality => municipality,
                /// Kinds of document presented; their numbers are inside `identity`.
                documents: Vec<DocumentType> => documents,
            }
            /// An application through a channel was pre-registered (RUMV for ETPV).
            PreRegistered (applied_on) {
                /// 1, 2, ... within the case: one application at a time.
                application_id: u32 => application_id,
                /// The channel's catalog code.
                channel: ChannelCode => channel,
                /// The eligibility basis claimed (accepted by the channel).
                basis: EligibilityBasis => basis,
                /// Application date (inside the channel's window).
                applied_on: Date => applied_on_days,
            }
            /// The socio-economic characterization survey was answered.
            SurveyCompleted (on) {
                /// Date answered.
                on: Date => on_days,
                /// People in the household.
                household_size: u8 => household_size,
                /// Whether the person works.
                employed: bool => employed,
                /// Sector of work, when employed.
                sector: Option<Sector> => sector,
            }
            /// A biometric appointment was given.
            BiometricAppointmentScheduled (on) {
                /// Date the appointment was given.
                on: Date => on_days,
                /// Date of the appointment.
                appointment_on: Date => appointment_on_days,
                /// Site code.
                site: String => site,
            }
            /// The person did not come to the appointment.
            BiometricAppointmentMissed (on) {
                /// Date recorded (on or after the appointment).
                on: Date => on_days,
            }
            /// Biometrics were captured; the review starts.
            BiometricsCaptured (on) {
                /// Capture date.
                on: Date => on_days,
                /// Site code.
                site: String => site,
                /// Operator code (staff identifier, not a name).
                operator: String => operator,
                /// Reference to the enrolment in the biometric system, never a template.
                #[serde(with = "super::sealed::hex_32")]
                biometric_ref: BiometricRef => biometric_ref,
            }
            /// The reviewer needs an inconsistency fixed ("required").
            InformationRequested (on) {
                /// Date asked.
                on: Date => on_days,
                /// Reason code.
                reason: String => reason,
            }
            /// The applicant supplied what was required; review resumes.
            InformationReceived (on) {
                /// Date received.
                on: Date => on_days,
            }
            /// The application was approved.
            Approved (on) {
                /// Decision date.
                on: Date => on_days,
            }
            /// The application was denied.
            Denied (on) {
                /// Decision date.
                on: Date => on_days,
                /// Why.
                reason: DenialReason => reason,
                /// Last day an appeal may be filed (decision date plus the channel's
                /// appeal window, fixed when decided so later rule changes do not
                /// rewrite history).
                appeal_until: Date => appeal_until_days,
            }
            /// An appeal (recurso de reposición) was filed against the denial.
            AppealFiled (on) {
                /// Filing date.
                on: Date => on_days,
            }
            /// The appeal was decided.
            AppealDecided (on) {
                /// Decision date.
                on: Date => on_days,
                /// Whether the applicant won (the application is then approved).
                upheld: bool => upheld,
            }
            /// The application was withdrawn or abandoned before a decision.
            Withdrawn (on) {
                /// Date withdrawn.
                on: Date => on_days,
            }
            /// The permit was issued.
            PermitIssued (on) {
                /// Issue date.
                on: Date => on_days,
                /// The channel's permit type.
                permit_type: PermitType => permit_type,
                /// Sealed permit number.
                permit_number: Sealed => permit_number_sealed,
                /// End of validity.
                valid_until: Date => valid_until_days,
            }
            /// The card was printed.
            CardPrinted (on) {
                /// Print date.
                on: Date => on_days,
            }
            /// The card was delivered in person.
            CardDelivered (on) {
                /// Delivery date.
                on: Date => on_days,
            }
            /// The card was not collected in time; always followed by `PermitCancelled`.
            CardAbandoned (on) {
                /// Date declared.
                on: Date => on_days,
            }
            /// An interim certificate (certificado de trámite) was issued.
            InterimCertificateIssued (on) {
                /// Issue date.
                on: Date => on_days,
                /// End of validity.
                valid_until: Date => valid_until_days,
            }
            /// The interim certificate was extended.
            InterimCertificateExtended (on) {
                /// Date extended.
                on: Date => on_days,
                /// New end of validity.
                valid_until: Date => valid_until_days,
            }
            /// A duplicate card was requested.
            DuplicateRequested (on) {
                /// Request date.
                on: Date => on_days,
                /// Why.
                cause: DuplicateCause => cause,
            }
            /// The duplicate was issued; the card is printed again and awaits delivery.
            DuplicateIssued (on) {
                /// Issue (reprint) date.
                on: Date => on_days,
            }
            /// The permit's validity was extended.
            ValidityExtended (on) {
                /// Date extended.
                on: Date => on_days,
                /// New end of validity.
                valid_until: Date => valid_until_days,
            }
            /// The permit was cancelled.
            PermitCancelled (on) {
                /// Cancellation date.
                on: Date => on_days,
                /// Ground.
                ground: CancellationGround => ground,
            }
            /// Regular status now rests on a visa (resident visa R, ...).
            SupersededByVisa (on) {
                /// Date of the visa.
                on: Date => on_days,
                /// Sealed visa number.
                visa_number: Sealed => visa_number_sealed,
                /// End of validity (`None`: no end).
                valid_until: Option<Date> => valid_until_days,
            }
            /// Identity data was rectified.
            PersonalDataUpdated (on) {
                /// Date rectified.
                on: Date => on_days,
                /// The new sealed identity.
                identity: Sealed => identity_sealed,
                /// Kinds of document now held.
                documents: Vec<DocumentType> => documents,
            }
            /// The person moved.
            ResidenceUpdated (on) {
                /// Date of the move.
                on: Date => on_days,
                /// New department.
                department: Department => department,
                /// New municipality, inside `department`.
                municipality: Municipality => municipality,
            }
            /// A worker certification was requested.
            CertificationRequested (on) {
                /// 1, 2, ... within the case.
                certification_id: u32 => certification_id,
                /// Request date.
                on: Date => on_days,
                /// Recognition route.
                route: CertificationRoute => route,
                /// Sector of the skill.
                sector: Sector => sector,
            }
            /// The certification assessment took place.
            CertificationAssessed (on) {
                /// The certification.
                certification_id: u32 => certification_id,
                /// Assessment date.
                on: Date => on_days,
                /// Whether the person passed.
                passed: bool => passed,
            }
            /// The certification was awarded.
            CertificationAwarded (on) {
                /// The certification.
                certification_id: u32 => certification_id,
                /// Award date.
                on: Date => on_days,
                /// Occupational standard code.
                standard_code: String => standard_code,
                /// Issuing body code.
                issuing_body: String => issuing_body,
            }
            /// The certification was denied.
            CertificationDenied (on) {
                /// The certification.
                certification_id: u32 => certification_id,
                /// Denial date.
                on: Date => on_days,
                /// Reason code.
                reason: String => reason,
            }
            /// The person left the caseload; terminal.
            ExitRecorded (on) {
                /// Exit date.
                on: Date => on_days,
                /// Departed, nationalized or deceased.
                kind: ExitKind => kind,
                /// Where a departed person went, when known (ISO 3166-1 alpha-3);
                /// `None` when not recorded (always for the other kinds).
                #[serde(default, skip_serializing_if = "Option::is_none")]
                destination: Option<CountryCode> => destination,
            }
            /// The person's identifying data was made unrecoverable (key destroyed).
            PersonErased (on) {
                /// Erasure date.
                on: Date => on_days,
                /// Code of the legal basis.
                legal_basis: String => legal_basis,
            }
            /// A data subject's query or claim (Ley 1581 de 2012 arts. 14-15) was received.
            SubjectRequestReceived (on) {
                /// 1, 2, ... within the case.
                subject_request_id: u32 => subject_request_id,
                /// Date received.
                on: Date => on_days,
                /// Query or claim.
                kind: SubjectRequestKind => kind,
                /// The last day to answer: the 10th (query) or 15th (claim) business
                /// day after `on`, fixed when recorded.
                due_on: Date => due_on_days,
            }
            /// The answer period of a subject request was extended (once).
            SubjectRequestExtended (on) {
                /// The request.
                subject_request_id: u32 => subject_request_id,
                /// Date the person was told of the delay.
                on: Date => on_days,
                /// Reason code of the delay.
                reason: String => reason,
                /// The new last day: 5 (query) or 8 (claim) business days after the first one.
                due_on: Date => due_on_days,
            }
            /// A subject request was answered.
            SubjectRequestAnswered (on) {
                /// The request.
                subject_request_id: u32 => subject_request_id,
                /// Date answered.
                on: Date => on_days,
                /// Outcome code.
                outcome: String => outcome,
            }
            /// A family link to another case was recorded (the other case records
            /// the same link with the inverse role, in the same commit).
            FamilyLinkRecorded (on) {
                /// Date the link was established.
                on: Date => on_days,
                /// The link id, the same on both cases.
                link_id: String => link_id,
                /// What this case's person is to the other.
                role: LinkRole => role,
                /// The other case's id (no name, no document of it).
                other_case_id: String => other_case_id,
                /// The evidence cited.
                evidence: LinkEvidence => evidence,
            }
            /// A family link ended (recorded on both cases).
            FamilyLinkEnded (on) {
                /// Date ended.
                on: Date => on_days,
                /// The link.
                link_id: String => link_id,
                /// The role this case held in it (as recorded), so a reader of
                /// this stream alone knows what ended.
                role: LinkRole => role,
                /// Why.
                reason: LinkEndReason => reason,
            }
        }
    };
}
pub(crate) use event_table;
