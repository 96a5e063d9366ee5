//! End-to-end: with every log level enabled (TRACE, all crates, the server's
//! dependencies included), a whole case, rejected requests and reads leave no
//! personal data in the logs.
//!
//! Alone in its binary: it installs the process-wide tracing subscriber.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use registry::api::pb;
use tonic::Code;

use pb::DocumentType as Doc;

/// An in-memory log sink shared by every thread of the process.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn trace_logs_of_a_whole_case_hold_no_personal_data() {
    let sink = Sink::default();
    let writer = sink.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let server = TestServer::start().await;
    let mut c = server.client().await;
    let zoe = pb::PersonalData {
        phone: "+57 320 444 5566".into(),
        email: "rosalba.tracenameqx@example.org".into(),
        address: "Avenida Tracecalleqx 12-34".into(),
        ..person(
            "ROSALBA",
            "TRACENAMEQX",
            "1984-09-14",
            &[(Doc::VenezuelanCedula, "V-55.443.322")],
        )
    };
    let registration = register_request(zoe.clone(), "2022-03-01");
    let mut t = Tracker::registered(&ok(c.register_person(req(registration.clone())).await));
    assert!(ok(c.register_person(req(registration)).await).deduplicated);
    t.pre_register(&mut c, "2022-03-02").await;
    let r = ok(c
        .complete_survey(req(pb::CompleteSurveyRequest {
            header: t.next("2022-03-02"),
            household_size: 3,
            employed: true,
            sector: pb::Sector::HospitalityTourism as i32,
        }))
        .await);
    t.step(&r, "PRE_REGISTERED", &["SurveyCompleted"]);
    t.schedule(&mut c, "2022-03-03", "2022-03-10").await;
    t.capture(&mut c, "2022-03-10").await;
    t.approve(&mut c, "2022-04-01").await;
    t.issue_permit(&mut c, "2022-04-02", "PPTTRQX5544").await;
    t.print(&mut c, "2022-04-03").await;
    t.deliver(&mut c, "2022-04-04").await;
    let mut updated = zoe.clone();
    updated.documents.push(pb::IdentityDocument {
        r#type: Doc::Passport as i32,
        number: "TRQX998877".into(),
    });
    let r = ok(c
        .update_personal_data(req(pb::UpdatePersonalDataRequest {
            header: t.next("2022-05-01"),
            person: Some(updated),
        }))
        .await);
    t.step(&r, "CARD_DELIVERED", &["PersonalDataUpdated"]);

    // Rejected requests carrying the same personal data.
    fails(
        c.register_person(req(register_request(zoe.clone(), "2022-03-01")))
            .await,
        Code::AlreadyExists,
    );
    let mut bad = zoe.clone();
    bad.birth_date = "1984-14-14".into();
    invalid(
        c.register_person(req(register_request(bad, "2022-03-01"))).await,
        "person.birth_date",
    );
    precondition(
        c.issue_permit(req(pb::IssuePermitRequest {
            header: t.next("2022-05-02"),
            permit_number: "PPTTRQX0000".into(),
            valid_until: String::new(),
        }))
        .await,
        "CARD_DELIVERED",
    );
    fails(
        c.approve(req(simple(&t.case_id, t.version - 1, "2022-05-02")))
            .await,
        Code::Aborted,
    );

    // Reads.
    let case = get_case(&mut c, &t.case_id).await;
    assert_eq!(case.person.unwrap().given_names, "ROSALBA");
    let found = ok(c
        .find_cases_by_document(req(pb::FindCasesByDocumentRequest {
            document: Some(pb::IdentityDocument {
                r#type: Doc::VenezuelanCedula as i32,
                number: "v55443322".into(),
            }),
            purpose: "REVIEW".into(),
        }))
        .await);
    assert_eq!(found.case_ids, vec![t.case_id.clone()]);
    drop(c);
    server.stop().await;

    let logs = String::from_utf8_lossy(&sink.0.lock().unwrap()).into_owned();
    assert!(!logs.is_empty(), "the subscriber captured the server's logs");
    assert!(
        logs.contains("registry::"),
        "the registry's own events are captured too"
    );
    let personal = [
        "ROSALBA",
        "Rosalba",
        "rosalba",
        "TRACENAMEQX",
        "tracenameqx",
        "Tracenameqx",
        "V-55.443.322",
        "55.443.322",
        "V55443322",
        "55443322",
        "TRQX998877",
        "PPTTRQX5544",
        "PPTTRQX0000",
        "1984-09-14",
        "1984-14-14",
        "320 444 5566",
        "3204445566",
        "Tracecalleqx",
        "TRACECALLEQX",
    ];
    let leaked: Vec<&str> = personal.iter().copied().filter(|p| logs.contains(p)).collect();
    assert!(
        leaked.is_empty(),
        "personal data in the logs: {leaked:?}\n(log size {} bytes)",
        logs.len()
    );
}
