//! End-to-end, through a real server: what a front-end team found when it
//! met the service from the outside (issue 16), each as a regression test,
//! and the machine-readable error contract (google.rpc details).

mod common;

use common::*;
use registry::api::pb;
use tonic::Code;
use tonic_types::StatusExt;

use pb::DocumentType as Doc;

/// The `ErrorInfo.reason` of a status (panics without one).
#[track_caller]
fn reason(s: &tonic::Status) -> String {
    s.get_details_error_info()
        .unwrap_or_else(|| panic!("{:?} without ErrorInfo: {}", s.code(), s.message()))
        .reason
}

fn erase(t: &Tracker, on: &str) -> pb::ErasePersonRequest {
    pb::ErasePersonRequest {
        header: t.next(on),
        legal_basis: "LEY_1581_ART_8".into(),
    }
}

#[tokio::test]
async fn an_erased_case_records_only_closing_steps() {
    let server = TestServer::start().await;
    let mut c = server.client().await;

    // An application waiting for its biometrics, then erased.
    let mut a = register(&mut c, "ANA", "V31000001", "2022-03-01").await;
    a.pre_register(&mut c, "2022-03-02").await;
    a.schedule(&mut c, "2022-03-03", "2022-03-10").await;
    let r = ok(c.erase_person(req(erase(&a, "2022-03-04"))).await);
    a.step(&r, "BIOMETRICS_SCHEDULED", &["PersonErased"]);

    let capture = pb::RecordBiometricCaptureRequest {
        header: a.next("2022-03-10"),
        site: "BOG-01".into(),
        operator: "OP-7".into(),
        biometric_ref: biometric_ref(),
    };
    let s = fails(
        c.record_biometric_capture(req(capture)).await,
        Code::FailedPrecondition,
    );
    assert_eq!(reason(&s), "PERSON_ERASED");
    assert!(s.message().contains("erased on 2022-03-04"), "{}", s.message());
    let violation = &s
        .get_details_precondition_failure()
        .expect("PreconditionFailure")
        .violations[0];
    assert_eq!(violation.r#type, "PERSON_ERASED");
    assert_eq!(violation.subject, "case");
    let schedule = pb::ScheduleBiometricsRequest {
        header: a.next("2022-03-10"),
        appointment_on: "2022-03-20".into(),
        site: "BOG-01".into(),
    };
    let s = fails(
        c.schedule_biometrics(req(schedule)).await,
        Code::FailedPrecondition,
    );
    assert_eq!(reason(&s), "PERSON_ERASED");
    a.unchanged(&mut c).await;
    // Closing the application is still recorded.
    let r = ok(c.withdraw(req(simple(&a.case_id, a.version, "2022-03-11"))).await);
    a.step(&r, "WITHDRAWN", &["Withdrawn"]);

    // A delivered card: no duplicate for an erased person, but the permit can be cancelled.
    let mut b = register(&mut c, "BETO", "V31000002", "2022-03-01").await;
    b.pre_register(&mut c, "2022-03-02").await;
    b.schedule(&mut c, "2022-03-03", "2022-03-04").await;
    b.capture(&mut c, "2022-03-04").await;
    b.approve(&mut c, "2022-03-05").await;
    b.issue_permit(&mut c, "2022-03-06", "PPT-31000002").await;
    b.print(&mut c, "2022-03-07").await;
    b.deliver(&mut c, "2022-03-08").await;
    let r = ok(c.erase_person(req(erase(&b, "2022-03-09"))).await);
    b.step(&r, "CARD_DELIVERED", &["PersonErased"]);
    let duplicate = pb::RequestDuplicateRequest {
        header: b.next("2022-03-10"),
        cause: pb::DuplicateCause::Loss as i32,
    };
    let s = fails(
        c.request_duplicate(req(duplicate)).await,
        Code::FailedPrecondition,
    );
    assert_eq!(reason(&s), "PERSON_ERASED");
    b.unchanged(&mut c).await;
    let cancel = pb::CancelPermitRequest {
        header: b.next("2022-03-10"),
        ground: pb::CancellationGround::Other as i32,
    };
    let r = ok(c.cancel_permit(req(cancel)).await);
    b.step(&r, "PERMIT_CANCELLED", &["PermitCancelled"]);
}

/// `copies` clients send `request` at once; every answer must be a success
/// naming the same events, and exactly one of them the original (returned first).
async fn send_at_once<F, Fut>(copies: usize, send: F) -> Vec<pb::CommandResult>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<pb::CommandResult>, tonic::Status>>
        + Send
        + 'static,
{
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(copies));
    let mut tasks = Vec::new();
    for _ in 0..copies {
        let call = send();
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            call.await
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(ok(t.await.expect("task")));
    }
    let first = &answers[0];
    for a in &answers {
        assert_eq!(
            (&a.case_id, a.first_seq, a.last_seq, a.version),
            (&first.case_id, first.first_seq, first.last_seq, first.version),
            "every copy gets the original's answer"
        );
    }
    assert_eq!(
        answers.iter().filter(|a| !a.deduplicated).count(),
        1,
        "exactly one copy is the original"
    );
    answers.sort_by_key(|a| a.deduplicated);
    answers
}

