//! End-to-end: what the caseworker API refuses, with which status, and that a
//! refused command records nothing (case version through GetCase; global log
//! head through the next command's first seq and, after shutdown, the store).

mod common;

use common::*;
use registry::api::pb;
use tonic::{Code, Request};

use pb::DocumentType as Doc;

/// The first seq of the next event appended anywhere must follow `last_seq`:
/// appends a survey-free, harmless step (residence update) on `t` and checks.
async fn assert_log_head(c: &mut Client, t: &mut Tracker, last_seq: u64, on: &str) {
    let r = ok(c
        .update_residence(req(pb::UpdateResidenceRequest {
            header: t.next(on),
            department: "11".into(),
            municipality: "11001".into(),
        }))
        .await);
    assert_eq!(
        r.first_seq,
        last_seq + 1,
        "refused requests must not have appended anything to the log"
    );
    t.version = r.version;
    t.last_seq = r.last_seq;
}

#[tokio::test]
async fn illegal_transitions_are_failed_precondition_naming_the_state_and_record_nothing() {
    let server = TestServer::start().await;
    let mut c = server.client().await;

    // --- An application through review to denial.
    let mut a = register(&mut c, "ANA", "V30000001", "2022-03-01").await;
    let s = precondition(
        c.approve(req(simple(&a.case_id, a.version, "2022-03-01"))).await,
        "REGISTERED",
    );
    assert!(
        s.message().starts_with("Approve is not allowed"),
        "{}",
        s.message()
    );
    a.unchanged(&mut c).await;
    precondition(
        c.print_card(req(simple(&a.case_id, a.version, "2022-03-01")))
            .await,
        "REGISTERED",
    );
    a.unchanged(&mut c).await;

    a.pre_register(&mut c, "2022-03-02").await;
    // Approve before biometrics.
    precondition(
        c.approve(req(simple(&a.case_id, a.version, "2022-03-02"))).await,
        "PRE_REGISTERED",
    );
    a.unchanged(&mut c).await;
    precondition(
        c.record_biometric_capture(req(pb::RecordBiometricCaptureRequest {
            header: a.next("2022-03-02"),
            site: "BOG-01".into(),
            operator: "OP-1".into(),
            biometric_ref: biometric_ref(),
        }))
        .await,
        "PRE_REGISTERED",
    );
    a.unchanged(&mut c).await;
    precondition(
        c.record_missed_appointment(req(simple(&a.case_id, a.version, "2022-03-02")))
            .await,
        "PRE_REGISTERED",
    );
    a.unchanged(&mut c).await;

    a.schedule(&mut c, "2022-03-03", "2022-03-20").await;
    // Still before biometrics.
    precondition(
        c.approve(req(simple(&a.case_id, a.version, "2022-03-04"))).await,
        "BIOMETRICS_SCHEDULED",
    );
    a.unchanged(&mut c).await;
    precondition(
        c.deny(req(pb::DenyRequest {
            header: a.next("2022-03-04"),
            reason: pb::DenialReason::Other as i32,
        }))
        .await,
        "BIOMETRICS_SCHEDULED",
    );
    a.unchanged(&mut c).await;
    // A second application while one is in process.
    precondition(
        c.pre_register(req(pb::PreRegisterRequest {
            header: a.next("2022-03-04"),
            channel: "ETPV".into(),
            basis: pb::EligibilityBasis::Pep as i32,
        }))
        .await,
        "BIOMETRICS_SCHEDULED",
    );
    a.unchanged(&mut c).await;

    a.capture(&mut c, "2022-03-20").await;
    precondition(
        c.schedule_biometrics(req(pb::ScheduleBiometricsRequest {
            header: a.next("2022-03-21"),
            appointment_on: "2022-03-25".into(),
            site: "BOG-01".into(),
        }))
        .await,
        "UNDER_REVIEW",
    );
    a.unchanged(&mut c).await;
    precondition(
        c.file_appeal(req(simple(&a.case_id, a.version, "2022-03-21")))
            .await,
        "UNDER_REVIEW",
    );
    a.unchanged(&mut c).await;
    precondition(
        c.issue_permit(req(pb::IssuePermitRequest {
            header: a.next("2022-03-21"),
            permit_number: "PPT1".into(),
            valid_until: String::new(),
        }))
        .await,
        "UNDER_REVIEW",
    );
    a.unchanged(&mut c).await;

    let r = ok(c
        .deny(req(pb::DenyRequest {
            header: a.next("2022-04-01"),
            reason: pb::DenialReason::OpenProceedings as i32,
        }))
        .await);
    a.step(&r, "DENIED", &["Denied"]);
    // Issue a permit on a denied application.
    let s = precondition(
        c.issue_permit(req(pb::IssuePermitRequest {
            header: a.next("2022-04-02"),
            permit_number: "PPT30000001".into(),
            valid_until: String::new(),
        }))
        .await,
        "DENIED",
    );
    assert!(s.message().contains("denied"), "{}", s.message());
    a.unchanged(&mut c).await;
    precondition(
        c.approve(req(simple(&a.case_id, a.version, "2022-04-02"))).await,
        "DENIED",
    );
    a.unchanged(&mut c).await;
    precondition(
        c.decide_appeal(req(pb::DecideAppealRequest {
            header: a.next("2022-04-02"),
            upheld: true,
        }))
        .await,
        "DENIED",
    );
    a.unchanged(&mut c).await;
    // The appeal window (10 business days after Friday 2022-04-01; Holy
    // Thursday and Good Friday, 14 and 15 April, do not count) closed on
    // Tuesday 2022-04-19.
    let s = precondition(
        c.file_appeal(req(simple(&a.case_id, a.version, "2022-04-20")))
            .await,
        "DENIED",
    );
    assert!(
        s.message().contains("the appeal window closed on 2022-04-19"),
        "{}",
        s.message()
    );
    a.unchanged(&mut c).await;
    precondition(
        c.withdraw(req(simple(&a.case_id, a.version, "2022-04-12"))).await,
        "DENIED",
    );
    a.unchanged(&mut c).await;

    // --- A permit and its card.
    let mut b = register(&mut c, "BELEN", "V30000002", "2022-03-01").await;
    b.pre_register(&mut c, "2022-03-02").await;
    b.schedule(&mut c, "2022-03-03", "2022-03-10").await;
    b.capture(&mut c, "2022-03-10").await;
    b.approve(&mut c, "2022-05-01").await;
    b.issue_permit(&mut c, "2022-05-02", "PPT30000002").await;
    // Deliver a card never printed.
    let s = precondition(
        c.deliver_card(req(simple(&b.case_id, b.version, "2022-05-03")))
            .await,
        "PERMIT_ISSUED",
    );
    assert!(s.message().contains("never printed"), "{}", s.message());
    b.unchanged(&mut c).await;
    precondition(
        c.abandon_card(req(simple(&b.case_id, b.version, "2022-12-01")))
            .await,
        "PERMIT_ISSUED",
    );
    b.unchanged(&mut c).await;
    precondition(
        c.issue_permit(req(pb::IssuePermitRequest {
            header: b.next("2022-05-03"),
            permit_number: "PPT30000099".into(),
            valid_until: String::new(),
        }))
        .await,
        "PERMIT_ISSUED",
    );
    b.unchanged(&mut c).await;
    let dup = |b: &Tracker, on: &str| pb::RequestDuplicateRequest {
        header: b.next(on),
        cause: pb::DuplicateCause::Damage as i32,
    };
    precondition(
        c.request_duplicate(req(dup(&b, "2022-05-03"))).await,
        "PERMIT_ISSUED",
    );
    b.unchanged(&mut c).await;

    b.print(&mut c, "2022-06-01").await;
    // A duplicate before delivery.
    let s = precondition(
        c.request_duplicate(req(dup(&b, "2022-06-02"))).await,
        "CARD_PRINTED",
    );
    assert!(s.message().contains("not delivered"), "{}", s.message());
    b.unchanged(&mut c).await;
    precondition(
        c.issue_duplicate(req(simple(&b.case_id, b.version, "2022-06-02")))
            .await,
        "CARD_PRINTED",
    );
    b.unchanged(&mut c).await;
    precondition(
        c.print_card(req(simple(&b.case_id, b.version, "2022-06-02")))
            .await,
        "CARD_PRINTED",
    );
    b.unchanged(&mut c).await;
    // Abandoned only 90 days after printing (2022-08-30).
    let s = precondition(
        c.abandon_card(req(simple(&b.case_id, b.version, "2022-08-29")))
            .await,
        "CARD_PRINTED",
    );
    assert!(s.message().contains("2022-08-30"), "{}", s.message());
    b.unchanged(&mut c).await;
    // The uncollected-card ground is only declared through AbandonCard.
    invalid(
        c.cancel_permit(req(pb::CancelPermitRequest {
            header: b.next("2022-06-02"),
            ground: pb::CancellationGround::UncollectedCard as i32,
        }))
        .await,
        "ground",
    );
    b.unchanged(&mut c).await;

    // --- Certifications: each names its own state.
    let award = |b: &Tracker, id: u32, on: &str| pb::AwardCertificationRequest {
        header: b.next(on),
        certification_id: id,
        standard_code: "NCS-1".into(),
        issuing_body: "SENA".into(),
    };
    // Never requested: the id names no certification of the case.
    let s = invalid(
        c.award_certification(req(award(&b, 1, "2022-06-02"))).await,
        "certification_id",
    );
    assert!(s.message().contains("no certification 1"), "{}", s.message());
    b.unchanged(&mut c).await;
    let r = ok(c
        .request_certification(req(pb::RequestCertificationRequest {
            header: b.next("2022-06-02"),
            route: pb::CertificationRoute::DegreeRecognition as i32,
            sector: pb::Sector::Health as i32,
        }))
        .await);
    b.step(&r, "CARD_PRINTED", &["CertificationRequested"]);
    // Awarded before its assessment.
    precondition(
        c.award_certification(req(award(&b, 1, "2022-06-02"))).await,
        "CERTIFICATION_REQUESTED",
    );
    b.unchanged(&mut c).await;
    let r = ok(c
        .assess_certification(req(pb::AssessCertificationRequest {
            header: b.next("2022-06-03"),
            certification_id: 1,
            passed: false,
        }))
        .await);
    b.step(&r, "CARD_PRINTED", &["CertificationAssessed"]);
    precondition(
        c.award_certification(req(award(&b, 1, "2022-06-03"))).await,
        "CERTIFICATION_ASSESSED_FAILED",
    );
    b.unchanged(&mut c).await;
    precondition(
        c.assess_certification(req(pb::AssessCertificationRequest {
            header: b.next("2022-06-03"),
            certification_id: 1,
            passed: true,
        }))
        .await,
        "CERTIFICATION_ASSESSED_FAILED",
    );
    b.unchanged(&mut c).await;

    // --- An exited person: only rectification and erasure remain.
    let mut x = register(&mut c, "XIMENA", "V30000003", "2022-03-01").await;
    x.pre_register(&mut c, "2022-03-02").await;
    // A destination is an assigned ISO 3166-1 alpha-3 country (not an ICAO
    // nationality code), and only for a departure.
    for bad in ["PE", "ZZZ", "XXA", "per"] {
        invalid(
            c.record_exit(req(pb::RecordExitRequest {
                header: header(&x.case_id, x.version, "2022-05-01"),
                kind: pb::ExitKind::Departed as i32,
                destination: bad.into(),
            }))
            .await,
            "destination",
        );
    }
    let s = precondition(
        c.record_exit(req(pb::RecordExitRequest {
            header: header(&x.case_id, x.version, "2022-05-01"),
            kind: pb::ExitKind::Deceased as i32,
            destination: "PER".into(),
        }))
        .await,
        "PRE_REGISTERED",
    );
    assert!(s.message().contains("departure only"), "{}", s.message());
    x.unchanged(&mut c).await;
    let r = ok(c
        .record_exit(req(pb::RecordExitRequest {
            header: x.next("2022-05-01"),
            kind: pb::ExitKind::Departed as i32,
            destination: "PER".into(),
        }))
        .await);
    x.step(&r, "EXITED", &["ExitRecorded"]);
    assert_eq!(r.status, pb::PersonStatus::Departed as i32);
    let on = "2022-05-02";
    let (id, v) = (x.case_id.clone(), x.version);
    let h = || header(&id, v, on);
    let results = vec![
        (
            "PreRegister",
            c.pre_register(req(pb::PreRegisterRequest {
                header: h(),
                channel: "ETPV".into(),
                basis: pb::EligibilityBasis::Pip as i32,
            }))
            .await
            .map(|_| ()),
        ),
        (
            "CompleteSurvey",
            c.complete_survey(req(pb::CompleteSurveyRequest {
                header: h(),
                household_size: 2,
                employed: false,
                sector: 0,
            }))
            .await
            .map(|_| ()),
        ),
        (
            "ScheduleBiometrics",
            c.schedule_biometrics(req(pb::ScheduleBiometricsRequest {
                header: h(),
                appointment_on: "2022-05-10".into(),
                site: "BOG-01".into(),
            }))
            .await
            .map(|_| ()),
        ),
        (
            "Withdraw",
            c.withdraw(req(pb::SimpleStepRequest { header: h() }))
                .await
                .map(|_| ()),
        ),
        (
            "Approve",
            c.approve(req(pb::SimpleStepRequest { header: h() }))
                .await
                .map(|_| ()),
        ),
        (
            "UpdateResidence",
            c.update_residence(req(pb::UpdateResidenceRequest {
                header: h(),
                department: "05".into(),
                municipality: "05001".into(),
            }))
            .await
            .map(|_| ()),
        ),
        (
            "RequestCertification",
            c.request_certification(req(pb::RequestCertificationRequest {
                header: h(),
                route: pb::CertificationRoute::SenaCompetency as i32,
                sector: pb::Sector::Construction as i32,
            }))
            .await
            .map(|_| ()),
        ),
        (
            "RecordExit",
            c.record_exit(req(pb::RecordExitRequest {
                header: h(),
                kind: pb::ExitKind::Deceased as i32,
                destination: String::new(),
            }))
            .await
            .map(|_| ()),
        ),
        (
            "IssuePermit",
            c.issue_permit(req(pb::IssuePermitRequest {
                header: h(),
                permit_number: "PPT30000003".into(),
                valid_until: String::new(),
            }))
            .await
            .map(|_| ()),
        ),
        (
            "SupersedeByVisa",
            c.supersede_by_visa(req(pb::SupersedeByVisaRequest {
                header: h(),
                visa_number: "VR30000003".into(),
                valid_until: String::new(),
            }))
            .await
            .map(|_| ()),
        ),
    ];
    for (command, result) in results {
        let s = match result {
            Ok(()) => panic!("{command} on an exited person must be refused"),
            Err(s) => s,
        };
        assert_eq!(s.code(), Code::FailedPrecondition, "{command}: {}", s.message());
        assert!(
            s.message()
                .starts_with(&format!("{command} is not allowed in state EXITED:")),
            "{command}: {}",
            s.message()
        );
    }
    x.unchanged(&mut c).await;
    // Rectification and erasure remain.
    let r = ok(c
        .update_personal_data(req(pb::UpdatePersonalDataRequest {
            header: x.next(on),
            person: Some(person(
                "XIMENA ISABEL",
                "PRUEBA LOPEZ",
                "1988-02-10",
                &[(Doc::VenezuelanCedula, "V30000003")],
            )),
        }))
        .await);
    x.step(&r, "EXITED", &["PersonalDataUpdated"]);
    let r = ok(c
        .erase_person(req(pb::ErasePersonRequest {
            header: x.next(on),
            legal_basis: "LEY_1581_ART_8".into(),
        }))
        .await);
    x.step(&r, "EXITED", &["PersonErased"]);
    assert_eq!(r.status, pb::PersonStatus::Departed as i32);
    // After erasure, identity-bearing commands are refused.
    let s = fails(
        c.update_personal_data(req(pb::UpdatePersonalDataRequest {
            header: x.next(on),
            person: Some(person("X", "Y", "1988-02-10", &[(Doc::Passport, "P1")])),
        }))
        .await,
        Code::FailedPrecondition,
    );
    assert!(s.message().contains("erased"), "{}", s.message());
    x.unchanged(&mut c).await;
    precondition(
        c.erase_person(req(pb::ErasePersonRequest {
            header: x.next(on),
            legal_basis: "LEY_1581_ART_8".into(),
        }))
        .await,
        "EXITED",
    );
    x.unchanged(&mut c).await;

    let last = x.last_seq;
    assert_log_head(&mut c, &mut b, last, "2022-06-04").await;
    server.stop().await;
}

