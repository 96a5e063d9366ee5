//! End-to-end: `Import.ImportCases` on a real server. A stream mixing valid
//! histories with an invalid field, an illegal transition mid-history, an
//! invalid legacy reference, a history over the command limit and a command
//! without a body: exact counts and rejections, the stream goes on after
//! each rejection, and the log holds exactly the accepted commands. Sending
//! a history again records nothing; a history may continue an existing case.

mod common;

use common::*;
use registry::api::pb;
use registry::api::pb::import_command::Command as Cmd;
use registry::cases::case_id_for_request;
use registry::limits::{IMPORT_HISTORY_COMMANDS_MAX, IMPORT_LEGACY_REF_BYTES_MAX};
use tonic::Code;

use pb::DocumentType as Doc;

type ImportClient = pb::import_client::ImportClient<registry::client::AuthChannel>;
type AuthCaseworker = pb::caseworker_client::CaseworkerClient<registry::client::AuthChannel>;

/// A header that leaves the case to the history (empty case id, version 0).
fn h(on: &str) -> Option<pb::CommandHeader> {
    Some(pb::CommandHeader {
        request_id: request_id("imp"),
        case_id: String::new(),
        expected_version: 0,
        on: on.to_string(),
    })
}

fn cmd(c: Cmd) -> pb::ImportCommand {
    pb::ImportCommand { command: Some(c) }
}

fn register(given: &str, cedula: &str, birth: &str, on: &str) -> pb::ImportCommand {
    let mut r = register_request(
        person(
            given,
            "IMPORTADA PRUEBA",
            birth,
            &[(Doc::VenezuelanCedula, cedula)],
        ),
        on,
    );
    r.header = h(on);
    cmd(Cmd::RegisterPerson(r))
}

fn pre_register(on: &str) -> pb::ImportCommand {
    cmd(Cmd::PreRegister(pb::PreRegisterRequest {
        header: h(on),
        channel: "ETPV".into(),
        basis: pb::EligibilityBasis::Pip as i32,
    }))
}

fn simple_cmd(make: fn(pb::SimpleStepRequest) -> Cmd, on: &str) -> pb::ImportCommand {
    cmd(make(pb::SimpleStepRequest { header: h(on) }))
}

/// The whole ETPV path to a delivered card: 8 commands, 8 events.
fn etpv_history(legacy_ref: &str, given: &str, cedula: &str, permit: &str) -> pb::ImportCaseHistory {
    pb::ImportCaseHistory {
        legacy_ref: legacy_ref.into(),
        commands: vec![
            register(given, cedula, "1985-04-02", "2022-03-01"),
            pre_register("2022-03-02"),
            cmd(Cmd::ScheduleBiometrics(pb::ScheduleBiometricsRequest {
                header: h("2022-03-03"),
                appointment_on: "2022-03-10".into(),
                site: "BOG-01".into(),
            })),
            cmd(Cmd::RecordBiometricCapture(pb::RecordBiometricCaptureRequest {
                header: h("2022-03-10"),
                site: "BOG-01".into(),
                operator: "OP-0042".into(),
                biometric_ref: biometric_ref(),
            })),
            simple_cmd(Cmd::Approve, "2022-04-01"),
            cmd(Cmd::IssuePermit(pb::IssuePermitRequest {
                header: h("2022-04-02"),
                permit_number: permit.into(),
                valid_until: String::new(),
            })),
            simple_cmd(Cmd::PrintCard, "2022-04-10"),
            simple_cmd(Cmd::DeliverCard, "2022-04-20"),
        ],
    }
}

fn register_rid(history: &pb::ImportCaseHistory) -> String {
    match &history.commands[0].command {
        Some(Cmd::RegisterPerson(r)) => r.header.as_ref().unwrap().request_id.clone(),
        other => panic!("not a registration: {other:?}"),
    }
}

async fn import(client: &mut ImportClient, histories: Vec<pb::ImportCaseHistory>) -> pb::ImportSummary {
    let stream = tonic::codegen::tokio_stream::iter(histories);
    match client.import_cases(stream).await {
        Ok(r) => r.into_inner(),
        Err(s) => panic!("the import stream failed: {:?} {}", s.code(), s.message()),
    }
}

