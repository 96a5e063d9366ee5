//! Refused application steps, with the exact rejection and the state in it.

use super::*;

#[test]
fn existence_is_checked_first() {
    let empty = Case::new();
    assert_eq!(
        empty.reject(Command::Approve { on: d("2021-01-01") }),
        Rejection::NoSuchCase
    );
    let case = Case::registered();
    assert_eq!(
        case.reject(register_on(d("2021-06-02"))),
        Rejection::CaseAlreadyExists
    );
}

#[test]
fn dates_in_the_future_or_before_the_case_timeline_are_refused() {
    let empty = Case::new();
    assert_eq!(
        empty.reject(register_on(d("2025-06-02"))),
        invalid("on", "2025-06-02 is after today (2025-06-01)")
    );
    let case = Case::etpv_at(Stage::UnderReview);
    assert_eq!(
        case.reject(Command::Approve { on: d("2021-06-19") }),
        rule(
            "Approve",
            "UNDER_REVIEW",
            "CASE_TIMELINE",
            "on",
            "2021-06-19 is before the case's latest recorded date 2021-06-20"
        )
    );
    assert_eq!(
        case.reject_on(Command::Approve { on: d("2021-07-01") }, d("2021-06-30")),
        invalid("on", "2021-07-01 is after today (2021-06-30)")
    );
}

/// A registration with the given residence and documents.
fn register_at(department: &str, municipality: &str, documents: Vec<DocumentType>) -> Command {
    let Command::RegisterPerson {
        on,
        identity,
        sex,
        nationality,
        ..
    } = register_on(d("2021-06-01"))
    else {
        unreachable!("register_on builds a RegisterPerson")
    };
    Command::RegisterPerson {
        on,
        identity,
        sex,
        birth_year: 1990,
        birth_month: 1,
        nationality,
        department: Department::parse(department).unwrap(),
        municipality: Municipality::parse(municipality).unwrap(),
        documents,
    }
}

#[test]
fn registration_fields_are_validated() {
    let empty = Case::new();
    let on = d("2021-06-01");
    assert_eq!(
        empty.reject(register_born(on, 2021, 7)),
        invalid("birth_year", "2021-07 is after the registration date 2021-06-01")
    );
    assert_eq!(
        empty.reject(register_born(on, 2000, 13)),
        invalid("birth_month", "13 is not a month")
    );
    assert_eq!(
        empty.reject(register_born(on, 1899, 1)),
        invalid("birth_year", "before 1900")
    );
    let mismatch = register_at("05", "11001", vec![DocumentType::Passport]);
    assert_eq!(
        empty.reject(mismatch),
        invalid("municipality", "11001 is not in department 05")
    );
    let no_documents = register_at("11", "11001", vec![]);
    assert_eq!(
        empty.reject(no_documents),
        invalid("documents", "at least one identity document is required")
    );
    let twice = register_at("11", "11001", vec![DocumentType::Pep, DocumentType::Pep]);
    assert_eq!(empty.reject(twice), invalid("documents", "PEP listed twice"));
    let empty_identity = Command::UpdatePersonalData {
        on,
        identity: Sealed(vec![]),
        documents: vec![DocumentType::Pep],
    };
    assert_eq!(
        Case::registered().reject(empty_identity),
        invalid("identity", "sealed data is empty")
    );
}

#[test]
fn pre_registration_is_checked_against_the_catalog() {
    let case = Case::registered();
    let on = d("2021-06-01");
    let unknown = Command::PreRegister {
        on,
        channel: ch("ETPV2"),
        basis: EligibilityBasis::Pep,
    };
    assert_eq!(case.reject(unknown), invalid("channel", "unknown channel ETPV2"));
    let basis = Command::PreRegister {
        on,
        channel: ch("ETPV"),
        basis: EligibilityBasis::GuardianOfMinor,
    };
    assert_eq!(
        case.reject(basis),
        invalid("basis", "ETPV does not accept basis GUARDIAN_OF_MINOR")
    );
    let before = Command::PreRegister {
        on,
        channel: ch("VISA_V"),
        basis: EligibilityBasis::Other,
    };
    assert_eq!(
        case.reject(before),
        rule(
            "PreRegister",
            "REGISTERED",
            "CHANNEL_WINDOW",
            "on",
            "VISA_V opens on 2024-12-04"
        )
    );
}