#[tokio::test]
async fn stale_or_future_expected_version_is_aborted_and_records_nothing() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut t = register(&mut c, "CAMILA", "V31000001", "2022-03-01").await;
    t.pre_register(&mut c, "2022-03-02").await;
    for stale in [0, 1, 3, 99] {
        let s = fails(
            c.schedule_biometrics(req(pb::ScheduleBiometricsRequest {
                header: header(&t.case_id, stale, "2022-03-03"),
                appointment_on: "2022-03-10".into(),
                site: "BOG-01".into(),
            }))
            .await,
            Code::Aborted,
        );
        assert!(
            s.message().contains(&format!("expected {stale}")) && s.message().contains("version 2"),
            "{}",
            s.message()
        );
        t.unchanged(&mut c).await;
    }
    // Re-read and decide again: the current version is accepted.
    t.schedule(&mut c, "2022-03-03", "2022-03-10").await;
    assert_eq!(t.version, 3);
    server.stop().await;
}

#[tokio::test]
async fn unknown_case_is_not_found() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let unknown = "C-00000000000000000000";
    fails(
        c.approve(req(simple(unknown, 1, "2022-03-01"))).await,
        Code::NotFound,
    );
    fails(
        c.pre_register(req(pb::PreRegisterRequest {
            header: header(unknown, 0, "2022-03-01"),
            channel: "ETPV".into(),
            basis: pb::EligibilityBasis::Pip as i32,
        }))
        .await,
        Code::NotFound,
    );
    fails(c.get_case(req(get_case_request(unknown))).await, Code::NotFound);
    fails(
        c.list_case_events(req(pb::ListCaseEventsRequest {
            case_id: unknown.into(),
            from_version: 1,
            limit: 10,
        }))
        .await,
        Code::NotFound,
    );
    // A document nobody holds is not an error: no case.
    let found = ok(c
        .find_cases_by_document(req(pb::FindCasesByDocumentRequest {
            document: Some(pb::IdentityDocument {
                r#type: Doc::VenezuelanCedula as i32,
                number: "V1".into(),
            }),
            purpose: "REVIEW".into(),
        }))
        .await);
    assert!(found.case_ids.is_empty());
    // Nothing was recorded by any of them but the look-up's access event
    // (after the genesis policy): the first registration follows it.
    let r = ok(c
        .register_person(req(register_request(
            person("DORA", "PRUEBA", "1970-01-01", &[(Doc::Passport, "P1")]),
            "2022-03-01",
        )))
        .await);
    assert_eq!((r.first_seq, r.version), (genesis_events() + 2, 1));
    server.stop().await;
}

