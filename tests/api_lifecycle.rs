//! End-to-end: whole case files through the caseworker gRPC API on a real
//! server (sled store in a temp dir): the PPT lifecycle from registration to
//! duplicate card, data updates and a worker certification; denial and
//! appeal both ways; an abandoned card.

mod common;

use common::*;
use registry::api::pb;
use registry::log::SyncMode;

use pb::{DocumentType as Doc, PersonStatus as St};

const IRREGULAR: i32 = St::Irregular as i32;
const IN_PROCESS: i32 = St::InProcess as i32;
const REGULAR_PPT: i32 = St::RegularPpt as i32;

/// Registers a person and takes their ETPV application to UNDER_REVIEW.
async fn to_under_review(c: &mut Client, given: &str, cedula: &str, month: &str) -> Tracker {
    let on = |d: &str| format!("2022-{month}-{d}");
    let p = person(
        given,
        "PRUEBA LOPEZ",
        "1988-02-10",
        &[(Doc::VenezuelanCedula, cedula)],
    );
    let r = ok(c.register_person(req(register_request(p, &on("01")))).await);
    let mut t = Tracker::registered(&r);
    assert_eq!(r.status, IRREGULAR);
    let r = ok(c
        .pre_register(req(pb::PreRegisterRequest {
            header: t.next(&on("02")),
            channel: "ETPV".into(),
            basis: pb::EligibilityBasis::Pip as i32,
        }))
        .await);
    t.step(&r, "PRE_REGISTERED", &["PreRegistered"]);
    let r = ok(c
        .schedule_biometrics(req(pb::ScheduleBiometricsRequest {
            header: t.next(&on("03")),
            appointment_on: on("10"),
            site: "CUC-02".into(),
        }))
        .await);
    t.step(&r, "BIOMETRICS_SCHEDULED", &["BiometricAppointmentScheduled"]);
    let r = ok(c
        .record_biometric_capture(req(pb::RecordBiometricCaptureRequest {
            header: t.next(&on("10")),
            site: "CUC-02".into(),
            operator: "OP-7".into(),
            biometric_ref: biometric_ref(),
        }))
        .await);
    t.step(&r, "UNDER_REVIEW", &["BiometricsCaptured"]);
    assert_eq!(r.status, IN_PROCESS);
    t
}

