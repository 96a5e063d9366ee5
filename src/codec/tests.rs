//! The codec's unit tests: every event type round trips, stored bytes are
//! pinned, invalid values name their field, and no bytes make decoding panic.

use prost::Message;

use super::*;
use crate::domain::EVENT_TYPES;
use crate::domain::{
    CancellationGround, CertificationRoute, ChannelCode, CountryCode, Date, DenialReason, Department,
    DocumentType, DuplicateCause, EligibilityBasis, Event, ExitKind, LinkEndReason, LinkEvidence, LinkRole,
    Municipality, PermitType, Sealed, Sector, Sex, SubjectRequestKind,
};
use proptest::prelude::*;

/// A policy event recorded before channels stated how their appeal
/// window is counted decodes to calendar days, and is written again
/// byte for byte (same content hash): an old log replays unchanged.
#[test]
fn policy_rules_written_before_the_appeal_count_decode_to_calendar_days() {
    use crate::domain::{DayCount, PolicyBook};
    let genesis = PolicyBook::genesis().remove(0);
    let (event_type, payload) = encode_policy(&genesis);
    let mut m = pb::PolicyAdopted::decode(&payload[..]).unwrap();
    let json = String::from_utf8(m.rules_json.clone()).unwrap();
    let old = json.replace(r#","appeal_window_count":"BUSINESS""#, "");
    assert_ne!(old, json);
    m.rules_blake3 = blake3::hash(old.as_bytes()).as_bytes().to_vec();
    m.rules_json = old.into_bytes();
    let old_payload = m.encode_to_vec();
    let decoded = decode_policy(event_type, &old_payload).unwrap();
    let etpv = &decoded.rules().unwrap().channels[0];
    assert_eq!(etpv.appeal_window_count, DayCount::Calendar);
    assert_eq!(
        etpv.appeal_until(Date::parse("2025-04-11").unwrap()),
        Date::parse("2025-04-21").unwrap()
    );
    assert_eq!(encode_policy(&decoded).1, old_payload);
}

fn d(text: &str) -> Date {
    Date::parse(text).unwrap()
}

fn sealed(tag: u8, len: usize) -> Sealed {
    Sealed((0..len).map(|i| tag ^ (i as u8).wrapping_mul(31)).collect())
}

fn department(code: u8) -> Department {
    Department::new(code).unwrap()
}

fn municipality(code: u32) -> Municipality {
    Municipality::from_log(code).unwrap()
}

/// One realistic event of every type, in [`EVENT_TYPES`] order: a PPT
/// case through ETPV from registration to erasure.
fn samples() -> Vec<Event> {
    vec![
        Event::PersonRegistered {
            on: d("2021-05-05"),
            identity: sealed(0x11, 180),
            sex: Sex::Female,
            birth_year: 1992,
            birth_month: 7,
            nationality: CountryCode::VEN,
            department: department(54),
            municipality: municipality(54001),
            documents: vec![DocumentType::VenezuelanCedula, DocumentType::Pep],
        },
        Event::PreRegistered {
            application_id: 1,
            channel: ChannelCode::parse("ETPV").unwrap(),
            basis: EligibilityBasis::Pep,
            applied_on: d("2021-05-05"),
        },
        Event::SurveyCompleted {
            on: d("2021-05-06"),
            household_size: 4,
            employed: true,
            sector: Some(Sector::HospitalityTourism),
        },
        Event::BiometricAppointmentScheduled {
            on: d("2021-05-06"),
            appointment_on: d("2021-06-15"),
            site: "CUC-CC-VENTURA".to_owned(),
        },
        Event::BiometricAppointmentMissed { on: d("2021-06-15") },
        Event::BiometricsCaptured {
            on: d("2021-07-02"),
            site: "CUC-CC-VENTURA".to_owned(),
            operator: "OP-00417".to_owned(),
            biometric_ref: *blake3::hash(b"enrolment 7741").as_bytes(),
        },
        Event::InformationRequested {
            on: d("2021-08-10"),
            reason: "DOCUMENT_ILLEGIBLE".to_owned(),
        },
        Event::InformationReceived { on: d("2021-08-20") },
        Event::Approved { on: d("2021-10-01") },
        Event::Denied {
            on: d("2021-10-01"),
            reason: DenialReason::Annotation,
            appeal_until: d("2021-10-11"),
        },
        Event::AppealFiled { on: d("2021-10-08") },
        Event::AppealDecided {
            on: d("2021-11-02"),
            upheld: true,
        },
        Event::Withdrawn { on: d("2021-11-03") },
        Event::PermitIssued {
            on: d("2021-11-15"),
            permit_type: PermitType::Ppt,
            permit_number: sealed(0x22, 48),
            valid_until: d("2031-05-30"),
        },
        Event::CardPrinted { on: d("2021-12-01") },
        Event::CardDelivered { on: d("2022-01-20") },
        Event::CardAbandoned { on: d("2022-07-01") },
        Event::InterimCertificateIssued {
            on: d("2021-11-15"),
            valid_until: d("2022-02-13"),
        },
        Event::InterimCertificateExtended {
            on: d("2022-02-10"),
            valid_until: d("2022-05-14"),
        },
        Event::DuplicateRequested {
            on: d("2023-03-03"),
            cause: DuplicateCause::Theft,
        },
        Event::DuplicateIssued { on: d("2023-03-20") },
        Event::ValidityExtended {
            on: d("2031-01-10"),
            valid_until: d("2033-05-30"),
        },
        Event::PermitCancelled {
            on: d("2024-02-29"),
            ground: CancellationGround::AbsenceOver180Days,
        },
        Event::SupersededByVisa {
            on: d("2024-06-01"),
            visa_number: sealed(0x33, 40),
            valid_until: Some(d("2029-06-01")),
        },
        Event::PersonalDataUpdated {
            on: d("2024-07-01"),
            identity: sealed(0x44, 212),
            documents: vec![
                DocumentType::Passport,
                DocumentType::Ppt,
                DocumentType::CedulaExtranjeria,
            ],
        },
        Event::ResidenceUpdated {
            on: d("2024-08-15"),
            department: department(5),
            municipality: municipality(5001),
        },
        Event::CertificationRequested {
            certification_id: 1,
            on: d("2024-09-01"),
            route: CertificationRoute::SenaCompetency,
            sector: Sector::Construction,
        },
        Event::CertificationAssessed {
            certification_id: 1,
            on: d("2024-10-01"),
            passed: true,
        },
        Event::CertificationAwarded {
            certification_id: 1,
            on: d("2024-10-15"),
            standard_code: "NCL-280201051".to_owned(),
            issuing_body: "SENA".to_owned(),
        },
        Event::CertificationDenied {
            certification_id: 2,
            on: d("2024-11-05"),
            reason: "ASSESSMENT_FAILED".to_owned(),
        },
        Event::ExitRecorded {
            on: d("2026-01-10"),
            kind: ExitKind::Nationalized,
            destination: None,
        },
        Event::PersonErased {
            on: d("2026-02-01"),
            legal_basis: "LEY_1581_2012_ART_8".to_owned(),
        },
        Event::SubjectRequestReceived {
            subject_request_id: 1,
            on: d("2026-02-02"),
            kind: SubjectRequestKind::Claim,
            due_on: d("2026-02-23"),
        },
        Event::SubjectRequestExtended {
            subject_request_id: 1,
            on: d("2026-02-20"),
            reason: "VOLUME".to_owned(),
            due_on: d("2026-03-05"),
        },
        Event::SubjectRequestAnswered {
            subject_request_id: 1,
            on: d("2026-03-04"),
            outcome: "RECTIFIED".to_owned(),
        },
        Event::FamilyLinkRecorded {
            on: d("2025-09-02"),
            link_id: "L-0123456789abcdef0123".to_owned(),
            role: LinkRole::WardOf,
            other_case_id: "C-00112233445566778899".to_owned(),
            evidence: LinkEvidence::IcbfAct,
        },
        Event::FamilyLinkEnded {
            on: d("2025-09-03"),
            link_id: "L-0123456789abcdef0123".to_owned(),
            role: LinkRole::WardOf,
            reason: LinkEndReason::RecordedInError,
        },
    ]
}

/// Boundary values: extreme dates, empty and absent collections, every
/// code of some vocabularies, largest integers.
fn edge_samples() -> Vec<Event> {
    let mut events = vec![
        Event::PersonRegistered {
            on: Date::MIN,
            identity: Sealed(Vec::new()),
            sex: Sex::Unspecified,
            birth_year: u16::MAX,
            birth_month: u8::MAX,
            nationality: CountryCode::from_log("ZZZ").unwrap(),
            department: department(99),
            municipality: municipality(99_999),
            documents: DocumentType::ALL.to_vec(),
        },
        Event::PersonRegistered {
            on: Date::MAX,
            identity: sealed(0x55, 16 * 1024),
            sex: Sex::Male,
            birth_year: 0,
            birth_month: 0,
            nationality: CountryCode::VEN,
            department: department(11),
            municipality: municipality(11001),
            documents: Vec::new(),
        },
        Event::PreRegistered {
            application_id: u32::MAX,
            channel: ChannelCode::parse("A_VERY_LONG_COD").unwrap(),
            basis: EligibilityBasis::IrregularOn20210131,
            applied_on: d("1969-12-31"),
        },
        Event::SurveyCompleted {
            on: d("1970-01-01"),
            household_size: 0,
            employed: false,
            sector: None,
        },
        Event::SurveyCompleted {
            on: d("2000-02-29"),
            household_size: u8::MAX,
            employed: true,
            sector: Some(Sector::Other),
        },
        Event::BiometricsCaptured {
            on: Date::MAX,
            site: String::new(),
            operator: "ñ".to_owned(),
            biometric_ref: [0; 32],
        },
        Event::SupersededByVisa {
            on: Date::MIN,
            visa_number: Sealed(vec![0]),
            valid_until: None,
        },
        Event::SupersededByVisa {
            on: d("2024-06-01"),
            visa_number: sealed(0x66, 3),
            valid_until: Some(d("1970-01-01")),
        },
        Event::AppealDecided {
            on: Date::MAX,
            upheld: false,
        },
        Event::CertificationAssessed {
            certification_id: 0,
            on: Date::MIN,
            passed: false,
        },
    ];
    events.extend(DenialReason::ALL.iter().map(|&reason| Event::Denied {
        on: d("2022-01-01"),
        reason,
        appeal_until: d("2022-01-11"),
    }));
    events.extend(
        CancellationGround::ALL
            .iter()
            .map(|&ground| Event::PermitCancelled {
                on: d("2022-01-01"),
                ground,
            }),
    );
    events.extend(PermitType::ALL.iter().map(|&permit_type| Event::PermitIssued {
        on: d("2022-01-01"),
        permit_type,
        permit_number: sealed(0x77, 20),
        valid_until: d("2024-01-01"),
    }));
    events.extend(EligibilityBasis::ALL.iter().map(|&basis| Event::PreRegistered {
        application_id: 2,
        channel: ChannelCode::parse("PEP_TUTOR").unwrap(),
        basis,
        applied_on: d("2023-07-01"),
    }));
    events.extend(ExitKind::ALL.iter().map(|&kind| Event::ExitRecorded {
        on: d("2025-01-01"),
        kind,
        destination: (kind == ExitKind::Departed).then(|| CountryCode::parse("PER").unwrap()),
    }));
    events.extend(
        DuplicateCause::ALL
            .iter()
            .map(|&cause| Event::DuplicateRequested {
                on: d("2025-01-01"),
                cause,
            }),
    );
    events.extend(CertificationRoute::ALL.iter().flat_map(|&route| {
        Sector::ALL
            .iter()
            .map(move |&sector| Event::CertificationRequested {
                certification_id: 3,
                on: d("2025-01-01"),
                route,
                sector,
            })
    }));
    events
}

fn assert_round_trip(event: &Event) {
    let (event_type, payload) = encode(event);
    assert_eq!(event_type, event.event_type());
    assert_eq!(decode(event_type, &payload).as_ref(), Ok(event), "{event:?}");
}

#[test]
fn every_event_type_round_trips() {
    let events = samples();
    let types: Vec<&str> = events.iter().map(Event::event_type).collect();
    assert_eq!(types, EVENT_TYPES, "one sample per event type, in order");
    for event in &events {
        assert_round_trip(event);
    }
}

#[test]
fn boundary_values_round_trip() {
    for event in &edge_samples() {
        assert_round_trip(event);
    }
}

#[test]
fn payloads_are_protobuf_not_json() {
    let (_, payload) = encode(&samples()[0]);
    // Field 1 (on_days), varint: tag byte 0x08.
    assert_eq!(payload[0], 0x08);
    assert!(serde_json::from_slice::<serde_json::Value>(&payload).is_err());
}

/// Pins the stored bytes: a change here breaks every stored event, so it
/// is never the fix for a failing test (see the module documentation).
#[test]
fn stored_bytes_are_stable() {
    let person = Event::PersonRegistered {
        on: d("2021-05-05"),
        identity: Sealed(vec![0xde, 0xad]),
        sex: Sex::Female,
        birth_year: 1992,
        birth_month: 7,
        nationality: CountryCode::VEN,
        department: department(5),
        municipality: municipality(5001),
        documents: vec![DocumentType::Passport, DocumentType::Rumv],
    };
    let expected: &[u8] = &[
        0x08, 0xc0, 0x92, 0x01, // on_days = 18_752 (2021-05-05)
        0x12, 0x02, 0xde, 0xad, // identity_sealed
        0x1a, 0x01, b'F', // sex
        0x20, 0xc8, 0x0f, // birth_year = 1992
        0x28, 0x07, // birth_month = 7
        0x32, 0x03, b'V', b'E', b'N', // nationality
        0x38, 0x05, // department = 5
        0x40, 0x89, 0x27, // municipality = 5001
        0x4a, 0x08, b'P', b'A', b'S', b'S', b'P', b'O', b'R', b'T', // documents[0]
        0x4a, 0x04, b'R', b'U', b'M', b'V', // documents[1]
    ];
    assert_eq!(encode(&person), ("PersonRegistered", expected.to_vec()));
    assert_eq!(decode("PersonRegistered", expected), Ok(person));

    // An absent optional date is absent from the bytes; 1970-01-01 is present as 0.
    let no_end = Event::SupersededByVisa {
        on: d("1970-01-02"),
        visa_number: Sealed(vec![7]),
        valid_until: None,
    };
    assert_eq!(encode(&no_end).1, [0x08, 0x01, 0x12, 0x01, 0x07]);
    let epoch_end = Event::SupersededByVisa {
        on: d("1970-01-02"),
        visa_number: Sealed(vec![7]),
        valid_until: Some(d("1970-01-01")),
    };
    assert_eq!(encode(&epoch_end).1, [0x08, 0x01, 0x12, 0x01, 0x07, 0x18, 0x00]);

    // Dates before 1970 are negative int32 varints (ten bytes).
    let (_, payload) = encode(&Event::Approved { on: Date::MIN });
    assert_eq!(
        decode("Approved", &payload),
        Ok(Event::Approved { on: Date::MIN })
    );
    assert_eq!(
        pb::Approved::decode(payload.as_slice()).unwrap().on_days,
        -719_162
    );
    let (_, payload) = encode(&Event::Approved { on: Date::MAX });
    assert_eq!(
        pb::Approved::decode(payload.as_slice()).unwrap().on_days,
        2_932_896
    );
}

#[test]
fn unknown_event_type_is_refused() {
    assert_eq!(
        decode("PermitRevoked", &[]),
        Err(CodecError::UnknownEventType("PermitRevoked".to_owned()))
    );
    assert!(matches!(
        decode("approved", &[0x08, 0x01]),
        Err(CodecError::UnknownEventType(_))
    ));
    assert!(matches!(decode("", &[]), Err(CodecError::UnknownEventType(t)) if t.is_empty()));
    let long = "X".repeat(10_000);
    let Err(CodecError::UnknownEventType(kept)) = decode(&long, &[]) else {
        panic!("expected UnknownEventType");
    };
    assert_eq!(kept.len(), EVENT_TYPE_CHARS_MAX);
}

#[test]
fn unknown_sex_code_names_the_field() {
    let (_, payload) = encode(&samples()[0]);
    let mut message = pb::PersonRegistered::decode(payload.as_slice()).unwrap();
    message.sex = "Q".to_owned();
    let err = decode("PersonRegistered", &message.encode_to_vec()).unwrap_err();
    assert_eq!(
        err,
        CodecError::InvalidField {
            event_type: "PersonRegistered",
            field: "sex"
        }
    );
    assert_eq!(
        err.to_string(),
        "invalid field sex in stored PersonRegistered event"
    );
}

/// Decodes `message` as `event_type` and returns the field it was refused for.
fn refused_field(event_type: &str, message: &impl Message) -> &'static str {
    match decode(event_type, &message.encode_to_vec()) {
        Err(CodecError::InvalidField {
            event_type: reported,
            field,
        }) => {
            assert_eq!(reported, event_type);
            field
        }
        other => panic!("{event_type}: expected InvalidField, got {other:?}"),
    }
}