#[tokio::test]
async fn a_document_held_by_another_case_is_already_exists() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let a = register(&mut c, "ELENA", "V40000001", "2022-03-01").await;
    let find = |n: &str| pb::FindCasesByDocumentRequest {
        document: Some(pb::IdentityDocument {
            r#type: Doc::VenezuelanCedula as i32,
            number: n.into(),
        }),
        purpose: "DEDUPLICATION".into(),
    };

    // Same cédula, written differently, with a passport of its own.
    let second = person(
        "FABIOLA",
        "OTRA PERSONA",
        "1991-01-01",
        &[
            (Doc::Passport, "P40000002"),
            (Doc::VenezuelanCedula, "v-40.000.001"),
        ],
    );
    let second_request = register_request(second, "2022-03-02");
    let refused_case =
        registry::cases::case_id_for_request(&second_request.header.as_ref().unwrap().request_id);
    let s = fails(c.register_person(req(second_request)).await, Code::AlreadyExists);
    assert!(s.message().contains("document"), "{}", s.message());
    assert!(
        !s.message().contains("40000001"),
        "no document number in errors: {}",
        s.message()
    );
    let found = ok(c.find_cases_by_document(req(find("V40000001"))).await);
    assert_eq!(found.case_ids, vec![a.case_id.clone()]);

    // The refused registration did not keep the passport it would have taken.
    let third = person("GLORIA", "PRUEBA", "1992-01-01", &[(Doc::Passport, "P40000002")]);
    let r = ok(c
        .register_person(req(register_request(third, "2022-03-02")))
        .await);
    let mut g = Tracker::registered(&r);
    assert_eq!(
        r.first_seq,
        a.last_seq + 2,
        "the refused registration appended nothing (seq a.last_seq + 1 is the look-up's access event)"
    );

    // A rectification may not take another case's document either.
    let s = fails(
        c.update_personal_data(req(pb::UpdatePersonalDataRequest {
            header: g.next("2022-03-03"),
            person: Some(person(
                "GLORIA",
                "PRUEBA",
                "1992-01-01",
                &[(Doc::Passport, "P40000002"), (Doc::VenezuelanCedula, "V40000001")],
            )),
        }))
        .await,
        Code::AlreadyExists,
    );
    assert!(s.message().contains("document"), "{}", s.message());
    g.unchanged(&mut c).await;
    let found = ok(c.find_cases_by_document(req(find("V40000001"))).await);
    assert_eq!(found.case_ids, vec![a.case_id.clone()]);
    let case = get_case(&mut c, &g.case_id).await;
    assert_eq!(case.person.unwrap().documents.len(), 1);
    // The look-up and the read appended an access event each; the refusal nothing.
    let last = g.last_seq + 2;
    assert_log_head(&mut c, &mut g, last, "2022-03-04").await;
    // The refused registration left no data key behind.
    let dir = server.stop().await;
    let store = open_store(&dir.path().join("data"));
    let keys = store.db().open_tree("person_keys").unwrap();
    assert!(
        keys.get(a.case_id.as_bytes()).unwrap().is_some(),
        "the registered person has a key"
    );
    assert!(
        keys.get(refused_case.as_bytes()).unwrap().is_none(),
        "refused registration kept its key"
    );
}

