//! Refused certification, exit and erasure steps, and free text.

use super::*;

#[test]
fn awarding_an_unassessed_or_failed_certification_is_refused() {
    let mut case = Case::registered();
    let request = Command::RequestCertification {
        on: d("2022-01-01"),
        route: CertificationRoute::DegreeRecognition,
        sector: Sector::Health,
    };
    case.run(request);
    let award = |on: &str| Command::AwardCertification {
        certification_id: 1,
        on: d(on),
        standard_code: "RES-10687".into(),
        issuing_body: "MINEDUCACION".into(),
    };
    assert_eq!(
        case.reject(award("2022-01-02")),
        illegal(
            "AwardCertification",
            "CERTIFICATION_REQUESTED",
            "the certification was not assessed"
        )
    );
    case.run(Command::AssessCertification {
        certification_id: 1,
        on: d("2022-02-01"),
        passed: false,
    });
    assert_eq!(
        case.reject(award("2022-02-02")),
        illegal(
            "AwardCertification",
            "CERTIFICATION_ASSESSED_FAILED",
            "the assessment was failed"
        )
    );
    let reassess = Command::AssessCertification {
        certification_id: 1,
        on: d("2022-02-03"),
        passed: true,
    };
    assert_eq!(
        case.reject(reassess),
        illegal(
            "AssessCertification",
            "CERTIFICATION_ASSESSED_FAILED",
            "it was already assessed"
        )
    );
    let unknown = Command::AssessCertification {
        certification_id: 7,
        on: d("2022-02-03"),
        passed: true,
    };
    assert_eq!(
        case.reject(unknown),
        invalid("certification_id", "no certification 7 in this case")
    );
}

#[test]
fn denying_a_passed_certification_is_refused() {
    let mut case = Case::registered();
    case.run(Command::RequestCertification {
        on: d("2022-01-01"),
        route: CertificationRoute::SenaCompetency,
        sector: Sector::Construction,
    });
    case.run(Command::AssessCertification {
        certification_id: 1,
        on: d("2022-01-05"),
        passed: true,
    });
    let deny = Command::DenyCertification {
        certification_id: 1,
        on: d("2022-01-06"),
        reason: "LATE".into(),
    };
    assert_eq!(
        case.reject(deny),
        illegal(
            "DenyCertification",
            "CERTIFICATION_ASSESSED_PASSED",
            "the assessment was passed; award it"
        )
    );
}

#[test]
fn minors_cannot_request_certifications() {
    let mut case = Case::new();
    case.run(register_born(d("2022-01-01"), 2006, 6));
    let request = |on: &str| Command::RequestCertification {
        on: d(on),
        route: CertificationRoute::SenaCompetency,
        sector: Sector::Commerce,
    };
    assert_eq!(
        case.reject(request("2024-05-31")),
        rule(
            "RequestCertification",
            "REGISTERED",
            "ADULTS_ONLY",
            "on",
            "the person is 17 on 2024-05-31; certifications are for adults (18+)"
        )
    );
    assert!(
        case.try_run(request("2024-06-01"), TODAY).is_ok(),
        "18 from the birth month"
    );
}

#[test]
fn commands_after_an_exit_are_refused_except_rectification_and_erasure() {
    let mut case = Case::etpv_at(Stage::CardDelivered);
    case.run(Command::RecordExit {
        on: d("2023-01-01"),
        kind: ExitKind::Deceased,
        destination: None,
    });
    let reason = "the person exited (DECEASED) on 2023-01-01; only rectification and erasure remain";
    let on = d("2023-02-01");
    let refused = [
        Command::RequestDuplicate {
            on,
            cause: DuplicateCause::Loss,
        },
        Command::CancelPermit {
            on,
            ground: CancellationGround::Other,
        },
        Command::RecordExit {
            on,
            kind: ExitKind::Departed,
            destination: None,
        },
        Command::PreRegister {
            on,
            channel: ch("SC2"),
            basis: EligibilityBasis::Sc2AsylumSeeker,
        },
        Command::RequestCertification {
            on,
            route: CertificationRoute::SenaCompetency,
            sector: Sector::Other,
        },
        Command::UpdateResidence {
            on,
            department: bogota().0,
            municipality: bogota().1,
        },
    ];
    for command in refused {
        let name = command.name();
        assert_eq!(case.reject(command), illegal(name, "EXITED", reason));
    }
    let rectify = Command::UpdatePersonalData {
        on,
        identity: sealed(4),
        documents: vec![DocumentType::Passport],
    };
    assert!(case.try_run(rectify, TODAY).is_ok());
}