#[tokio::test]
async fn identical_requests_sent_at_once_all_get_the_original_answer() {
    let server = TestServer::start().await;
    let base = server.client().await;
    for round in 0..60 {
        let request = register_request(
            person(
                "CARLA",
                "RUIZ",
                "1990-05-01",
                &[(Doc::VenezuelanCedula, &format!("V3200000{round}"))],
            ),
            "2022-03-01",
        );
        let answers = send_at_once(16, || {
            let mut c = base.clone();
            let request = request.clone();
            async move { c.register_person(req(request)).await }
        })
        .await;
        let mut t = Tracker::registered(&answers[0]);
        // The same for a decision on an existing case.
        t.pre_register(&mut base.clone(), "2022-03-02").await;
        t.schedule(&mut base.clone(), "2022-03-03", "2022-03-04").await;
        t.capture(&mut base.clone(), "2022-03-04").await;
        let approve = simple(&t.case_id, t.version, "2022-03-05");
        let answers = send_at_once(16, || {
            let mut c = base.clone();
            let approve = approve.clone();
            async move { c.approve(req(approve)).await }
        })
        .await;
        assert_eq!(answers[0].stage, "APPROVED");
    }
}

#[tokio::test]
async fn a_late_retry_leaves_the_document_index_alone() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let registration = register_request(
        person(
            "DORA",
            "LUNA",
            "1985-01-01",
            &[(Doc::VenezuelanCedula, "V33000000")],
        ),
        "2022-03-01",
    );
    let mut t = Tracker::registered(&ok(c.register_person(req(registration.clone())).await));
    let update = |t: &Tracker, number: &str| pb::UpdatePersonalDataRequest {
        header: t.next("2022-03-02"),
        person: Some(person(
            "DORA",
            "LUNA",
            "1985-01-01",
            &[(Doc::VenezuelanCedula, number)],
        )),
    };
    let u1 = update(&t, "V33000001");
    let r = ok(c.update_personal_data(req(u1.clone())).await);
    t.step(&r, "REGISTERED", &["PersonalDataUpdated"]);
    let r = ok(c.update_personal_data(req(update(&t, "V33000002"))).await);
    t.step(&r, "REGISTERED", &["PersonalDataUpdated"]);

    // Late retries of the first update and of the registration: answered, nothing recorded.
    let again = ok(c.update_personal_data(req(u1)).await);
    assert!(again.deduplicated);
    let again = ok(c.register_person(req(registration)).await);
    assert!(again.deduplicated);
    t.unchanged(&mut c).await;

    // The index still finds the case only under the document it holds now.
    let find = |number: &str| pb::FindCasesByDocumentRequest {
        document: Some(pb::IdentityDocument {
            r#type: Doc::VenezuelanCedula as i32,
            number: number.into(),
        }),
        purpose: "REVIEW".into(),
    };
    for (number, expected) in [
        ("V33000000", vec![]),
        ("V33000001", vec![]),
        ("V33000002", vec![t.case_id.clone()]),
    ] {
        let found = ok(c.find_cases_by_document(req(find(number))).await);
        assert_eq!(found.case_ids, expected, "document {number}");
    }
    // Another person may register the documents this case gave up.
    for number in ["V33000000", "V33000001"] {
        let other = register_request(
            person("ELSA", "MORA", "1991-01-01", &[(Doc::VenezuelanCedula, number)]),
            "2022-03-03",
        );
        ok(c.register_person(req(other)).await);
    }
}

#[tokio::test]
async fn the_same_request_from_another_principal_and_a_reused_id_are_told_apart() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut t = register(&mut c, "FELIX", "V34000001", "2022-03-01").await;
    t.pre_register(&mut c, "2022-03-02").await;
    let request = pb::ScheduleBiometricsRequest {
        header: t.next("2022-03-03"),
        appointment_on: "2022-03-10".into(),
        site: "BOG-01".into(),
    };
    ok(c.schedule_biometrics(req(request.clone())).await);
    // The same request by a caseworker (another principal).
    let s = fails(
        c.schedule_biometrics(as_role("caseworker", request.clone()))
            .await,
        Code::AlreadyExists,
    );
    assert_eq!(reason(&s), "REQUEST_FROM_OTHER_PRINCIPAL");
    // Another request under the same id.
    let mut other = request;
    other.appointment_on = "2022-03-11".into();
    let s = fails(c.schedule_biometrics(req(other)).await, Code::AlreadyExists);
    assert_eq!(reason(&s), "REQUEST_ID_REUSED");
    // A document registered to another case.
    let taken = register_request(
        person(
            "GINA",
            "SOL",
            "1990-01-01",
            &[(Doc::VenezuelanCedula, "V34000001")],
        ),
        "2022-03-03",
    );
    let s = fails(c.register_person(req(taken)).await, Code::AlreadyExists);
    assert_eq!(reason(&s), "DOCUMENT_REGISTERED");
}