#[tokio::test]
async fn a_retry_with_the_same_request_id_returns_the_original_result_and_records_nothing() {
    let server = TestServer::start().await;
    let mut c = server.client().await;

    // RegisterPerson carries sealed data: a retry must seal to the same bytes.
    let p = pb::PersonalData {
        address: "Carrera 7 # 32-16".into(),
        ..person(
            "HILDA",
            "PRUEBA",
            "1985-07-07",
            &[(Doc::VenezuelanCedula, "V50000001")],
        )
    };
    let register = register_request(p, "2022-03-01");
    let first = ok(c.register_person(req(register.clone())).await);
    let mut t = Tracker::registered(&first);
    let retry = ok(c.register_person(req(register.clone())).await);
    assert_eq!(
        retry,
        pb::CommandResult {
            deduplicated: true,
            ..first.clone()
        }
    );

    let pre = pb::PreRegisterRequest {
        header: t.next("2022-03-02"),
        channel: "ETPV".into(),
        basis: pb::EligibilityBasis::Ptp as i32,
    };
    let pre_first = ok(c.pre_register(req(pre.clone())).await);
    t.step(&pre_first, "PRE_REGISTERED", &["PreRegistered"]);

    let update = pb::UpdatePersonalDataRequest {
        header: t.next("2022-03-03"),
        person: Some(person(
            "HILDA MARIA",
            "PRUEBA",
            "1985-07-07",
            &[(Doc::VenezuelanCedula, "V50000001"), (Doc::Pep, "PEP-5000-0001")],
        )),
    };
    let update_first = ok(c.update_personal_data(req(update.clone())).await);
    t.step(&update_first, "PRE_REGISTERED", &["PersonalDataUpdated"]);

    t.schedule(&mut c, "2022-03-04", "2022-03-10").await;
    t.capture(&mut c, "2022-03-10").await;
    t.approve(&mut c, "2022-04-01").await;
    let issue = pb::IssuePermitRequest {
        header: t.next("2022-04-02"),
        permit_number: "PPT50000001".into(),
        valid_until: String::new(),
    };
    let issue_first = ok(c.issue_permit(req(issue.clone())).await);
    t.step(&issue_first, "PERMIT_ISSUED", &["PermitIssued"]);
    let version = t.version;

    // Every retry, even of a request several versions back, returns the
    // original result and records nothing.
    for _ in 0..2 {
        let r = ok(c.register_person(req(register.clone())).await);
        assert_eq!(
            r,
            pb::CommandResult {
                deduplicated: true,
                ..first.clone()
            }
        );
        let r = ok(c.pre_register(req(pre.clone())).await);
        assert_eq!(
            r,
            pb::CommandResult {
                deduplicated: true,
                ..pre_first.clone()
            }
        );
        let r = ok(c.update_personal_data(req(update.clone())).await);
        assert_eq!(
            r,
            pb::CommandResult {
                deduplicated: true,
                ..update_first.clone()
            }
        );
        let r = ok(c.issue_permit(req(issue.clone())).await);
        assert_eq!(
            r,
            pb::CommandResult {
                deduplicated: true,
                ..issue_first.clone()
            }
        );
    }
    t.unchanged(&mut c).await;
    let case = get_case(&mut c, &t.case_id).await;
    assert_eq!(case.version, version);
    assert_eq!(case.person.unwrap().given_names, "HILDA MARIA");
    assert_eq!(case.permit.unwrap().permit_number, "PPT50000001");
    let found = ok(c
        .find_cases_by_document(req(pb::FindCasesByDocumentRequest {
            document: Some(pb::IdentityDocument {
                r#type: Doc::Pep as i32,
                number: "pep50000001".into(),
            }),
            purpose: "REVIEW".into(),
        }))
        .await);
    assert_eq!(found.case_ids, vec![t.case_id.clone()]);

    // The two reads above each appended an access event; the retries nothing.
    let last = t.last_seq + 2;
    assert_log_head(&mut c, &mut t, last, "2022-04-03").await;
    drop(c);
    let tmp = server.stop().await;
    let store = open_store(&tmp.path().join("data"));
    assert_eq!(
        store.head().unwrap().seq,
        t.last_seq,
        "the log head after the retries"
    );
}