#[test]
fn identity_bearing_commands_after_erasure_are_refused() {
    let mut case = Case::etpv_at(Stage::Approved);
    case.run(Command::ErasePerson {
        on: d("2021-08-02"),
        legal_basis: "LEY_1581_2012".into(),
    });
    let on = d("2021-08-03");
    let rectify = || Command::UpdatePersonalData {
        on,
        identity: sealed(4),
        documents: vec![DocumentType::Passport],
    };
    assert_eq!(
        case.reject(rectify()),
        Rejection::Erased {
            command: "UpdatePersonalData",
            erased_on: d("2021-08-02"),
        }
    );
    let issue = Command::IssuePermit {
        on,
        permit_number: sealed(2),
        valid_until: None,
    };
    assert_eq!(
        case.reject(issue),
        Rejection::Erased {
            command: "IssuePermit",
            erased_on: d("2021-08-02"),
        }
    );
    let visa = Command::SupersedeByVisa {
        on,
        visa_number: sealed(3),
        valid_until: None,
    };
    assert_eq!(
        case.reject(visa),
        Rejection::Erased {
            command: "SupersedeByVisa",
            erased_on: d("2021-08-02"),
        }
    );
    assert_eq!(case.reject(register_on(on)), Rejection::CaseAlreadyExists);
    let again = Command::ErasePerson {
        on,
        legal_basis: "LEY_1581_2012".into(),
    };
    assert_eq!(
        case.reject(again),
        illegal("ErasePerson", "APPROVED", "already erased on 2021-08-02")
    );
    case.run(Command::RecordExit {
        on,
        kind: ExitKind::Departed,
        destination: None,
    });
    assert_eq!(
        case.reject(rectify()),
        Rejection::Erased {
            command: "UpdatePersonalData",
            erased_on: d("2021-08-02"),
        },
        "erasure beats exit"
    );
}

#[test]
fn an_erased_case_records_only_closing_steps() {
    let erase = |case: &mut Case| {
        case.run(Command::ErasePerson {
            on: d("2022-01-03"),
            legal_basis: "LEY_1581_2012".into(),
        })
    };
    let on = d("2022-01-04");
    let refused = |command: &'static str| Rejection::Erased {
        command,
        erased_on: d("2022-01-03"),
    };
    // The process does not move on: no biometrics, no decision, no card.
    let mut scheduled = Case::etpv_at(Stage::BiometricsScheduled);
    erase(&mut scheduled);
    let capture = Command::RecordBiometricCapture {
        on,
        site: "BOG-01".into(),
        operator: "OP1".into(),
        biometric_ref: [7; 32],
    };
    assert_eq!(scheduled.reject(capture), refused("RecordBiometricCapture"));
    let mut review = Case::etpv_at(Stage::UnderReview);
    erase(&mut review);
    assert_eq!(review.reject(Command::Approve { on }), refused("Approve"));
    let mut issued = Case::etpv_at(Stage::PermitIssued);
    erase(&mut issued);
    assert_eq!(issued.reject(Command::PrintCard { on }), refused("PrintCard"));
    // Closing steps remain: a withdrawal, a cancellation, an exit.
    review.run(Command::Withdraw { on });
    issued.run(Command::CancelPermit {
        on,
        ground: CancellationGround::Other,
    });
    issued.run(Command::RecordExit {
        on,
        kind: ExitKind::Departed,
        destination: None,
    });
}

#[test]
fn free_text_never_reaches_the_clear_log() {
    let case = Case::etpv_at(Stage::UnderReview);
    let text = Command::RequestInformation {
        on: d("2021-07-01"),
        reason: "ask Maria about her cedula".into(),
    };
    assert_eq!(
        case.reject(text),
        invalid(
            "reason",
            "must be a code of ASCII letters, digits and _-./: (no free text)"
        )
    );
    let case = Case::registered();
    let erase = Command::ErasePerson {
        on: d("2022-01-01"),
        legal_basis: String::new(),
    };
    assert_eq!(case.reject(erase), invalid("legal_basis", "must not be empty"));
}