#[test]
fn a_second_application_while_one_is_open_or_a_permit_is_active_is_refused() {
    let pre = |on: &str| Command::PreRegister {
        on: d(on),
        channel: ch("ETPV"),
        basis: EligibilityBasis::Pep,
    };
    let case = Case::etpv_at(Stage::PreRegistered);
    assert_eq!(
        case.reject(pre("2021-06-05")),
        illegal("PreRegister", "PRE_REGISTERED", "application 1 is in process")
    );
    let case = Case::etpv_at(Stage::CardDelivered);
    assert_eq!(
        case.reject(pre("2022-06-05")),
        illegal(
            "PreRegister",
            "CARD_DELIVERED",
            "the person holds an active permit valid until 2031-05-30"
        )
    );
    let mut denied = Case::etpv_at(Stage::UnderReview);
    denied.run(Command::Deny {
        on: d("2021-08-01"),
        reason: DenialReason::Ineligible,
    });
    assert_eq!(
        denied.reject(pre("2021-08-13")),
        illegal(
            "PreRegister",
            "DENIED",
            "application 1 was denied and may be appealed until 2021-08-13"
        )
    );
    assert!(
        denied.try_run(pre("2021-08-14"), TODAY).is_ok(),
        "the denial is final once the window closed"
    );
}

#[test]
fn review_steps_out_of_order_are_refused() {
    let case = Case::etpv_at(Stage::PreRegistered);
    let capture = Command::RecordBiometricCapture {
        on: d("2021-06-02"),
        site: "S".into(),
        operator: "O".into(),
        biometric_ref: [1; 32],
    };
    assert_eq!(
        case.reject(capture),
        illegal(
            "RecordBiometricCapture",
            "PRE_REGISTERED",
            "no biometric appointment is pending"
        )
    );
    assert_eq!(
        case.reject(Command::Approve { on: d("2021-06-02") }),
        illegal("Approve", "PRE_REGISTERED", "no application is under review")
    );
    let mut case = Case::etpv_at(Stage::UnderReview);
    case.run(Command::RequestInformation {
        on: d("2021-07-01"),
        reason: "DOC_MISMATCH".into(),
    });
    assert_eq!(
        case.reject(Command::Approve { on: d("2021-07-02") }),
        illegal(
            "Approve",
            "INFORMATION_REQUIRED",
            "requested information is still awaited"
        )
    );
    let case = Case::etpv_at(Stage::UnderReview);
    let schedule = Command::ScheduleBiometrics {
        on: d("2021-06-21"),
        appointment_on: d("2021-06-22"),
        site: "S".into(),
    };
    assert_eq!(
        case.reject(schedule),
        illegal(
            "ScheduleBiometrics",
            "UNDER_REVIEW",
            "biometrics were already captured"
        )
    );
}

#[test]
fn biometric_fields_are_validated() {
    let case = Case::etpv_at(Stage::PreRegistered);
    let schedule = |appointment: &str, site: &str| Command::ScheduleBiometrics {
        on: d("2021-06-02"),
        appointment_on: d(appointment),
        site: site.into(),
    };
    assert_eq!(
        case.reject(schedule("2021-06-10", "")),
        invalid("site", "must not be empty")
    );
    assert_eq!(
        case.reject(schedule("2021-06-01", "S")),
        invalid("appointment_on", "must be between 2021-06-02 and 365 days later")
    );
    let case = Case::etpv_at(Stage::BiometricsScheduled);
    let early = Command::RecordMissedAppointment { on: d("2021-06-19") };
    assert_eq!(
        case.reject(early),
        rule(
            "RecordMissedAppointment",
            "BIOMETRICS_SCHEDULED",
            "APPOINTMENT_NOT_REACHED",
            "on",
            "the appointment is on 2021-06-20"
        )
    );
    let capture = |operator: &str, biometric_ref: [u8; 32]| Command::RecordBiometricCapture {
        on: d("2021-06-20"),
        site: "S".into(),
        operator: operator.into(),
        biometric_ref,
    };
    assert_eq!(
        case.reject(capture("Maria Perez", [1; 32])),
        invalid(
            "operator",
            "must be a code of ASCII letters, digits and _-./: (no free text)"
        )
    );
    assert_eq!(
        case.reject(capture("O", [0; 32])),
        invalid("biometric_ref", "an all-zero reference is not a reference")
    );
}