#[tokio::test]
async fn a_request_id_reused_with_other_content_is_already_exists() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let registration = register_request(
        person(
            "IRENE",
            "PRUEBA",
            "1980-01-01",
            &[(Doc::VenezuelanCedula, "V60000001")],
        ),
        "2022-03-01",
    );
    let mut t = Tracker::registered(&ok(c.register_person(req(registration.clone())).await));
    t.pre_register(&mut c, "2022-03-02").await;

    // RegisterPerson: same id (so the same case id), other personal data.
    let mut other = registration.clone();
    other.person.as_mut().unwrap().given_names = "IRENE SOFIA".into();
    let s = fails(c.register_person(req(other)).await, Code::AlreadyExists);
    assert!(s.message().contains("request id"), "{}", s.message());
    let mut other = registration.clone();
    other.person.as_mut().unwrap().documents[0].number = "V60000009".into();
    fails(c.register_person(req(other)).await, Code::AlreadyExists);
    // ... and the refused variant did not keep its document.
    let found = ok(c
        .find_cases_by_document(req(pb::FindCasesByDocumentRequest {
            document: Some(pb::IdentityDocument {
                r#type: Doc::VenezuelanCedula as i32,
                number: "V60000009".into(),
            }),
            purpose: "REVIEW".into(),
        }))
        .await);
    assert!(found.case_ids.is_empty(), "{:?}", found.case_ids);

    // ScheduleBiometrics: same id, another site.
    let schedule = pb::ScheduleBiometricsRequest {
        header: t.next("2022-03-03"),
        appointment_on: "2022-03-10".into(),
        site: "BOG-01".into(),
    };
    let r = ok(c.schedule_biometrics(req(schedule.clone())).await);
    t.step(&r, "BIOMETRICS_SCHEDULED", &["BiometricAppointmentScheduled"]);
    let other = pb::ScheduleBiometricsRequest {
        site: "MED-02".into(),
        ..schedule.clone()
    };
    fails(c.schedule_biometrics(req(other)).await, Code::AlreadyExists);
    // Same content from another principal is another request.
    let r = as_role("caseworker", schedule.clone());
    fails(c.schedule_biometrics(r).await, Code::AlreadyExists);
    t.unchanged(&mut c).await;

    // The same id on another case is another request: request ids belong
    // to their case (its stream).
    let mut u = register(&mut c, "JULIA", "V60000002", "2022-03-01").await;
    u.pre_register(&mut c, "2022-03-02").await;
    let on_other_case = pb::ScheduleBiometricsRequest {
        header: Some(pb::CommandHeader {
            case_id: u.case_id.clone(),
            expected_version: u.version,
            ..schedule.header.clone().unwrap()
        }),
        ..schedule.clone()
    };
    let r = ok(c.schedule_biometrics(req(on_other_case.clone())).await);
    u.step(&r, "BIOMETRICS_SCHEDULED", &["BiometricAppointmentScheduled"]);
    // Retried there, it gets that case's answer; on the first case, still refused.
    let again = ok(c.schedule_biometrics(req(on_other_case)).await);
    assert!(again.deduplicated);
    assert_eq!(
        (again.case_id.as_str(), again.first_seq, again.version),
        (u.case_id.as_str(), r.first_seq, r.version)
    );
    let other = pb::ScheduleBiometricsRequest {
        site: "MED-02".into(),
        ..schedule.clone()
    };
    fails(c.schedule_biometrics(req(other)).await, Code::AlreadyExists);
    u.unchanged(&mut c).await;
    t.unchanged(&mut c).await;

    let last = u.last_seq;
    assert_log_head(&mut c, &mut u, last, "2022-03-04").await;
    server.stop().await;
}

/// The contract: "the same id with other content is refused with
/// ALREADY_EXISTS". A reused id is decided again against the case as it was
/// before the original request, so another *command* under the same id gets
/// that old state's rejection instead (FAILED_PRECONDITION, NOT_FOUND ...).
#[tokio::test]
async fn a_request_id_reused_for_another_command_is_already_exists() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let register = register_request(
        person(
            "KARINA",
            "PRUEBA",
            "1980-01-01",
            &[(Doc::VenezuelanCedula, "V61000001")],
        ),
        "2022-03-01",
    );
    let register_header = register.header.clone().unwrap();
    let mut t = Tracker::registered(&ok(c.register_person(req(register)).await));
    let pre = t.pre_register(&mut c, "2022-03-02").await;
    t.schedule(&mut c, "2022-03-03", "2022-03-10").await;
    t.capture(&mut c, "2022-03-10").await;
    let _ = pre;
    // Approve under the request id of the registration.
    let s = c
        .approve(req(pb::SimpleStepRequest {
            header: Some(pb::CommandHeader {
                case_id: t.case_id.clone(),
                expected_version: t.version,
                on: "2022-03-11".into(),
                ..register_header
            }),
        }))
        .await;
    let s = fails(s, Code::AlreadyExists);
    assert!(s.message().contains("request id"), "{}", s.message());
    t.unchanged(&mut c).await;
    server.stop().await;
}