async fn events(c: &mut AuthCaseworker, case_id: &str) -> Vec<pb::EventSummary> {
    c.list_case_events(pb::ListCaseEventsRequest {
        case_id: case_id.into(),
        from_version: 1,
        limit: 1000,
    })
    .await
    .expect("list events")
    .into_inner()
    .events
}

async fn not_found(c: &mut AuthCaseworker, case_id: &str) {
    let r = c
        .list_case_events(pb::ListCaseEventsRequest {
            case_id: case_id.into(),
            from_version: 1,
            limit: 10,
        })
        .await;
    assert_eq!(r.expect_err("no such case").code(), Code::NotFound, "{case_id}");
}

#[tokio::test]
async fn a_stream_of_histories_rejects_each_bad_one_and_imports_the_rest() {
    let server = TestServer::start().await;
    let options = server.options("supervisor");
    let channel = registry::client::connect(&options, std::time::Duration::from_secs(20))
        .await
        .expect("connect");
    let mut import_client = ImportClient::new(channel.clone());
    let mut cw = AuthCaseworker::new(channel);

    // 0: valid, the whole path.
    let valid = etpv_history("LEG-2022/0001", "ANA", "V20000001", "PPT000000001");
    // 1: an invalid field in the registration: nothing of it is recorded.
    let mut invalid_field = etpv_history("LEG-2022/0002", "BETO", "V20000002", "PPT000000002");
    invalid_field.commands[0] = register("BETO", "V20000002", "1985-13-45", "2022-03-01");
    // 2: an illegal transition mid-history: approve a pre-registered application.
    let illegal = pb::ImportCaseHistory {
        legacy_ref: "LEG-2022/0003".into(),
        commands: vec![
            register("CARLA", "V20000003", "1979-07-30", "2022-05-01"),
            pre_register("2022-05-02"),
            simple_cmd(Cmd::Approve, "2022-05-03"),
            simple_cmd(Cmd::PrintCard, "2022-05-04"),
            simple_cmd(Cmd::DeliverCard, "2022-05-05"),
        ],
    };
    // 3: a legacy reference that is not a code (not echoed back).
    let bad_ref = pb::ImportCaseHistory {
        legacy_ref: "JUAN PÉREZ V20000004".into(),
        commands: vec![
            register("DAVID", "V20000004", "1990-01-01", "2022-05-01"),
            pre_register("2022-05-02"),
        ],
    };
    // 4: over the command limit.
    let mut too_long = pb::ImportCaseHistory {
        legacy_ref: "LEG-2022/0005".into(),
        commands: vec![register("ELSA", "V20000005", "1990-01-01", "2022-05-01")],
    };
    while too_long.commands.len() <= IMPORT_HISTORY_COMMANDS_MAX {
        too_long
            .commands
            .push(simple_cmd(Cmd::RecordMissedAppointment, "2022-05-02"));
    }
    // 5: a command without a body after a valid registration.
    let empty_command = pb::ImportCaseHistory {
        legacy_ref: "LEG-2022/0006".into(),
        commands: vec![
            register("FABIO", "V20000006", "1970-11-11", "2022-06-01"),
            pb::ImportCommand { command: None },
            pre_register("2022-06-02"),
        ],
    };
    // 6: valid, short, after all the bad ones: the stream went on.
    let short = pb::ImportCaseHistory {
        legacy_ref: String::new(),
        commands: vec![
            register("GINA", "V20000007", "2001-02-03", "2023-01-10"),
            pre_register("2023-01-11"),
        ],
    };
    let histories = vec![
        valid.clone(),
        invalid_field.clone(),
        illegal.clone(),
        bad_ref.clone(),
        too_long.clone(),
        empty_command.clone(),
        short.clone(),
    ];
    let s = import(&mut import_client, histories).await;

    assert_eq!(s.histories_received, 7);
    assert_eq!(s.histories_imported, 2, "{s:?}");
    assert_eq!(s.histories_rejected, 5);
    // Applied: 8 (valid) + 2 (illegal: register, pre-register) + 1 (empty
    // command: register) + 2 (short).
    assert_eq!(s.commands_applied, 13);
    assert_eq!(s.commands_deduplicated, 0);
    // Skipped: 7 after the invalid registration, 2 after the illegal approval,
    // 2 of the bad reference, all of the over-long history, 1 after the empty command.
    let too_long_len = (IMPORT_HISTORY_COMMANDS_MAX + 1) as u64;
    assert_eq!(s.commands_skipped, 7 + 2 + 2 + too_long_len + 1);
    assert_eq!(s.events_appended, 13, "one event per command on these paths");
    assert_eq!(s.rejections_total, 5);
    assert_eq!(
        s.last_seq,
        genesis_events() + 13,
        "the log held only the genesis policy before"
    );

    let r = &s.rejections;
    assert_eq!(
        r.iter().map(|r| r.history_index).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    // 1: INVALID_ARGUMENT naming the field, at the registration.
    assert_eq!(r[0].code, Code::InvalidArgument as i32);
    assert_eq!(r[0].field, "person.birth_date");
    assert!(r[0].message.contains("person.birth_date"), "{}", r[0].message);
    assert_eq!(r[0].command_index, Some(0));
    assert_eq!(r[0].command, "register_person");
    assert_eq!(r[0].legacy_ref, "LEG-2022/0002");
    // 2: FAILED_PRECONDITION naming the state, at the approval.
    assert_eq!(r[1].code, Code::FailedPrecondition as i32);
    assert!(
        r[1].message.contains("in state PRE_REGISTERED"),
        "{}",
        r[1].message
    );
    assert_eq!(r[1].command_index, Some(2));
    assert_eq!(r[1].command, "approve");
    assert_eq!(r[1].field, "");
    // 3: the history itself, its reference not echoed.
    assert_eq!(r[2].code, Code::InvalidArgument as i32);
    assert_eq!(r[2].field, "legacy_ref");
    assert_eq!(r[2].legacy_ref, "");
    assert_eq!(r[2].command_index, None);
    // 4: the command limit, naming the field.
    assert_eq!(r[3].code, Code::InvalidArgument as i32);
    assert_eq!(r[3].field, "commands");
    assert!(
        r[3].message.contains(&IMPORT_HISTORY_COMMANDS_MAX.to_string()),
        "{}",
        r[3].message
    );
    assert_eq!(r[3].command_index, None);
    assert_eq!(r[3].legacy_ref, "LEG-2022/0005");
    // 5: a command without a body.
    assert_eq!(r[4].code, Code::InvalidArgument as i32);
    assert_eq!(r[4].field, "command");
    assert_eq!(r[4].command_index, Some(1));
    // No personal data in the summary.
    let text = format!("{s:?}");
    for needle in ["BETO", "V20000002", "JUAN", "PÉREZ", "V20000004", "1985-13-45"] {
        assert!(!text.contains(needle), "the summary holds {needle}");
    }

    // The log: every accepted command, in order, with its request id and the
    // stream's actor; nothing of the refused ones.
    let case = case_id_for_request(&register_rid(&valid));
    let ev = events(&mut cw, &case).await;
    assert_eq!(
        ev.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(),
        [
            "PersonRegistered",
            "PreRegistered",
            "BiometricAppointmentScheduled",
            "BiometricsCaptured",
            "Approved",
            "PermitIssued",
            "CardPrinted",
            "CardDelivered"
        ]
    );
    // The actor recorded is the one a single RPC of the same caller records:
    // the stream's metadata and extensions reach every command.
    let single = cw
        .register_person(register_request(
            person("LUZ", "SOLA PRUEBA", "1999-09-09", &[(Doc::Passport, "P9999999")]),
            "2023-02-01",
        ))
        .await
        .expect("a single registration")
        .into_inner();
    let single_actor = events(&mut cw, &single.case_id).await[0].clone();
    for (k, e) in ev.iter().enumerate() {
        assert_eq!(e.version, k as u64 + 1);
        let mut c = valid.commands[k].command.clone().unwrap();
        let header = registry::api::import::header_mut(&mut c).clone().unwrap();
        assert_eq!(e.request_id, header.request_id);
        assert_eq!(e.on, header.on, "the business date is the history's");
        assert_eq!(
            (&e.actor_user, &e.actor_office),
            (&single_actor.actor_user, &single_actor.actor_office)
        );
    }
    let illegal_case = case_id_for_request(&register_rid(&illegal));
    assert_eq!(
        events(&mut cw, &illegal_case)
            .await
            .iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
        ["PersonRegistered", "PreRegistered"],
        "the commands before the rejected one stay recorded"
    );
    assert_eq!(
        events(&mut cw, &case_id_for_request(&register_rid(&empty_command)))
            .await
            .len(),
        1
    );
    assert_eq!(
        events(&mut cw, &case_id_for_request(&register_rid(&short)))
            .await
            .len(),
        2
    );
    for refused in [&invalid_field, &bad_ref, &too_long] {
        not_found(&mut cw, &case_id_for_request(&register_rid(refused))).await;
    }

    // Again: the valid history deduplicates, and a history may continue an
    // existing case by naming it (then the following commands follow on).
    let short_case = case_id_for_request(&register_rid(&short));
    let mut schedule = pb::ScheduleBiometricsRequest {
        header: h("2023-01-12"),
        appointment_on: "2023-01-20".into(),
        site: "MED-03".into(),
    };
    schedule.header.as_mut().unwrap().case_id = short_case.clone();
    schedule.header.as_mut().unwrap().expected_version = 2;
    let continuation = pb::ImportCaseHistory {
        legacy_ref: "LEG-2023/0007-B".into(),
        commands: vec![
            cmd(Cmd::ScheduleBiometrics(schedule)),
            cmd(Cmd::RecordBiometricCapture(pb::RecordBiometricCaptureRequest {
                header: h("2023-01-20"),
                site: "MED-03".into(),
                operator: "OP-9".into(),
                biometric_ref: biometric_ref(),
            })),
        ],
    };
    // Naming another case mid-history is refused.
    let mut wrong = pb::SimpleStepRequest {
        header: h("2022-05-10"),
    };
    wrong.header.as_mut().unwrap().case_id = case.clone();
    let two_cases = pb::ImportCaseHistory {
        legacy_ref: "LEG-2022/0008".into(),
        commands: vec![
            register("HUGO", "V20000008", "1960-06-06", "2022-05-01"),
            cmd(Cmd::Withdraw(wrong)),
        ],
    };
    let s = import(
        &mut import_client,
        vec![valid.clone(), continuation, two_cases.clone()],
    )
    .await;
    assert_eq!(
        s.last_seq,
        genesis_events() + 13 + 1 + 3,
        "the highest seq of the stream's commands"
    );
    assert_eq!(s.histories_received, 3);
    assert_eq!(s.histories_imported, 2, "{s:?}");
    assert_eq!(s.commands_deduplicated, 8);
    assert_eq!(s.commands_applied, 2 + 1);
    assert_eq!(s.events_appended, 3);
    assert_eq!(s.rejections_total, 1);
    assert_eq!(s.rejections[0].history_index, 2);
    assert_eq!(s.rejections[0].field, "header.case_id");
    assert_eq!(s.rejections[0].command_index, Some(1));
    assert_eq!(
        events(&mut cw, &case).await.len(),
        8,
        "nothing new on the valid case"
    );
    let ev = events(&mut cw, &short_case).await;
    assert_eq!(
        ev.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>(),
        [
            "PersonRegistered",
            "PreRegistered",
            "BiometricAppointmentScheduled",
            "BiometricsCaptured"
        ]
    );
    let hugo = events(&mut cw, &case_id_for_request(&register_rid(&two_cases))).await;
    assert_eq!(hugo.len(), 1);

    // An empty stream answers with zeros; the legacy reference limit is the documented one.
    let s = import(&mut import_client, Vec::new()).await;
    assert_eq!(s, pb::ImportSummary::default());
    assert_eq!(IMPORT_LEGACY_REF_BYTES_MAX, 64);

    // The store after a clean stop: exactly these events.
    drop(import_client);
    drop(cw);
    let data_dir = server.data_dir.clone();
    let tmp = server.stop().await;
    let store = open_store(&data_dir);
    assert_eq!(store.head().unwrap().seq, genesis_events() + 13 + 1 + 3);
    drop(store);
    drop(tmp);
}

#[tokio::test]
async fn bad_histories_change_nothing_and_limits_hold_at_the_edge() {
    let server = TestServer::start().await;
    let channel =
        registry::client::connect(&server.options("supervisor"), std::time::Duration::from_secs(20))
            .await
            .expect("connect");
    let mut import_client = ImportClient::new(channel.clone());

    // Exactly at the limit is accepted (registration + missed appointments
    // would be refused by the domain, so use residence updates).
    let mut at_limit = pb::ImportCaseHistory {
        legacy_ref: "a".repeat(IMPORT_LEGACY_REF_BYTES_MAX),
        commands: vec![register("IRIS", "V30000001", "1980-01-01", "2021-01-01")],
    };
    while at_limit.commands.len() < IMPORT_HISTORY_COMMANDS_MAX {
        at_limit
            .commands
            .push(cmd(Cmd::UpdateResidence(pb::UpdateResidenceRequest {
                header: h("2021-01-02"),
                department: "05".into(),
                municipality: if at_limit.commands.len() % 2 == 0 {
                    "05001"
                } else {
                    "05088"
                }
                .into(),
            })));
    }
    // A reference one byte too long, and an empty history.
    let long_ref = pb::ImportCaseHistory {
        legacy_ref: "b".repeat(IMPORT_LEGACY_REF_BYTES_MAX + 1),
        commands: vec![register("JOSE", "V30000002", "1980-01-01", "2021-01-01")],
    };
    let empty = pb::ImportCaseHistory {
        legacy_ref: "LEG-EMPTY".into(),
        commands: Vec::new(),
    };
    let s = import(&mut import_client, vec![at_limit, long_ref.clone(), empty]).await;
    assert_eq!(s.histories_imported, 1, "{s:?}");
    assert_eq!(s.commands_applied, IMPORT_HISTORY_COMMANDS_MAX as u64);
    assert_eq!(s.events_appended, IMPORT_HISTORY_COMMANDS_MAX as u64);
    assert_eq!(s.rejections.len(), 2);
    assert_eq!(
        (s.rejections[0].field.as_str(), s.rejections[0].code),
        ("legacy_ref", Code::InvalidArgument as i32)
    );
    assert_eq!(
        (s.rejections[1].field.as_str(), s.rejections[1].code),
        ("commands", Code::InvalidArgument as i32)
    );
    assert_eq!(s.commands_skipped, 1);

    drop(import_client);
    let data_dir = server.data_dir.clone();
    let _tmp = server.stop().await;
    let store = open_store(&data_dir);
    assert_eq!(
        store.head().unwrap().seq,
        genesis_events() + IMPORT_HISTORY_COMMANDS_MAX as u64,
        "only the history at the limit was recorded"
    );
    assert_eq!(
        store
            .stream_version(&case_id_for_request(&register_rid(&long_ref)))
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn the_import_service_is_healthy_and_listed_by_reflection() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let server = TestServer::start().await;
    let channel =
        registry::client::connect(&server.options("supervisor"), std::time::Duration::from_secs(20))
            .await
            .expect("connect");
    assert_eq!(
        server.health("regularization.v1.Import").await,
        ServingStatus::Serving
    );

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(tonic::codegen::tokio_stream::iter(vec![request]))
        .await
        .expect("reflection")
        .into_inner();
    let answer = answers.message().await.expect("answer").expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = answer.message_response else {
        panic!("not a service list: {answer:?}");
    };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    assert!(names.contains(&"regularization.v1.Import"), "{names:?}");
    assert!(names.contains(&"regularization.v1.Caseworker"), "{names:?}");
}
