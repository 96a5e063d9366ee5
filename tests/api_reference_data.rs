//! End-to-end: reference data and displayed text validated at the door.
//! A municipality not on DIVIPOLA, a nationality not in ISO 3166-1 and a name
//! holding a bidirectional override are INVALID_ARGUMENT naming the field
//! (google.rpc.BadRequest), and record nothing; an omitted business date is
//! today in Colombia.

mod common;

use common::*;
use registry::api::pb;
use tonic::Code;

use pb::DocumentType as Doc;

fn registration(given: &str, cedula: &str) -> pb::RegisterPersonRequest {
    register_request(
        person(given, "PRUEBA", "1990-01-01", &[(Doc::VenezuelanCedula, cedula)]),
        "2022-03-01",
    )
}

/// Appends a harmless step (residence update) on `t` and checks that it is
/// the next record of the whole log after `last_seq`.
async fn assert_log_head(c: &mut Client, t: &mut Tracker, last_seq: u64) {
    let r = ok(c
        .update_residence(req(pb::UpdateResidenceRequest {
            header: t.next("2022-03-05"),
            department: "91".into(),
            municipality: "91001".into(),
        }))
        .await);
    assert_eq!(r.first_seq, last_seq + 1, "a refused request appended to the log");
    t.version = r.version;
    t.last_seq = r.last_seq;
}

#[tokio::test]
async fn unknown_codes_and_hidden_characters_are_refused_naming_the_field_and_record_nothing() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut t = register(&mut c, "LAURA", "V71000001", "2022-03-01").await;
    let last = t.last_seq;

    let mut refused: Vec<(&str, pb::RegisterPersonRequest)> = Vec::new();
    // Five digits in Antioquia, but no such municipality; and a department
    // that does not exist.
    for code in ["05999", "99999"] {
        let mut r = registration("MONICA", "V71000002");
        r.department = code[..2].into();
        r.municipality = code.into();
        refused.push(("municipality", r));
    }
    // Three letters, but no country; and a withdrawn code (Netherlands Antilles).
    for code in ["ZZZ", "ANT"] {
        let mut r = registration("MONICA", "V71000002");
        r.nationality = code.into();
        refused.push(("nationality", r));
    }
    // A right-to-left override, a zero-width space, a byte-order mark and a
    // newline in names, contact and numbers.
    refused.push((
        "person.given_names",
        registration("ANA\u{202E}ZEMOG", "V71000002"),
    ));
    refused.push(("person.given_names", registration("ANA\nMARIA", "V71000002")));
    refused.push(("person.family_names", {
        let mut r = registration("MONICA", "V71000002");
        r.person.as_mut().unwrap().family_names = "PRUEBA\u{200B}".into();
        r
    }));
    refused.push(("person.address", {
        let mut r = registration("MONICA", "V71000002");
        r.person.as_mut().unwrap().address = "CALLE 10\u{2066}#5-20\u{2069}".into();
        r
    }));
    refused.push(("person.phone", {
        let mut r = registration("MONICA", "V71000002");
        r.person.as_mut().unwrap().phone = "\u{FEFF}3001234567".into();
        r
    }));
    refused.push(("person.email", {
        let mut r = registration("MONICA", "V71000002");
        r.person.as_mut().unwrap().email = "ana@example.org\t".into();
        r
    }));
    refused.push((
        "person.documents.number",
        registration("MONICA", "V7100\u{200F}0002"),
    ));

    for (field, request) in refused {
        let s = invalid(c.register_person(req(request)).await, field);
        assert_eq!(s.code(), Code::InvalidArgument);
    }
    // The other commands that carry such fields.
    invalid(
        c.update_residence(req(pb::UpdateResidenceRequest {
            header: t.next("2022-03-02"),
            department: "05".into(),
            municipality: "05999".into(),
        }))
        .await,
        "municipality",
    );
    invalid(
        c.update_personal_data(req(pb::UpdatePersonalDataRequest {
            header: t.next("2022-03-02"),
            person: Some(person(
                "LAURA\u{202D}",
                "PRUEBA LOPEZ",
                "1988-02-10",
                &[(Doc::VenezuelanCedula, "V71000001")],
            )),
        }))
        .await,
        "person.given_names",
    );
    t.unchanged(&mut c).await;
    assert_log_head(&mut c, &mut t, last).await;

    // The same registration with real codes and clean text is accepted: the
    // refusals reserved nothing (not the document, not the case).
    let mut good = registration("MONICA", "V71000002");
    good.department = "91".into();
    good.municipality = "91405".into(); // La Chorrera, a non-municipalized area
    good.nationality = "XXA".into(); // stateless (ICAO 9303)
    let r = ok(c.register_person(req(good)).await);
    let registered = Tracker::registered(&r);
    assert_eq!(r.first_seq, t.last_seq + 1);
    let case = get_case(&mut c, &registered.case_id).await;
    assert_eq!(
        (
            case.nationality.as_str(),
            case.department.as_str(),
            case.municipality.as_str()
        ),
        ("XXA", "91", "91405")
    );
}

#[tokio::test]
async fn an_omitted_business_date_is_today_in_colombia() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let before = registry::clock::today();
    let r = ok(c
        .register_person(req(register_request(
            person(
                "ROSA",
                "PRUEBA",
                "1990-01-01",
                &[(Doc::VenezuelanCedula, "V71000009")],
            ),
            "",
        )))
        .await);
    let after = registry::clock::today();
    let events = ok(c
        .list_case_events(req(pb::ListCaseEventsRequest {
            case_id: r.case_id.clone(),
            from_version: 0,
            limit: 10,
        }))
        .await)
    .events;
    let on = registry::domain::Date::parse(&events[0].on).expect("a date");
    assert!(
        on == before || on == after,
        "the omitted date {on} is not today in Bogotá ({before}..{after})"
    );
    // The record's own UTC time, read in Bogotá, is the same day (unless
    // midnight in Bogotá fell during the call).
    if before == after {
        assert_eq!(
            registry::clock::colombian_date_at(events[0].recorded_at_us),
            Some(on)
        );
    }
}
