//! Certifications, exit, erasure, replay, and the read side of the state.

use super::*;

#[test]
fn certification_goes_requested_assessed_awarded_and_failed_ones_are_denied() {
    let mut case = Case::registered();
    let request = |on| Command::RequestCertification {
        on: d(on),
        route: CertificationRoute::SenaCompetency,
        sector: Sector::HospitalityTourism,
    };
    let events = case.run(request("2022-01-01"));
    assert_eq!(
        events,
        [Event::CertificationRequested {
            certification_id: 1,
            on: d("2022-01-01"),
            route: CertificationRoute::SenaCompetency,
            sector: Sector::HospitalityTourism,
        }]
    );
    case.run(Command::AssessCertification {
        certification_id: 1,
        on: d("2022-02-01"),
        passed: true,
    });
    case.run(Command::AwardCertification {
        certification_id: 1,
        on: d("2022-02-15"),
        standard_code: "NCL-260101012".into(),
        issuing_body: "SENA".into(),
    });
    case.run(request("2022-03-01"));
    case.run(Command::AssessCertification {
        certification_id: 2,
        on: d("2022-03-05"),
        passed: false,
    });
    case.run(Command::DenyCertification {
        certification_id: 2,
        on: d("2022-03-06"),
        reason: "FAILED_PRACTICAL".into(),
    });
    let certs = case.state.certifications();
    assert_eq!(certs.len(), 2);
    assert_eq!(certs[0].stage, CertificationStage::Awarded);
    assert_eq!(certs[0].standard_code.as_deref(), Some("NCL-260101012"));
    assert_eq!(certs[1].stage, CertificationStage::Denied);
    assert_eq!(certs[1].denial_reason.as_deref(), Some("FAILED_PRACTICAL"));
    assert_eq!(
        case.state_name(),
        "REGISTERED",
        "certifications do not move the application"
    );
}

#[test]
fn erasure_drops_sealed_data_for_good_but_keeps_statistics() {
    let mut case = Case::etpv_at(Stage::CardDelivered);
    case.run(Command::ErasePerson {
        on: d("2024-01-01"),
        legal_basis: "LEY_1581_2012_ART_15".into(),
    });
    assert!(case.state.is_erased());
    assert_eq!(case.state.person().unwrap().identity, None);
    assert_eq!(case.state.permit().unwrap().number, None);
    assert_eq!(
        person_status(&case.state, TODAY),
        PersonStatus::RegularPpt,
        "the record is kept"
    );
    let (department, municipality) = (
        Department::parse("54").unwrap(),
        Municipality::parse("54001").unwrap(),
    );
    let moved = Command::UpdateResidence {
        on: d("2024-02-01"),
        department,
        municipality,
    };
    assert_eq!(
        case.reject(moved),
        Rejection::Erased {
            command: "UpdateResidence",
            erased_on: d("2024-01-01"),
        },
        "an erased case records only how it ends"
    );
    case.run(Command::CancelPermit {
        on: d("2024-02-01"),
        ground: CancellationGround::Other,
    });
    assert_eq!(case.state.stage(), Stage::PermitCancelled);
    let rebuilt = CaseState::from_events(&case.log);
    assert_eq!(rebuilt, case.state);
    assert_eq!(
        rebuilt.person().unwrap().identity,
        None,
        "replay never brings the identity back"
    );
}

#[test]
fn an_exit_still_allows_rectification_then_erasure() {
    let mut case = Case::etpv_at(Stage::CardDelivered);
    case.run(Command::RecordExit {
        on: d("2023-03-01"),
        kind: ExitKind::Nationalized,
        destination: None,
    });
    assert_eq!(case.state_name(), "EXITED");
    assert_eq!(
        case.state.stage(),
        Stage::CardDelivered,
        "the stage is kept for history"
    );
    let rectify = Command::UpdatePersonalData {
        on: d("2023-04-01"),
        identity: sealed(8),
        documents: vec![DocumentType::Passport],
    };
    case.run(rectify);
    assert_eq!(case.state.person().unwrap().identity, Some(sealed(8)));
    assert!(case
        .state
        .person()
        .unwrap()
        .documents
        .contains(DocumentType::Passport));
    case.run(Command::ErasePerson {
        on: d("2023-05-01"),
        legal_basis: "LEY_1581_2012".into(),
    });
    assert_eq!(person_status(&case.state, TODAY), PersonStatus::Nationalized);
}

#[test]
fn replay_rebuilds_the_same_state_and_events_round_trip_through_json() {
    let mut case = Case::etpv_at(Stage::CardDelivered);
    case.run(Command::RequestDuplicate {
        on: d("2022-01-10"),
        cause: DuplicateCause::Loss,
    });
    case.run(Command::IssueDuplicate { on: d("2022-01-20") });
    case.run(Command::RecordExit {
        on: d("2023-01-01"),
        kind: ExitKind::Departed,
        destination: None,
    });
    case.run(Command::ErasePerson {
        on: d("2023-01-02"),
        legal_basis: "LEY_1581_2012".into(),
    });
    assert_eq!(CaseState::from_events(&case.log), case.state);
    for event in &case.log {
        let json = serde_json::to_value(event).unwrap();
        let tag = json.as_object().unwrap().keys().next().unwrap().clone();
        assert_eq!(tag, event.event_type());
        assert!(EVENT_TYPES.contains(&event.event_type()));
        assert_eq!(&serde_json::from_value::<Event>(json).unwrap(), event);
    }
    let captured = case
        .log
        .iter()
        .find(|e| e.event_type() == "BiometricsCaptured")
        .unwrap();
    let json = serde_json::to_string(captured).unwrap();
    assert!(
        json.contains(&"07".repeat(32)),
        "the biometric reference is hex: {json}"
    );
}

#[test]
fn event_types_are_unique_and_listed() {
    let mut names = EVENT_TYPES.to_vec();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 37);
}

#[test]
fn apply_is_total_on_an_incoherent_log() {
    let mut state = CaseState::default();
    state.apply(&Event::CardDelivered { on: d("2021-01-01") });
    state.apply(&Event::PermitIssued {
        on: d("2021-01-02"),
        permit_type: PermitType::Ppt,
        permit_number: sealed(1),
        valid_until: d("2031-05-30"),
    });
    state.apply(&Event::CertificationAwarded {
        certification_id: 9,
        on: d("2021-01-03"),
        standard_code: "X".into(),
        issuing_body: "Y".into(),
    });
    state.apply(&Event::SurveyCompleted {
        on: d("2020-01-01"),
        household_size: 1,
        employed: false,
        sector: None,
    });
    assert!(!state.exists());
    assert_eq!(state.state_name(), "NO_CASE");
    assert_eq!(state.permit().unwrap().channel, ChannelCode::UNKNOWN);
    assert_eq!(
        state.latest_on(),
        Some(d("2021-01-03")),
        "latest date never moves back"
    );
    assert_eq!(state.events_applied(), 4);
}

#[test]
fn residence_and_age_are_readable_for_statistics() {
    let case = Case::registered();
    assert_eq!(case.state.age_on(d("2021-06-01")), Some(31));
    assert_eq!(
        case.state.person().unwrap().age_band_on(d("2021-06-01")),
        AgeBand::From30To44
    );
    assert_eq!(case.state.municipality(), Some(bogota().1));
    assert_eq!(case.state.nationality(), Some(CountryCode::VEN));
    assert_eq!(case.state.person().unwrap().sex, Sex::Female);
}

#[test]
fn case_state_stays_compact() {
    let size = std::mem::size_of::<CaseState>();
    assert!(size <= 424, "CaseState grew to {size} bytes");
}