#[tokio::test]
async fn bad_input_is_invalid_argument_naming_the_field_and_records_nothing() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut t = register(&mut c, "LAURA", "V70000001", "2022-03-01").await;
    t.pre_register(&mut c, "2022-03-02").await;
    t.schedule(&mut c, "2022-03-03", "2022-03-10").await;
    let fresh = register(&mut c, "MARTA", "V70000009", "2022-03-01").await;
    let last = fresh.last_seq;

    // --- RegisterPerson, one field at a time.
    let good = || {
        register_request(
            person(
                "MONICA",
                "PRUEBA",
                "1990-01-01",
                &[(Doc::VenezuelanCedula, "V70000002")],
            ),
            "2022-03-01",
        )
    };
    let with = |f: &dyn Fn(&mut pb::RegisterPersonRequest)| {
        let mut r = good();
        f(&mut r);
        r
    };
    let with_person = |f: &dyn Fn(&mut pb::PersonalData)| {
        let mut r = good();
        f(r.person.as_mut().unwrap());
        r
    };
    let far_future = "2999-01-01";
    let cases: Vec<(&str, pb::RegisterPersonRequest)> = vec![
        ("header", with(&|r| r.header = None)),
        (
            "header.request_id",
            with(&|r| r.header.as_mut().unwrap().request_id.clear()),
        ),
        (
            "header.request_id",
            with(&|r| r.header.as_mut().unwrap().request_id = "has space".into()),
        ),
        (
            "header.expected_version",
            with(&|r| r.header.as_mut().unwrap().expected_version = 3),
        ),
        (
            "header.on",
            with(&|r| r.header.as_mut().unwrap().on = far_future.into()),
        ),
        (
            "header.on",
            with(&|r| r.header.as_mut().unwrap().on = "2022-02-30".into()),
        ),
        (
            "header.on",
            with(&|r| r.header.as_mut().unwrap().on = "01/03/2022".into()),
        ),
        ("person", with(&|r| r.person = None)),
        ("person.given_names", with_person(&|p| p.given_names.clear())),
        (
            "person.given_names",
            with_person(&|p| p.given_names = "   ".into()),
        ),
        (
            "person.given_names",
            with_person(&|p| p.given_names = "A".repeat(101)),
        ),
        (
            "person.given_names",
            with_person(&|p| p.given_names = "ANA\nMARIA".into()),
        ),
        ("person.family_names", with_person(&|p| p.family_names.clear())),
        (
            "person.family_names",
            with_person(&|p| p.family_names = "Ñ".repeat(101)),
        ),
        ("person.birth_date", with_person(&|p| p.birth_date.clear())),
        (
            "person.birth_date",
            with_person(&|p| p.birth_date = "1990-13-01".into()),
        ),
        (
            "person.birth_date",
            with_person(&|p| p.birth_date = "17/05/1990".into()),
        ),
        (
            "person.birth_date",
            with_person(&|p| p.birth_date = far_future.into()),
        ),
        (
            "person.birth_date",
            with_person(&|p| p.birth_date = "1890-01-01".into()),
        ),
        ("person.documents", with_person(&|p| p.documents.clear())),
        (
            "person.documents",
            with_person(&|p| {
                p.documents.push(pb::IdentityDocument {
                    r#type: Doc::VenezuelanCedula as i32,
                    number: "v-70.000.002".into(),
                })
            }),
        ),
        (
            "person.documents",
            with_person(&|p| {
                p.documents = (0..9)
                    .map(|i| pb::IdentityDocument {
                        r#type: Doc::Passport as i32,
                        number: format!("P7000000{i}"),
                    })
                    .collect()
            }),
        ),
        (
            "person.documents.type",
            with_person(&|p| p.documents[0].r#type = 0),
        ),
        (
            "person.documents.type",
            with_person(&|p| p.documents[0].r#type = 99),
        ),
        (
            "person.documents.number",
            with_person(&|p| p.documents[0].number.clear()),
        ),
        (
            "person.documents.number",
            with_person(&|p| p.documents[0].number = "V#7000".into()),
        ),
        (
            "person.documents.number",
            with_person(&|p| p.documents[0].number = "9".repeat(33)),
        ),
        (
            "person.email",
            with_person(&|p| p.email = "not-an-address".into()),
        ),
        ("person.phone", with_person(&|p| p.phone = "1".repeat(33))),
        ("person.address", with_person(&|p| p.address = "x".repeat(201))),
        ("sex", with(&|r| r.sex = 99)),
        ("sex", with(&|r| r.sex = 0)),
        ("nationality", with(&|r| r.nationality = "VE".into())),
        ("nationality", with(&|r| r.nationality.clear())),
        // "99" is Vichada, a real department; "98" and "1" are not.
        ("department", with(&|r| r.department = "98".into())),
        ("department", with(&|r| r.department = "1".into())),
        ("municipality", with(&|r| r.municipality = "05001".into())),
        ("municipality", with(&|r| r.municipality = "1101".into())),
        ("municipality", with(&|r| r.municipality = "11000".into())),
    ];
    for (i, (field, request)) in cases.into_iter().enumerate() {
        let result = c.register_person(req(request)).await;
        match &result {
            Err(s) if s.code() == Code::InvalidArgument && s.message().contains(field) => {}
            Err(s) => panic!(
                "RegisterPerson case {i} (bad {field}): {:?} {}",
                s.code(),
                s.message()
            ),
            Ok(r) => panic!(
                "RegisterPerson case {i} (bad {field}) was accepted: {:?}",
                r.get_ref()
            ),
        }
        invalid(result, field);
    }
    // The bounds themselves are accepted: 100 characters (not bytes).
    let at_bounds = pb::RegisterPersonRequest {
        department: "99".into(),
        municipality: "99001".into(),
        ..with_person(&|p| {
            p.given_names = "Ñ".repeat(100);
            p.family_names = "É".repeat(100);
            p.documents[0].number = "9".repeat(32);
        })
    };

    // --- The other commands' fields, on case t (BIOMETRICS_SCHEDULED).
    let (id, v) = (t.case_id.clone(), t.version);
    let h = |on: &str| header(&id, v, on);
    let on = "2022-03-10";
    let long_code = "S".repeat(33);
    invalid(
        c.approve(req(pb::SimpleStepRequest { header: None })).await,
        "header",
    );
    invalid(c.approve(req(simple(&id, v, far_future))).await, "header.on");
    invalid(
        c.approve(req(pb::SimpleStepRequest {
            header: Some(pb::CommandHeader {
                case_id: String::new(),
                ..h(on).unwrap()
            }),
        }))
        .await,
        "header.case_id",
    );
    // PreRegister's own rules apply to a case that may apply (REGISTERED).
    for (field, channel, basis) in [
        ("channel", "XYZ", pb::EligibilityBasis::Pip as i32),
        ("channel", "", pb::EligibilityBasis::Pip as i32),
        ("channel", "etpv", pb::EligibilityBasis::Pip as i32),
        ("basis", "ETPV", 0),
        ("basis", "ETPV", 99),
        ("basis", "ETPV", pb::EligibilityBasis::GuardianOfMinor as i32),
    ] {
        invalid(
            c.pre_register(req(pb::PreRegisterRequest {
                header: fresh.next(on),
                channel: channel.into(),
                basis,
            }))
            .await,
            field,
        );
    }
    fresh.unchanged(&mut c).await;
    for (field, household_size, employed, sector) in [
        ("household_size", 0, false, 0),
        ("household_size", 31, false, 0),
        ("sector", 2, true, 99),
    ] {
        invalid(
            c.complete_survey(req(pb::CompleteSurveyRequest {
                header: h(on),
                household_size,
                employed,
                sector,
            }))
            .await,
            field,
        );
    }
    for (field, appointment_on, site) in [
        ("appointment_on", "", "BOG-01"),
        ("appointment_on", "2022-3-20", "BOG-01"),
        ("site", "2022-03-20", ""),
        ("site", "2022-03-20", "bog 01"),
        ("site", "2022-03-20", long_code.as_str()),
    ] {
        invalid(
            c.schedule_biometrics(req(pb::ScheduleBiometricsRequest {
                header: h(on),
                appointment_on: appointment_on.into(),
                site: site.into(),
            }))
            .await,
            field,
        );
    }
    for (field, site, operator, biometric_ref) in [
        ("biometric_ref", "BOG-01", "OP-1", vec![7u8; 31]),
        ("biometric_ref", "BOG-01", "OP-1", vec![7u8; 33]),
        ("biometric_ref", "BOG-01", "OP-1", Vec::new()),
        ("site", "", "OP-1", vec![7u8; 32]),
        ("operator", "BOG-01", "Juan Pérez", vec![7u8; 32]),
    ] {
        invalid(
            c.record_biometric_capture(req(pb::RecordBiometricCaptureRequest {
                header: h(on),
                site: site.into(),
                operator: operator.into(),
                biometric_ref,
            }))
            .await,
            field,
        );
    }
    invalid(
        c.request_information(req(pb::RequestInformationRequest {
            header: h(on),
            reason: "documento ilegible".into(),
        }))
        .await,
        "reason",
    );
    invalid(
        c.deny(req(pb::DenyRequest {
            header: h(on),
            reason: 0,
        }))
        .await,
        "reason",
    );
    invalid(
        c.issue_permit(req(pb::IssuePermitRequest {
            header: h(on),
            permit_number: String::new(),
            valid_until: String::new(),
        }))
        .await,
        "permit_number",
    );
    invalid(
        c.issue_permit(req(pb::IssuePermitRequest {
            header: h(on),
            permit_number: "PPT1".into(),
            valid_until: "31-12-2030".into(),
        }))
        .await,
        "valid_until",
    );
    invalid(
        c.issue_interim_certificate(req(pb::InterimCertificateRequest {
            header: h(on),
            valid_until: String::new(),
        }))
        .await,
        "valid_until",
    );
    invalid(
        c.request_duplicate(req(pb::RequestDuplicateRequest {
            header: h(on),
            cause: 0,
        }))
        .await,
        "cause",
    );
    invalid(
        c.cancel_permit(req(pb::CancelPermitRequest {
            header: h(on),
            ground: 42,
        }))
        .await,
        "ground",
    );
    invalid(
        c.extend_validity(req(pb::ExtendValidityRequest {
            header: h(on),
            valid_until: String::new(),
        }))
        .await,
        "valid_until",
    );
    invalid(
        c.supersede_by_visa(req(pb::SupersedeByVisaRequest {
            header: h(on),
            visa_number: "VR 1/2".into(),
            valid_until: String::new(),
        }))
        .await,
        "visa_number",
    );
    invalid(
        c.update_personal_data(req(pb::UpdatePersonalDataRequest {
            header: h(on),
            person: None,
        }))
        .await,
        "person",
    );
    invalid(
        c.update_personal_data(req(pb::UpdatePersonalDataRequest {
            header: h(on),
            person: Some(person("", "PRUEBA", "1988-02-10", &[(Doc::Passport, "P1")])),
        }))
        .await,
        "person.given_names",
    );
    for (field, department, municipality) in [
        ("department", "98", "98001"),
        ("department", "", "11001"),
        ("municipality", "11", "05001"),
        ("municipality", "11", ""),
    ] {
        invalid(
            c.update_residence(req(pb::UpdateResidenceRequest {
                header: h(on),
                department: department.into(),
                municipality: municipality.into(),
            }))
            .await,
            field,
        );
    }
    for (field, route, sector) in [("route", 0, 1), ("route", 9, 1), ("sector", 1, 0)] {
        invalid(
            c.request_certification(req(pb::RequestCertificationRequest {
                header: h(on),
                route,
                sector,
            }))
            .await,
            field,
        );
    }
    invalid(
        c.assess_certification(req(pb::AssessCertificationRequest {
            header: h(on),
            certification_id: 0,
            passed: true,
        }))
        .await,
        "certification_id",
    );
    for (field, id, standard, body) in [
        ("certification_id", 0, "NCS-1", "SENA"),
        ("standard_code", 1, "", "SENA"),
        ("issuing_body", 1, "NCS-1", "Servicio Nacional"),
    ] {
        invalid(
            c.award_certification(req(pb::AwardCertificationRequest {
                header: h(on),
                certification_id: id,
                standard_code: standard.into(),
                issuing_body: body.into(),
            }))
            .await,
            field,
        );
    }
    invalid(
        c.deny_certification(req(pb::DenyCertificationRequest {
            header: h(on),
            certification_id: 1,
            reason: String::new(),
        }))
        .await,
        "reason",
    );
    invalid(
        c.record_exit(req(pb::RecordExitRequest {
            header: h(on),
            kind: 0,
            destination: String::new(),
        }))
        .await,
        "kind",
    );
    for basis in ["", "ley 1581", long_code.as_str()] {
        invalid(
            c.erase_person(req(pb::ErasePersonRequest {
                header: h(on),
                legal_basis: basis.into(),
            }))
            .await,
            "legal_basis",
        );
    }

    // --- Reads.
    invalid(
        c.get_case(req(pb::GetCaseRequest {
            case_id: id.clone(),
            purpose: String::new(),
        }))
        .await,
        "purpose",
    );
    invalid(
        c.get_case(req(pb::GetCaseRequest {
            case_id: String::new(),
            purpose: "REVIEW".into(),
        }))
        .await,
        "case_id",
    );
    invalid(
        c.get_case(req(pb::GetCaseRequest {
            case_id: "C-1 OR 1=1".into(),
            purpose: "REVIEW".into(),
        }))
        .await,
        "case_id",
    );
    invalid(
        c.list_case_events(req(pb::ListCaseEventsRequest {
            case_id: id.clone(),
            from_version: 1,
            limit: 1001,
        }))
        .await,
        "limit",
    );
    invalid(
        c.find_cases_by_document(req(pb::FindCasesByDocumentRequest {
            document: None,
            purpose: "REVIEW".into(),
        }))
        .await,
        "document",
    );
    invalid(
        c.find_cases_by_document(req(pb::FindCasesByDocumentRequest {
            document: Some(pb::IdentityDocument {
                r#type: 0,
                number: "V70000001".into(),
            }),
            purpose: "REVIEW".into(),
        }))
        .await,
        "document.type",
    );
    for number in ["", "V#70000001", "9".repeat(33).as_str()] {
        invalid(
            c.find_cases_by_document(req(pb::FindCasesByDocumentRequest {
                document: Some(pb::IdentityDocument {
                    r#type: Doc::VenezuelanCedula as i32,
                    number: number.into(),
                }),
                purpose: "REVIEW".into(),
            }))
            .await,
            "document.number",
        );
    }
    invalid(
        c.find_cases_by_document(req(pb::FindCasesByDocumentRequest {
            document: Some(pb::IdentityDocument {
                r#type: Doc::VenezuelanCedula as i32,
                number: "V70000001".into(),
            }),
            purpose: String::new(),
        }))
        .await,
        "purpose",
    );

    // Nothing of it was recorded: the case, and the log as a whole.
    t.unchanged(&mut c).await;
    assert_log_head(&mut c, &mut t, last, on).await;
    let r = ok(c.register_person(req(at_bounds)).await);
    assert_eq!(r.first_seq, t.last_seq + 1);
    let case = get_case(&mut c, &r.case_id).await;
    assert_eq!(case.person.unwrap().given_names.chars().count(), 100);
    assert_eq!(case.department, "99");

    drop(c);
    let tmp = server.stop().await;
    let store = open_store(&tmp.path().join("data"));
    assert_eq!(
        store.head().unwrap().seq,
        r.last_seq + 1,
        "the log head after all refusals: the last registration and the access event of reading it"
    );
}

/// The proto: a request id is "1..64 printable ASCII characters without
/// spaces" and INVALID_ARGUMENT names the field. A 65-character id is
/// refused by the log writer's limit check instead, as RESOURCE_EXHAUSTED
/// without BadRequest details (and after RegisterPerson created a data key).
#[tokio::test]
async fn a_request_id_longer_than_64_characters_is_invalid_argument() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut r = register_request(
        person("NORA", "PRUEBA", "1990-01-01", &[(Doc::Passport, "P80000001")]),
        "2022-03-01",
    );
    r.header.as_mut().unwrap().request_id = "r".repeat(65);
    let s = c.register_person(req(r)).await;
    assert!(
        s.as_ref().is_err_and(|s| s.message().contains("request_id")),
        "the message names request_id: {s:?}"
    );
    invalid(s, "header.request_id");
    // 64 characters are fine.
    let mut r = register_request(
        person("NORA", "PRUEBA", "1990-01-01", &[(Doc::Passport, "P80000001")]),
        "2022-03-01",
    );
    r.header.as_mut().unwrap().request_id = "r".repeat(64);
    let r = ok(c.register_person(req(r)).await);
    assert_eq!(r.first_seq, genesis_events() + 1);
    server.stop().await;
}