#[tokio::test]
async fn ppt_lifecycle_from_registration_to_duplicate_card_and_certification() {
    let server = TestServer::start().await;
    let mut c = server.client().await;

    // Registration: the cédula as written on the document.
    let p = pb::PersonalData {
        phone: "+57 300 555 0101".into(),
        email: "maria.prueba@example.org".into(),
        address: "Calle 26 # 13-19, apto 401".into(),
        ..person(
            "MARÍA JOSÉ",
            "PÉREZ GONZÁLEZ",
            "1990-05-17",
            &[(Doc::VenezuelanCedula, "V12345678")],
        )
    };
    let register = register_request(p, "2022-03-01");
    let register_rid = register.header.as_ref().unwrap().request_id.clone();
    let r = ok(c.register_person(req(register)).await);
    let mut t = Tracker::registered(&r);
    assert_eq!(r.case_id, registry::cases::case_id_for_request(&register_rid));
    assert_eq!(r.status, IRREGULAR, "registered, no application yet");
    let mut request_ids = vec![register_rid];
    let rid = |h: &Option<pb::CommandHeader>| h.as_ref().unwrap().request_id.clone();

    let h = t.next("2022-03-02");
    request_ids.push(rid(&h));
    let r = ok(c
        .pre_register(req(pb::PreRegisterRequest {
            header: h,
            channel: "ETPV".into(),
            basis: pb::EligibilityBasis::IrregularOn20210131 as i32,
        }))
        .await);
    t.step(&r, "PRE_REGISTERED", &["PreRegistered"]);
    assert_eq!(r.status, IN_PROCESS);

    let h = t.next("2022-03-02");
    request_ids.push(rid(&h));
    let r = ok(c
        .complete_survey(req(pb::CompleteSurveyRequest {
            header: h,
            household_size: 4,
            employed: true,
            sector: pb::Sector::Commerce as i32,
        }))
        .await);
    t.step(&r, "PRE_REGISTERED", &["SurveyCompleted"]);

    let h = t.next("2022-03-03");
    request_ids.push(rid(&h));
    let r = ok(c
        .schedule_biometrics(req(pb::ScheduleBiometricsRequest {
            header: h,
            appointment_on: "2022-04-01".into(),
            site: "BOG-01".into(),
        }))
        .await);
    t.step(&r, "BIOMETRICS_SCHEDULED", &["BiometricAppointmentScheduled"]);

    let h = t.next("2022-04-01");
    request_ids.push(rid(&h));
    let r = ok(c
        .record_missed_appointment(req(pb::SimpleStepRequest { header: h }))
        .await);
    t.step(&r, "APPOINTMENT_MISSED", &["BiometricAppointmentMissed"]);
    assert_eq!(r.status, IN_PROCESS);

    let h = t.next("2022-04-02");
    request_ids.push(rid(&h));
    let r = ok(c
        .schedule_biometrics(req(pb::ScheduleBiometricsRequest {
            header: h,
            appointment_on: "2022-04-20".into(),
            site: "BOG-01".into(),
        }))
        .await);
    t.step(&r, "BIOMETRICS_SCHEDULED", &["BiometricAppointmentScheduled"]);

    let h = t.next("2022-04-20");
    request_ids.push(rid(&h));
    let r = ok(c
        .record_biometric_capture(req(pb::RecordBiometricCaptureRequest {
            header: h,
            site: "BOG-01".into(),
            operator: "OP-0042".into(),
            biometric_ref: biometric_ref(),
        }))
        .await);
    t.step(&r, "UNDER_REVIEW", &["BiometricsCaptured"]);

    let h = t.next("2022-06-01");
    request_ids.push(rid(&h));
    let r = ok(c.approve(req(pb::SimpleStepRequest { header: h })).await);
    t.step(&r, "APPROVED", &["Approved"]);
    assert_eq!(r.status, IN_PROCESS, "approved, permit not issued yet");

    let h = t.next("2022-06-15");
    request_ids.push(rid(&h));
    let r = ok(c
        .issue_permit(req(pb::IssuePermitRequest {
            header: h,
            permit_number: "ppt-4455.667".into(),
            valid_until: String::new(),
        }))
        .await);
    t.step(&r, "PERMIT_ISSUED", &["PermitIssued"]);
    assert_eq!(r.status, REGULAR_PPT);

    let h = t.next("2022-07-01");
    request_ids.push(rid(&h));
    let r = ok(c.print_card(req(pb::SimpleStepRequest { header: h })).await);
    t.step(&r, "CARD_PRINTED", &["CardPrinted"]);

    let h = t.next("2022-07-15");
    request_ids.push(rid(&h));
    let r = ok(c.deliver_card(req(pb::SimpleStepRequest { header: h })).await);
    t.step(&r, "CARD_DELIVERED", &["CardDelivered"]);
    assert_eq!(r.status, REGULAR_PPT);

    let h = t.next("2023-01-10");
    request_ids.push(rid(&h));
    let r = ok(c
        .request_duplicate(req(pb::RequestDuplicateRequest {
            header: h,
            cause: pb::DuplicateCause::Loss as i32,
        }))
        .await);
    t.step(&r, "DUPLICATE_REQUESTED", &["DuplicateRequested"]);
    assert_eq!(r.status, REGULAR_PPT);

    // The duplicate is issued as a reprinted card: the domain moves straight to
    // CARD_PRINTED (see `duplicate_card_is_printed_after_issue_as_the_contract_says`
    // for the separate PrintCard step the proto comment describes).
    let h = t.next("2023-01-20");
    request_ids.push(rid(&h));
    let r = ok(c.issue_duplicate(req(pb::SimpleStepRequest { header: h })).await);
    t.step(&r, "CARD_PRINTED", &["DuplicateIssued"]);

    let h = t.next("2023-02-01");
    request_ids.push(rid(&h));
    let r = ok(c.deliver_card(req(pb::SimpleStepRequest { header: h })).await);
    t.step(&r, "CARD_DELIVERED", &["CardDelivered"]);

    // Rectification: a new passport is added (written loosely).
    let h = t.next("2023-03-01");
    request_ids.push(rid(&h));
    let updated = pb::PersonalData {
        phone: "+57 300 555 0199".into(),
        ..person(
            "MARÍA JOSÉ",
            "PÉREZ GONZÁLEZ",
            "1990-05-17",
            &[
                (Doc::VenezuelanCedula, "V12345678"),
                (Doc::Passport, "p 0123-456"),
            ],
        )
    };
    let r = ok(c
        .update_personal_data(req(pb::UpdatePersonalDataRequest {
            header: h,
            person: Some(updated),
        }))
        .await);
    t.step(&r, "CARD_DELIVERED", &["PersonalDataUpdated"]);

    let h = t.next("2023-03-05");
    request_ids.push(rid(&h));
    let r = ok(c
        .update_residence(req(pb::UpdateResidenceRequest {
            header: h,
            department: "05".into(),
            municipality: "05001".into(),
        }))
        .await);
    t.step(&r, "CARD_DELIVERED", &["ResidenceUpdated"]);

    let h = t.next("2023-04-01");
    request_ids.push(rid(&h));
    let r = ok(c
        .request_certification(req(pb::RequestCertificationRequest {
            header: h,
            route: pb::CertificationRoute::SenaCompetency as i32,
            sector: pb::Sector::Commerce as i32,
        }))
        .await);
    t.step(&r, "CARD_DELIVERED", &["CertificationRequested"]);
    let case = get_case(&mut c, &t.case_id).await;
    assert_eq!(case.certifications.len(), 1);
    let cert_id = case.certifications[0].certification_id;
    assert_eq!(cert_id, 1);
    assert_eq!(case.certifications[0].stage, "CERTIFICATION_REQUESTED");

    let h = t.next("2023-05-01");
    request_ids.push(rid(&h));
    let r = ok(c
        .assess_certification(req(pb::AssessCertificationRequest {
            header: h,
            certification_id: cert_id,
            passed: true,
        }))
        .await);
    t.step(&r, "CARD_DELIVERED", &["CertificationAssessed"]);

    let h = t.next("2023-05-02");
    request_ids.push(rid(&h));
    let r = ok(c
        .award_certification(req(pb::AwardCertificationRequest {
            header: h,
            certification_id: cert_id,
            standard_code: "NCS-260101012".into(),
            issuing_body: "SENA".into(),
        }))
        .await);
    t.step(&r, "CARD_DELIVERED", &["CertificationAwarded"]);
    assert_eq!(r.status, REGULAR_PPT);
    assert_eq!(t.version, 19);

    // The case as read back.
    let case = get_case(&mut c, &t.case_id).await;
    assert_eq!(case.case_id, t.case_id);
    assert_eq!(case.version, 19);
    assert_eq!(case.status, REGULAR_PPT);
    assert_eq!(case.stage, "CARD_DELIVERED");
    assert!(!case.erased);
    let p = case
        .person
        .as_ref()
        .expect("personal data is opened for the caseworker");
    assert_eq!(p.given_names, "MARÍA JOSÉ");
    assert_eq!(p.family_names, "PÉREZ GONZÁLEZ");
    assert_eq!(p.birth_date, "1990-05-17");
    assert_eq!(
        p.phone, "+57 300 555 0199",
        "the rectified identity replaced the first"
    );
    assert_eq!(p.email, "", "the rectification carried no e-mail");
    let docs: Vec<(i32, &str)> = p
        .documents
        .iter()
        .map(|d| (d.r#type, d.number.as_str()))
        .collect();
    assert_eq!(
        docs,
        vec![
            (Doc::VenezuelanCedula as i32, "V12345678"),
            (Doc::Passport as i32, "P0123456"),
        ],
        "documents, normalized"
    );
    assert_eq!(case.sex, pb::Sex::F as i32);
    assert_eq!((case.birth_year, case.birth_month), (1990, 5));
    assert_eq!(case.nationality, "VEN");
    assert_eq!(
        (case.department.as_str(), case.municipality.as_str()),
        ("05", "05001")
    );
    assert_eq!(case.exit, pb::ExitKind::Unspecified as i32);
    let app = case.application.as_ref().expect("application");
    assert_eq!(app.application_id, 1);
    assert_eq!(app.channel, "ETPV");
    assert_eq!(app.basis, pb::EligibilityBasis::IrregularOn20210131 as i32);
    assert_eq!(app.applied_on, "2022-03-02");
    assert_eq!(app.missed_appointments, 1);
    assert_eq!(app.biometrics_on, "2022-04-20");
    assert_eq!(app.decided_on, "2022-06-01");
    assert_eq!(app.denial_reason, 0);
    let permit = case.permit.as_ref().expect("permit");
    assert_eq!(permit.r#type, pb::PermitType::Ppt as i32);
    assert_eq!(permit.permit_number, "PPT4455667", "permit number, normalized");
    assert_eq!(permit.issued_on, "2022-06-15");
    assert_eq!(permit.valid_until, "2031-05-30", "ETPV default validity");
    assert_eq!(permit.card_state, "DELIVERED");
    assert!(!permit.cancelled);
    assert_eq!(permit.cancellation_ground, 0);
    assert_eq!(permit.duplicates, 1);
    assert_eq!(permit.interim_valid_until, "");
    assert_eq!(case.certifications.len(), 1);
    let cert = &case.certifications[0];
    assert_eq!(cert.certification_id, 1);
    assert_eq!(cert.route, pb::CertificationRoute::SenaCompetency as i32);
    assert_eq!(cert.sector, pb::Sector::Commerce as i32);
    assert_eq!(cert.stage, "CERTIFICATION_AWARDED");
    assert_eq!(cert.standard_code, "NCS-260101012");
    assert_eq!(cert.issuing_body, "SENA");

    // History: every event, in order, with growing seqs and its request.
    let types: Vec<&str> = case.history.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        vec![
            "PersonRegistered",
            "PreRegistered",
            "SurveyCompleted",
            "BiometricAppointmentScheduled",
            "BiometricAppointmentMissed",
            "BiometricAppointmentScheduled",
            "BiometricsCaptured",
            "Approved",
            "PermitIssued",
            "CardPrinted",
            "CardDelivered",
            "DuplicateRequested",
            "DuplicateIssued",
            "CardDelivered",
            "PersonalDataUpdated",
            "ResidenceUpdated",
            "CertificationRequested",
            "CertificationAssessed",
            "CertificationAwarded",
        ]
    );
    for (i, e) in case.history.iter().enumerate() {
        assert_eq!(e.version, i as u64 + 1);
        assert_eq!(e.actor_user, ACTOR_USER);
        assert_eq!(e.actor_office, ACTOR_OFFICE);
        assert_eq!(e.request_id, request_ids[i]);
        assert_eq!(e.hash.len(), 64, "hex chain hash");
        assert!(e.recorded_at_us > 0);
        if i > 0 {
            let prev = &case.history[i - 1];
            assert!(e.seq > prev.seq, "seqs increase");
            assert!(e.on >= prev.on, "business dates never go back");
            assert_ne!(e.hash, prev.hash);
        }
    }
    assert_eq!(case.history[0].on, "2022-03-01");
    assert_eq!(case.history[18].on, "2023-05-02");
    assert_eq!(case.history[18].seq, t.last_seq);

    // Look-ups by document: the cédula written differently, the new passport.
    for (kind, number) in [
        (Doc::VenezuelanCedula, "v-12.345.678"),
        (Doc::VenezuelanCedula, " V 12345678 "),
        (Doc::Passport, "P0123456"),
        (Doc::Passport, "p-0123.456"),
    ] {
        let found = ok(c
            .find_cases_by_document(req(pb::FindCasesByDocumentRequest {
                document: Some(pb::IdentityDocument {
                    r#type: kind as i32,
                    number: number.into(),
                }),
                purpose: "REVIEW".into(),
            }))
            .await);
        assert_eq!(found.case_ids, vec![t.case_id.clone()], "{kind:?} {number}");
    }
    for (kind, number) in [(Doc::Passport, "V12345678"), (Doc::VenezuelanCedula, "V12345679")] {
        let found = ok(c
            .find_cases_by_document(req(pb::FindCasesByDocumentRequest {
                document: Some(pb::IdentityDocument {
                    r#type: kind as i32,
                    number: number.into(),
                }),
                purpose: "REVIEW".into(),
            }))
            .await);
        assert!(
            found.case_ids.is_empty(),
            "{kind:?} {number}: {:?}",
            found.case_ids
        );
    }

    // Paging: limit 3 walks the whole history.
    let mut paged = Vec::new();
    let mut from = 0;
    let mut pages = 0;
    loop {
        let page = ok(c
            .list_case_events(req(pb::ListCaseEventsRequest {
                case_id: t.case_id.clone(),
                from_version: from,
                limit: 3,
            }))
            .await);
        pages += 1;
        let expected_len = if page.next_version == 0 { 1 } else { 3 };
        assert_eq!(page.events.len(), expected_len, "page {pages}");
        if page.next_version != 0 {
            assert_eq!(page.next_version, page.events.last().unwrap().version + 1);
        }
        paged.extend(page.events);
        if page.next_version == 0 {
            break;
        }
        from = page.next_version;
    }
    assert_eq!(pages, 7, "19 events in pages of 3");
    assert_eq!(paged, case.history, "paging returns the history exactly");
    let page = ok(c
        .list_case_events(req(pb::ListCaseEventsRequest {
            case_id: t.case_id.clone(),
            from_version: 18,
            limit: 2,
        }))
        .await);
    assert_eq!(page.events.len(), 2);
    assert_eq!(page.next_version, 0, "an exactly full last page has no next page");
    let page = ok(c
        .list_case_events(req(pb::ListCaseEventsRequest {
            case_id: t.case_id.clone(),
            from_version: 20,
            limit: 3,
        }))
        .await);
    assert!(page.events.is_empty());
    assert_eq!(page.next_version, 0);
    let page = ok(c
        .list_case_events(req(pb::ListCaseEventsRequest {
            case_id: t.case_id.clone(),
            from_version: 0,
            limit: 0,
        }))
        .await);
    assert_eq!(page.events.len(), 19, "limit 0 means 100");
    assert_eq!(page.next_version, 0);

    server.stop().await;
}

#[tokio::test]
async fn denial_then_appeal_upheld_approves_and_appeal_rejected_is_final() {
    let server = TestServer::start().await;
    let mut c = server.client().await;

    // Upheld appeal: DENIED -> APPEAL_FILED -> APPROVED.
    let mut t = to_under_review(&mut c, "ANDREA", "V20000001", "05").await;
    let r = ok(c
        .deny(req(pb::DenyRequest {
            header: t.next("2022-06-01"),
            reason: pb::DenialReason::CriminalRecord as i32,
        }))
        .await);
    t.step(&r, "DENIED", &["Denied"]);
    assert_eq!(
        r.status, IRREGULAR,
        "the appeal window (10 business days: 2022-06-15) is long past today: not in process"
    );
    let r = ok(c
        .file_appeal(req(simple(&t.case_id, t.version, "2022-06-05")))
        .await);
    t.step(&r, "APPEAL_FILED", &["AppealFiled"]);
    assert_eq!(r.status, IN_PROCESS);
    let r = ok(c
        .decide_appeal(req(pb::DecideAppealRequest {
            header: t.next("2022-07-01"),
            upheld: true,
        }))
        .await);
    t.step(&r, "APPROVED", &["AppealDecided"]);
    assert_eq!(r.status, IN_PROCESS, "approved, permit not yet issued");
    let case = get_case(&mut c, &t.case_id).await;
    assert_eq!(case.stage, "APPROVED");
    assert_eq!(case.version, 7);
    let app = case.application.unwrap();
    assert_eq!(
        app.decided_on, "2022-07-01",
        "the standing decision is the appeal's"
    );
    assert_eq!(
        app.denial_reason,
        pb::DenialReason::CriminalRecord as i32,
        "the denial stays in the history"
    );
    // An approved-on-appeal application goes on to its permit.
    let r = ok(c
        .issue_permit(req(pb::IssuePermitRequest {
            header: t.next("2022-07-02"),
            permit_number: "PPT9000001".into(),
            valid_until: "2030-12-31".into(),
        }))
        .await);
    t.step(&r, "PERMIT_ISSUED", &["PermitIssued"]);
    assert_eq!(r.status, REGULAR_PPT);
    assert_eq!(
        get_case(&mut c, &t.case_id).await.permit.unwrap().valid_until,
        "2030-12-31"
    );

    // Rejected appeal: DENIED -> APPEAL_FILED -> DENIED_FINAL, IRREGULAR.
    let mut t = to_under_review(&mut c, "BEATRIZ", "V20000002", "06").await;
    let r = ok(c
        .deny(req(pb::DenyRequest {
            header: t.next("2022-07-01"),
            reason: pb::DenialReason::FalseInformation as i32,
        }))
        .await);
    t.step(&r, "DENIED", &["Denied"]);
    let r = ok(c
        .file_appeal(req(simple(&t.case_id, t.version, "2022-07-11")))
        .await);
    t.step(&r, "APPEAL_FILED", &["AppealFiled"]);
    let r = ok(c
        .decide_appeal(req(pb::DecideAppealRequest {
            header: t.next("2022-08-01"),
            upheld: false,
        }))
        .await);
    t.step(&r, "DENIED_FINAL", &["AppealDecided"]);
    assert_eq!(r.status, IRREGULAR);
    let case = get_case(&mut c, &t.case_id).await;
    assert_eq!(case.stage, "DENIED_FINAL");
    assert_eq!(case.status, IRREGULAR);
    assert_eq!(case.version, t.version);
    assert_eq!(
        case.application.unwrap().denial_reason,
        pb::DenialReason::FalseInformation as i32
    );
    assert!(case.permit.is_none());

    server.stop().await;
}

#[tokio::test]
async fn abandoned_card_records_two_events_and_cancels_the_permit() {
    // This test also exercises the durable sync mode end to end.
    let server = TestServer::start_with(SyncMode::Fdatasync).await;
    let mut c = server.client().await;

    let mut t = to_under_review(&mut c, "CARLA", "V20000003", "05").await;
    let r = ok(c.approve(req(simple(&t.case_id, t.version, "2022-06-01"))).await);
    t.step(&r, "APPROVED", &["Approved"]);
    let r = ok(c
        .issue_permit(req(pb::IssuePermitRequest {
            header: t.next("2022-06-02"),
            permit_number: "PPT9000003".into(),
            valid_until: String::new(),
        }))
        .await);
    t.step(&r, "PERMIT_ISSUED", &["PermitIssued"]);
    let r = ok(c
        .print_card(req(simple(&t.case_id, t.version, "2022-07-01")))
        .await);
    t.step(&r, "CARD_PRINTED", &["CardPrinted"]);
    assert_eq!(r.status, REGULAR_PPT);

    // 90 days after printing (2022-09-29) the card may be declared abandoned.
    let h = t.next("2022-10-01");
    let rid = h.as_ref().unwrap().request_id.clone();
    let r = ok(c.abandon_card(req(pb::SimpleStepRequest { header: h })).await);
    t.step(&r, "PERMIT_CANCELLED", &["CardAbandoned", "PermitCancelled"]);
    assert_eq!(r.version, 9);
    assert_eq!(r.last_seq, r.first_seq + 1);
    assert_eq!(r.status, IRREGULAR);

    let case = get_case(&mut c, &t.case_id).await;
    assert_eq!(case.stage, "PERMIT_CANCELLED");
    assert_eq!(case.status, IRREGULAR);
    assert_eq!(case.version, 9);
    let permit = case.permit.as_ref().unwrap();
    assert!(permit.cancelled);
    assert_eq!(
        permit.cancellation_ground,
        pb::CancellationGround::UncollectedCard as i32
    );
    assert_eq!(permit.card_state, "ABANDONED");
    assert_eq!(permit.permit_number, "PPT9000003");
    let last_two: Vec<(&str, &str, u64)> = case.history[7..]
        .iter()
        .map(|e| (e.event_type.as_str(), e.request_id.as_str(), e.seq))
        .collect();
    assert_eq!(
        last_two,
        vec![
            ("CardAbandoned", rid.as_str(), r.first_seq),
            ("PermitCancelled", rid.as_str(), r.last_seq),
        ],
        "both events of one request, atomically, in order"
    );

    server.stop().await;
}

/// As the contract says of IssueDuplicate: the new card is printed by it
/// (stage CARD_PRINTED), so PrintCard is refused there, and DeliverCard follows.
#[tokio::test]
async fn an_issued_duplicate_is_printed_and_then_delivered_as_the_contract_says() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut t = to_under_review(&mut c, "DIANA", "V20000004", "05").await;
    let r = ok(c.approve(req(simple(&t.case_id, t.version, "2022-06-01"))).await);
    t.step(&r, "APPROVED", &["Approved"]);
    let r = ok(c
        .issue_permit(req(pb::IssuePermitRequest {
            header: t.next("2022-06-02"),
            permit_number: "PPT9000004".into(),
            valid_until: String::new(),
        }))
        .await);
    t.step(&r, "PERMIT_ISSUED", &["PermitIssued"]);
    let r = ok(c
        .print_card(req(simple(&t.case_id, t.version, "2022-06-03")))
        .await);
    t.step(&r, "CARD_PRINTED", &["CardPrinted"]);
    let r = ok(c
        .deliver_card(req(simple(&t.case_id, t.version, "2022-06-04")))
        .await);
    t.step(&r, "CARD_DELIVERED", &["CardDelivered"]);
    let r = ok(c
        .request_duplicate(req(pb::RequestDuplicateRequest {
            header: t.next("2022-08-01"),
            cause: pb::DuplicateCause::Theft as i32,
        }))
        .await);
    t.step(&r, "DUPLICATE_REQUESTED", &["DuplicateRequested"]);
    let r = ok(c
        .issue_duplicate(req(simple(&t.case_id, t.version, "2022-08-02")))
        .await);
    t.version = r.version;
    t.last_seq = r.last_seq;
    assert_eq!(r.stage, "CARD_PRINTED", "issuing a duplicate prints the new card");
    let refused = c
        .print_card(req(simple(&t.case_id, t.version, "2022-08-03")))
        .await;
    precondition(refused, "CARD_PRINTED");
    let r = ok(c
        .deliver_card(req(simple(&t.case_id, t.version, "2022-08-04")))
        .await);
    t.step(&r, "CARD_DELIVERED", &["CardDelivered"]);
    server.stop().await;
}