#[test]
fn scheduling_after_too_many_missed_appointments_is_refused() {
    let mut case = Case::etpv_at(Stage::BiometricsScheduled);
    let mut day = d("2021-06-20");
    for _ in 0..3 {
        case.run(Command::RecordMissedAppointment { on: day });
        day = day.add_days(1);
        if case.state.missed_appointments() < 3 {
            let site = "S".to_string();
            case.run(Command::ScheduleBiometrics {
                on: day,
                appointment_on: day.add_days(7),
                site,
            });
            day = day.add_days(7);
        }
    }
    let schedule = Command::ScheduleBiometrics {
        on: day,
        appointment_on: day.add_days(7),
        site: "S".into(),
    };
    assert_eq!(
        case.reject(schedule),
        illegal(
            "ScheduleBiometrics",
            "APPOINTMENT_MISSED",
            "3 appointments were missed (ETPV allows 3); withdraw the application"
        )
    );
    assert!(case.try_run(Command::Withdraw { on: day }, TODAY).is_ok());
}

#[test]
fn survey_is_answered_once_and_consistently() {
    let case = Case::etpv_at(Stage::BiometricsScheduled);
    let again = Command::CompleteSurvey {
        on: d("2021-06-04"),
        household_size: 2,
        employed: false,
        sector: None,
    };
    assert_eq!(
        case.reject(again),
        illegal(
            "CompleteSurvey",
            "BIOMETRICS_SCHEDULED",
            "the survey was completed on 2021-06-02"
        )
    );
    let case = Case::etpv_at(Stage::PreRegistered);
    let sector = Command::CompleteSurvey {
        on: d("2021-06-02"),
        household_size: 2,
        employed: false,
        sector: Some(Sector::Technology),
    };
    assert_eq!(
        case.reject(sector),
        invalid("sector", "a sector needs employed = true")
    );
    let none = Command::CompleteSurvey {
        on: d("2021-06-02"),
        household_size: 0,
        employed: false,
        sector: None,
    };
    assert_eq!(case.reject(none), invalid("household_size", "must be 1..=30"));
    let registered = Case::registered();
    let survey = Command::CompleteSurvey {
        on: d("2021-06-02"),
        household_size: 1,
        employed: false,
        sector: None,
    };
    assert_eq!(
        registered.reject(survey),
        illegal("CompleteSurvey", "REGISTERED", "no undecided application is open")
    );
}

#[test]
fn an_appeal_after_its_window_is_refused() {
    let mut case = Case::etpv_at(Stage::UnderReview);
    case.run(Command::Deny {
        on: d("2021-08-01"),
        reason: DenialReason::OpenProceedings,
    });
    // Ten business days after Sunday 2021-08-01 end on Friday 2021-08-13;
    // the Saturday after is too late.
    assert_eq!(
        case.reject(Command::FileAppeal { on: d("2021-08-14") }),
        illegal("FileAppeal", "DENIED", "the appeal window closed on 2021-08-13")
    );
    assert_eq!(
        case.reject(Command::DecideAppeal {
            on: d("2021-08-12"),
            upheld: true
        }),
        illegal("DecideAppeal", "DENIED", "no appeal was filed")
    );
}

#[test]
fn withdrawing_a_decided_application_is_refused() {
    let case = Case::etpv_at(Stage::Approved);
    assert_eq!(
        case.reject(Command::Withdraw { on: d("2021-08-02") }),
        illegal(
            "Withdraw",
            "APPROVED",
            "only an application not yet decided can be withdrawn"
        )
    );
}