#[tokio::test]
async fn rule_violations_are_failed_precondition_with_the_rule() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    // A minor asks for a worker certification.
    let minor = register_request(
        person(
            "HUGO",
            "PAZ",
            "2010-02-01",
            &[(Doc::BirthCertificate, "NUIP35000001")],
        ),
        "2022-03-01",
    );
    let t = Tracker::registered(&ok(c.register_person(req(minor)).await));
    let certification = pb::RequestCertificationRequest {
        header: t.next("2022-03-02"),
        route: pb::CertificationRoute::SenaCompetency as i32,
        sector: pb::Sector::Commerce as i32,
    };
    let s = fails(
        c.request_certification(req(certification)).await,
        Code::FailedPrecondition,
    );
    assert_eq!(reason(&s), "ADULTS_ONLY");
    let violation = &s
        .get_details_precondition_failure()
        .expect("PreconditionFailure")
        .violations[0];
    assert_eq!(
        (violation.r#type.as_str(), violation.subject.as_str()),
        ("ADULTS_ONLY", "header.on")
    );
    t.unchanged(&mut c).await;
    // An adult pre-registering in ETPV after its window closed for adults.
    let a = register(&mut c, "IRIS", "V35000002", "2024-01-10").await;
    let late = pb::PreRegisterRequest {
        header: a.next("2024-01-10"),
        channel: "ETPV".into(),
        basis: pb::EligibilityBasis::Pip as i32,
    };
    let s = fails(c.pre_register(req(late)).await, Code::FailedPrecondition);
    assert_eq!(reason(&s), "CHANNEL_WINDOW");
    assert_eq!(
        s.get_details_error_info()
            .expect("ErrorInfo")
            .metadata
            .get("stage")
            .map(String::as_str),
        Some("REGISTERED")
    );
    a.unchanged(&mut c).await;
    // An illegal transition names the stage in its details too.
    let s = fails(
        c.approve(req(simple(&a.case_id, a.version, "2024-01-10"))).await,
        Code::FailedPrecondition,
    );
    assert_eq!(reason(&s), "STAGE");
    assert_eq!(
        s.get_details_error_info()
            .expect("ErrorInfo")
            .metadata
            .get("stage")
            .map(String::as_str),
        Some("REGISTERED")
    );
}

#[tokio::test]
async fn a_birth_date_after_the_business_date_names_person_birth_date() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let request = register_request(
        person(
            "JUAN",
            "RIOS",
            "2022-04-01",
            &[(Doc::VenezuelanCedula, "V36000001")],
        ),
        "2022-03-01",
    );
    invalid(c.register_person(req(request)).await, "person.birth_date");
}