/// Dates refused by the domain rules (before the case's latest date, outside
/// a channel's window) are FAILED_PRECONDITION: the date is well formed, the
/// case or the law does not allow it. The PreconditionFailure names the rule
/// and, as its subject, the wire field `header.on` (the domain's `on`).
#[tokio::test]
async fn a_business_date_refused_by_the_rules_names_the_rule_and_header_on() {
    use tonic_types::StatusExt;
    #[track_caller]
    fn rule_on_header(s: tonic::Status, rule: &str) {
        let violations = s
            .get_details_precondition_failure()
            .unwrap_or_else(|| panic!("no PreconditionFailure: {}", s.message()))
            .violations;
        assert_eq!(
            (violations[0].r#type.as_str(), violations[0].subject.as_str()),
            (rule, "header.on"),
            "{}",
            s.message()
        );
    }
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut t = register(&mut c, "OLGA", "V90000001", "2022-03-01").await;
    t.pre_register(&mut c, "2022-03-02").await;
    // Before the case's latest recorded date.
    let s = fails(
        c.schedule_biometrics(req(pb::ScheduleBiometricsRequest {
            header: t.next("2022-03-01"),
            appointment_on: "2022-03-10".into(),
            site: "BOG-01".into(),
        }))
        .await,
        Code::FailedPrecondition,
    );
    rule_on_header(s, "CASE_TIMELINE");
    // ETPV adult applications closed on 2023-11-24.
    let late = register(&mut c, "PAULA", "V90000002", "2023-12-01").await;
    let s = fails(
        c.pre_register(req(pb::PreRegisterRequest {
            header: late.next("2023-12-01"),
            channel: "ETPV".into(),
            basis: pb::EligibilityBasis::Pip as i32,
        }))
        .await,
        Code::FailedPrecondition,
    );
    rule_on_header(s, "CHANNEL_WINDOW");
    late.unchanged(&mut c).await;
    t.unchanged(&mut c).await;
    server.stop().await;
}

#[tokio::test]
async fn calls_without_valid_credentials_are_unauthenticated_and_actor_metadata_is_ignored() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let register = || {
        register_request(
            person("QUERIDA", "PRUEBA", "1990-01-01", &[(Doc::Passport, "P91000001")]),
            "2022-03-01",
        )
    };
    let with = |key: &'static str, value: &str| {
        let mut r = Request::new(register());
        r.metadata_mut().insert(key, value.parse().unwrap());
        r
    };
    // No credentials at all.
    let s = fails(
        c.register_person(Request::new(register())).await,
        Code::Unauthenticated,
    );
    assert!(s.message().contains("credentials required"), "{}", s.message());
    // The legacy actor metadata is not a credential.
    let mut legacy = with(registry::api::ACTOR_USER_HEADER, "u-1");
    legacy
        .metadata_mut()
        .insert(registry::api::ACTOR_OFFICE_HEADER, "BOG".parse().unwrap());
    fails(c.register_person(legacy).await, Code::Unauthenticated);
    // Malformed and unknown tokens.
    for bad in [
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer rgt_not-a-known-token",
        "bearer  ",
    ] {
        let s = fails(
            c.register_person(with("authorization", bad)).await,
            Code::Unauthenticated,
        );
        assert!(
            !s.message().contains("rgt_"),
            "the token is not echoed: {}",
            s.message()
        );
    }
    // Reads need credentials too.
    fails(
        c.get_case(Request::new(get_case_request("C-00000000000000000000")))
            .await,
        Code::Unauthenticated,
    );
    fails(
        c.list_case_events(Request::new(pb::ListCaseEventsRequest {
            case_id: "C-00000000000000000000".into(),
            from_version: 0,
            limit: 0,
        }))
        .await,
        Code::Unauthenticated,
    );
    fails(
        c.find_cases_by_document(Request::new(pb::FindCasesByDocumentRequest {
            document: Some(pb::IdentityDocument {
                r#type: Doc::Passport as i32,
                number: "P91000001".into(),
            }),
            purpose: "REVIEW".into(),
        }))
        .await,
        Code::Unauthenticated,
    );
    // None of them recorded anything: the first registration follows the genesis policy, and
    // its actor is the authenticated principal, whatever actor metadata says.
    let mut r = req(register());
    r.metadata_mut()
        .insert(registry::api::ACTOR_USER_HEADER, "u-impostor".parse().unwrap());
    r.metadata_mut()
        .insert(registry::api::ACTOR_OFFICE_HEADER, "ELSEWHERE".parse().unwrap());
    let r = ok(c.register_person(r).await);
    assert_eq!(r.first_seq, genesis_events() + 1);
    let events = ok(c
        .list_case_events(req(pb::ListCaseEventsRequest {
            case_id: r.case_id.clone(),
            from_version: 0,
            limit: 0,
        }))
        .await);
    assert_eq!(events.events[0].actor_user, ACTOR_USER);
    assert_eq!(events.events[0].actor_office, ACTOR_OFFICE);
    server.stop().await;
}