#[test]
fn invalid_stored_values_name_their_field() {
    let (_, payload) = encode(&samples()[0]);
    let person = pb::PersonRegistered::decode(payload.as_slice()).unwrap();
    let with = |change: fn(&mut pb::PersonRegistered)| {
        let mut message = person.clone();
        change(&mut message);
        refused_field("PersonRegistered", &message)
    };
    assert_eq!(with(|m| m.sex = String::new()), "sex");
    assert_eq!(with(|m| m.sex = "f".to_owned()), "sex");
    assert_eq!(with(|m| m.on_days = 2_932_897), "on_days");
    assert_eq!(with(|m| m.on_days = -719_163), "on_days");
    assert_eq!(with(|m| m.on_days = i32::MIN), "on_days");
    assert_eq!(with(|m| m.birth_year = 65_536), "birth_year");
    assert_eq!(with(|m| m.birth_month = 256), "birth_month");
    assert_eq!(with(|m| m.nationality = "VE".to_owned()), "nationality");
    assert_eq!(with(|m| m.department = 12), "department");
    assert_eq!(with(|m| m.department = 0), "department");
    assert_eq!(with(|m| m.department = 256 + 5), "department");
    assert_eq!(with(|m| m.municipality = 12_001), "municipality");
    assert_eq!(with(|m| m.municipality = 5_000), "municipality");
    assert_eq!(with(|m| m.municipality = 0), "municipality");
    assert_eq!(with(|m| m.municipality = 105_001), "municipality");
    assert_eq!(with(|m| m.documents.push("passport".to_owned())), "documents");

    let pre = pb::PreRegistered {
        application_id: 1,
        channel: "etpv".to_owned(),
        basis: "PEP".to_owned(),
        applied_on_days: 18_692,
    };
    assert_eq!(refused_field("PreRegistered", &pre), "channel");
    let pre = pb::PreRegistered {
        channel: "ETPV".to_owned(),
        basis: "PEP-FF".to_owned(),
        ..pre
    };
    assert_eq!(refused_field("PreRegistered", &pre), "basis");

    let survey = pb::SurveyCompleted {
        on_days: 18_693,
        household_size: 300,
        employed: false,
        sector: None,
    };
    assert_eq!(refused_field("SurveyCompleted", &survey), "household_size");
    let survey = pb::SurveyCompleted {
        household_size: 3,
        employed: true,
        sector: Some(String::new()),
        ..survey
    };
    assert_eq!(refused_field("SurveyCompleted", &survey), "sector");

    let captured = pb::BiometricsCaptured {
        on_days: 18_700,
        site: "S".to_owned(),
        operator: "O".to_owned(),
        biometric_ref: vec![1; 31],
    };
    assert_eq!(refused_field("BiometricsCaptured", &captured), "biometric_ref");
    let captured = pb::BiometricsCaptured {
        biometric_ref: vec![1; 33],
        ..captured
    };
    assert_eq!(refused_field("BiometricsCaptured", &captured), "biometric_ref");

    let visa = pb::SupersededByVisa {
        on_days: 19_875,
        visa_number_sealed: vec![1, 2, 3],
        valid_until_days: Some(i32::MAX),
    };
    assert_eq!(refused_field("SupersededByVisa", &visa), "valid_until_days");

    let denied = pb::Denied {
        on_days: 18_901,
        reason: "CRIMINAL_RECORD".to_owned(),
        appeal_until_days: -800_000,
    };
    assert_eq!(refused_field("Denied", &denied), "appeal_until_days");
    let residence = pb::ResidenceUpdated {
        on_days: 19_950,
        department: 5,
        municipality: 5_000,
    };
    assert_eq!(refused_field("ResidenceUpdated", &residence), "municipality");
    let certification = pb::CertificationRequested {
        certification_id: 1,
        on_days: 19_967,
        route: "SENA_COMPETENCY".to_owned(),
        sector: "MINING".to_owned(),
    };
    assert_eq!(refused_field("CertificationRequested", &certification), "sector");
    let exit = pb::ExitRecorded {
        on_days: 20_463,
        kind: "EMIGRATED".to_owned(),
        destination: String::new(),
    };
    assert_eq!(refused_field("ExitRecorded", &exit), "kind");
    let exit = pb::ExitRecorded {
        on_days: 20_463,
        kind: "DEPARTED".to_owned(),
        destination: "peru".to_owned(),
    };
    assert_eq!(refused_field("ExitRecorded", &exit), "destination");
    let permit = pb::PermitIssued {
        on_days: 18_946,
        permit_type: "PEP".to_owned(),
        permit_number_sealed: vec![9],
        valid_until_days: 22_429,
    };
    assert_eq!(refused_field("PermitIssued", &permit), "permit_type");
}