/// A message of the wire layout of `RegisterPersonRequest` whose given
/// names are raw bytes, to send what no generated client can: invalid UTF-8.
#[derive(Clone, PartialEq, prost::Message)]
struct RawRegister {
    #[prost(message, optional, tag = "1")]
    header: Option<pb::CommandHeader>,
    #[prost(message, optional, tag = "2")]
    person: Option<RawPerson>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RawPerson {
    #[prost(bytes = "vec", tag = "1")]
    given_names: Vec<u8>,
}

async fn send_raw(
    server: &TestServer,
    message: RawRegister,
) -> Result<tonic::Response<pb::CommandResult>, tonic::Status> {
    let channel =
        registry::client::connect(&server.options("supervisor"), std::time::Duration::from_secs(20))
            .await
            .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/regularization.v1.Caseworker/RegisterPerson");
    let codec = tonic_prost::ProstCodec::<RawRegister, pb::CommandResult>::default();
    grpc.unary(as_role("supervisor", message), path, codec).await
}

#[tokio::test]
async fn invalid_utf8_and_oversized_requests_are_the_clients_errors() {
    let server = TestServer::start().await;
    let header = || {
        Some(pb::CommandHeader {
            request_id: request_id("raw"),
            case_id: String::new(),
            expected_version: 0,
            on: "2022-03-01".into(),
        })
    };
    let not_utf8 = RawRegister {
        header: header(),
        person: Some(RawPerson {
            given_names: vec![b'A', 0xff, 0xfe, b'B'],
        }),
    };
    invalid(send_raw(&server, not_utf8).await, "person.given_names");
    let oversized = RawRegister {
        header: header(),
        person: Some(RawPerson {
            given_names: vec![b'A'; registry::limits::GRPC_MESSAGE_BYTES_MAX + 1],
        }),
    };
    let s = fails(send_raw(&server, oversized).await, Code::ResourceExhausted);
    let quota = s.get_details_quota_failure().expect("QuotaFailure");
    assert_eq!(quota.violations[0].subject, "request");
    // Nothing was recorded: the log holds only the genesis policy events.
    let mut c = server.client().await;
    let t = register(&mut c, "KIKE", "V37000001", "2022-03-01").await;
    assert_eq!(
        t.last_seq,
        genesis_events() + 1,
        "the refused requests recorded nothing"
    );
}

#[tokio::test]
async fn reflection_is_served_as_v1alpha_too() {
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;

    let server = TestServer::start().await;
    let channel =
        registry::client::connect(&server.options("caseworker"), std::time::Duration::from_secs(20))
            .await
            .expect("connect");
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(tonic::codegen::tokio_stream::iter(vec![request]))
        .await
        .expect("v1alpha reflection")
        .into_inner();
    let answer = answers.message().await.expect("answer").expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("not a service list: {answer:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"regularization.v1.Caseworker"), "{names:?}");
}

#[tokio::test]
async fn statistics_and_admin_argument_errors_name_the_field() {
    let server = TestServer::start().await;
    let channel = registry::client::connect(
        &server.options("statistician"),
        std::time::Duration::from_secs(20),
    )
    .await
    .expect("connect");
    let mut stats = pb::statistics_client::StatisticsClient::new(channel);
    let series = pb::SeriesRequest {
        metric: "REGISTRATIONS".into(),
        from_month: "2022-13".into(),
        ..Default::default()
    };
    invalid(stats.series(as_role("statistician", series)).await, "from_month");
    for by in [
        vec!["municipality"],
        vec!["sex", "sex"],
        vec!["sex", "status", "channel"],
    ] {
        let series = pb::SeriesRequest {
            metric: "REGISTRATIONS".into(),
            by: by.into_iter().map(String::from).collect(),
            ..Default::default()
        };
        invalid(stats.series(as_role("statistician", series)).await, "by");
    }
    let channel = registry::client::connect(&server.options("admin"), std::time::Duration::from_secs(20))
        .await
        .expect("connect");
    let mut admin = pb::admin_client::AdminClient::new(channel);
    let revoke = pb::RevokeTokenRequest {
        token_id: "not a token id!".into(),
    };
    invalid(admin.revoke_token(as_role("admin", revoke)).await, "token_id");
}

#[tokio::test]
async fn a_case_read_says_its_stage_code_and_next_steps_and_the_catalogue_is_listed() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut t = register(&mut c, "LUZ", "V38000001", "2022-03-01").await;
    let r = t.pre_register(&mut c, "2022-03-02").await;
    assert_eq!(r.stage_code, pb::CaseStage::PreRegistered as i32);
    let case = get_case(&mut c, &t.case_id).await;
    assert_eq!(case.stage_code, pb::CaseStage::PreRegistered as i32);
    assert_eq!(case.erased_on, "");
    let next: Vec<&str> = case.next_steps.iter().map(|n| n.command.as_str()).collect();
    assert!(next.contains(&"ScheduleBiometrics"), "{next:?}");
    assert!(!next.contains(&"Approve"), "{next:?}");
    // Every listed command without an earliest date is accepted: schedule
    // one, today, for a day ahead; a missed appointment waits for that day.
    let today = registry::clock::today();
    let appointment = today.add_days(30).to_string();
    t.schedule(&mut c, &today.to_string(), &appointment).await;
    let case = get_case(&mut c, &t.case_id).await;
    let missed = case
        .next_steps
        .iter()
        .find(|n| n.command == "RecordMissedAppointment")
        .expect("a missed appointment can be recorded");
    assert_eq!(missed.earliest_on, appointment);

    let channels = ok(c
        .list_channels(as_role("caseworker", pb::ListChannelsRequest::default()))
        .await)
    .channels;
    let etpv = channels.iter().find(|ch| ch.code == "ETPV").expect("ETPV listed");
    assert_eq!(etpv.closes_on, "2023-11-24");
    assert_eq!(etpv.minors_close_on, "2031-05-30");
    assert_eq!(etpv.valid_until, "2031-05-30");
    assert_eq!(etpv.appeal_window_days, 10);
    assert_eq!(etpv.appeal_window_count, "BUSINESS");
    let visa = channels
        .iter()
        .find(|ch| ch.code == "VISA_V")
        .expect("VISA_V listed");
    assert_eq!((visa.validity_months, visa.once_per_person), (24, true));
}