#[tokio::test]
async fn concurrent_commands_on_the_same_version_one_wins_the_other_is_aborted() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut c2 = server.client().await;
    let mut t = register(&mut c, "RAQUEL", "V92000001", "2022-03-01").await;
    for round in 0..5 {
        let a = pb::UpdateResidenceRequest {
            header: t.next("2022-03-02"),
            department: "05".into(),
            municipality: "05001".into(),
        };
        let b = pb::UpdateResidenceRequest {
            header: t.next("2022-03-02"),
            department: "76".into(),
            municipality: "76001".into(),
        };
        let (ra, rb) = tokio::join!(c.update_residence(req(a)), c2.update_residence(req(b)));
        let (won, lost) = match (ra, rb) {
            (Ok(w), Err(l)) => (w.into_inner(), l),
            (Err(l), Ok(w)) => (w.into_inner(), l),
            (a, b) => panic!("round {round}: exactly one must win: {a:?} / {b:?}"),
        };
        assert_eq!(lost.code(), Code::Aborted, "round {round}: {}", lost.message());
        t.step(&won, "REGISTERED", &["ResidenceUpdated"]);
        t.unchanged(&mut c).await;
    }
    assert_eq!(t.version, 6);

    // Two registrations of one document at once: one case holds it.
    let p = |given: &str| {
        register_request(
            person(given, "PRUEBA", "1990-01-01", &[(Doc::Passport, "P92000009")]),
            "2022-03-01",
        )
    };
    let (ra, rb) = tokio::join!(
        c.register_person(req(p("SARA"))),
        c2.register_person(req(p("TERESA")))
    );
    let (won, lost) = match (ra, rb) {
        (Ok(w), Err(l)) => (w.into_inner(), l),
        (Err(l), Ok(w)) => (w.into_inner(), l),
        (a, b) => panic!("exactly one registration must win: {a:?} / {b:?}"),
    };
    assert_eq!(lost.code(), Code::AlreadyExists, "{}", lost.message());
    let found = ok(c
        .find_cases_by_document(req(pb::FindCasesByDocumentRequest {
            document: Some(pb::IdentityDocument {
                r#type: Doc::Passport as i32,
                number: "P92000009".into(),
            }),
            purpose: "REVIEW".into(),
        }))
        .await);
    assert_eq!(found.case_ids, vec![won.case_id]);
    drop((c, c2));
    server.stop().await;
}