#[test]
fn malformed_payload_is_a_prost_error() {
    // Field 1 announced as a varint that never ends.
    assert!(matches!(
        decode("Approved", &[0x08, 0xff]),
        Err(CodecError::Prost(_))
    ));
    // Field 2 announced as 5 bytes of sealed data, 1 present.
    assert!(matches!(
        decode("PersonRegistered", &[0x12, 0x05, 0x00]),
        Err(CodecError::Prost(_))
    ));
    // sex (field 3) with wire type varint instead of length-delimited.
    assert!(matches!(
        decode("PersonRegistered", &[0x18, 0x01]),
        Err(CodecError::Prost(_))
    ));
    // sex as invalid UTF-8.
    assert!(matches!(
        decode("PersonRegistered", &[0x1a, 0x01, 0xff]),
        Err(CodecError::Prost(_))
    ));
}

#[test]
fn unknown_fields_are_ignored_and_missing_fields_read_as_zero() {
    // A future writer's field 15 (varint) is skipped by this reader.
    let payload = [0x08, 0x01, 0x78, 0x2a];
    let on = d("1970-01-02");
    assert_eq!(decode("Approved", &payload), Ok(Event::Approved { on }));
    // An empty payload is every field at its zero value: 1970-01-01 for a date.
    assert_eq!(
        decode("CardPrinted", &[]),
        Ok(Event::CardPrinted { on: d("1970-01-01") })
    );
    // ... and an empty code, which no vocabulary holds.
    assert!(matches!(
        decode("Denied", &[]),
        Err(CodecError::InvalidField { field: "reason", .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Arbitrary bytes under every event type never panic, and whatever
    /// decodes is an event of that type that round-trips.
    #[test]
    fn arbitrary_payloads_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..256)) {
        for event_type in EVENT_TYPES {
            if let Ok(event) = decode(event_type, &payload) {
                prop_assert_eq!(event.event_type(), event_type);
                let (again_type, again) = encode(&event);
                prop_assert_eq!(decode(again_type, &again), Ok(event));
            }
        }
    }

    /// Well-formed protobuf with arbitrary field values never panics
    /// either: the checks, not the wire format, decide.
    #[test]
    fn arbitrary_field_values_never_panic(
        on_days in any::<i32>(),
        numbers in proptest::array::uniform4(any::<u32>()),
        text in "[A-Z0-9_]{0,20}",
        bytes in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let person = pb::PersonRegistered {
            on_days,
            identity_sealed: bytes.clone(),
            sex: text.clone(),
            birth_year: numbers[0],
            birth_month: numbers[1],
            nationality: text.clone(),
            department: numbers[2],
            municipality: numbers[3],
            documents: vec![text.clone()],
        };
        let visa = pb::SupersededByVisa {
            on_days,
            visa_number_sealed: bytes.clone(),
            valid_until_days: Some(on_days.wrapping_add(numbers[0] as i32)),
        };
        let captured = pb::BiometricsCaptured {
            on_days,
            site: text.clone(),
            operator: text.clone(),
            biometric_ref: bytes,
        };
        let payloads = [person.encode_to_vec(), visa.encode_to_vec(), captured.encode_to_vec()];
        for event_type in EVENT_TYPES {
            for payload in &payloads {
                if let Ok(event) = decode(event_type, payload) {
                    let (again_type, again) = encode(&event);
                    prop_assert_eq!(decode(again_type, &again), Ok(event));
                }
            }
        }
    }

    /// Every representable date survives the stored form.
    #[test]
    fn dates_round_trip(days in -719_162i64..=2_932_896) {
        let on = Date::from_days(days).unwrap();
        let (_, payload) = encode(&Event::Approved { on });
        prop_assert_eq!(decode("Approved", &payload), Ok(Event::Approved { on }));
    }
}
