//! Family links decided against both cases, and PEP-Tutor's linked minor.

use super::*;
use crate::domain::family::{link_id_for_request, state_as_of};

const LINK: &str = "L-0123456789abcdef0123";

/// A minor (born March 2012) who got a PPT issued on `issued_on`, through ETPV.
fn minor_with_ppt(issued_on: &str) -> Case {
    let on = d(issued_on);
    let mut case = Case::new();
    case.today = d("2025-10-01");
    case.run(register_born(d("2021-06-01"), 2012, 3));
    case.run(Command::PreRegister {
        on: d("2021-06-01"),
        channel: ch("ETPV"),
        basis: EligibilityBasis::IrregularOn20210131,
    });
    case.run(Command::ScheduleBiometrics {
        on: d("2021-06-02"),
        appointment_on: d("2021-06-02"),
        site: "S".into(),
    });
    case.run(Command::RecordBiometricCapture {
        on: d("2021-06-02"),
        site: "S".into(),
        operator: "O".into(),
        biometric_ref: [2; 32],
    });
    case.run(Command::Approve { on });
    case.run(Command::IssuePermit {
        on,
        permit_number: sealed(3),
        valid_until: None,
    });
    case
}

fn guardian() -> Case {
    let mut case = Case::new();
    case.today = d("2025-10-01");
    case.run(register_on(d("2025-08-01")));
    case
}

fn record(role: LinkRole, evidence: LinkEvidence, other: &str) -> Command {
    Command::RecordFamilyLink {
        on: d("2025-09-02"),
        link_id: LINK.into(),
        role,
        other_case_id: other.into(),
        evidence,
    }
}

fn apply(case: &mut Case, events: &[Event]) {
    for e in events {
        case.state.apply(e);
        case.log.push(e.clone());
    }
}

/// Links the guardian ("G") to the minor ("M") and applies both sides.
fn link(g: &mut Case, m: &mut Case) {
    let (mine, theirs) = g
        .state
        .decide_link(
            "G",
            &m.state,
            &record(LinkRole::GuardianOf, LinkEvidence::IcbfAct, "M"),
            g.today,
        )
        .expect("linked");
    apply(g, &mine);
    apply(m, &theirs);
}

#[test]
fn a_link_is_recorded_on_both_cases_with_the_inverse_role_and_only_case_ids() {
    let (mut g, mut m) = (guardian(), minor_with_ppt("2022-05-10"));
    link(&mut g, &mut m);
    let (mine, theirs) = (&g.state.family_links()[0], &m.state.family_links()[0]);
    assert_eq!(
        (mine.role, mine.other_case_id.as_str()),
        (LinkRole::GuardianOf, "M")
    );
    assert_eq!(
        (theirs.role, theirs.other_case_id.as_str()),
        (LinkRole::WardOf, "G")
    );
    assert_eq!(mine.link_id, theirs.link_id);
    assert!(m.state.has_active_guardian() && !g.state.has_active_guardian());
    assert_eq!(m.state.linked_case_ids(LinkRole::WardOf), ["G"]);
    // Ended on both, with the role each held.
    let end = Command::EndFamilyLink {
        on: d("2025-09-03"),
        link_id: LINK.into(),
        reason: LinkEndReason::RecordedInError,
    };
    let (mine, theirs) = m.state.decide_link("M", &g.state, &end, g.today).expect("ended");
    assert!(matches!(
        mine[0],
        Event::FamilyLinkEnded {
            role: LinkRole::WardOf,
            ..
        }
    ));
    assert!(matches!(
        theirs[0],
        Event::FamilyLinkEnded {
            role: LinkRole::GuardianOf,
            ..
        }
    ));
    apply(&mut m, &mine);
    apply(&mut g, &theirs);
    assert!(!m.state.has_active_guardian());
    let again = m.state.decide_link("M", &g.state, &end, g.today).unwrap_err();
    assert!(matches!(
        again,
        Rejection::RuleViolated {
            rule: "FAMILY_LINK_ENDED",
            ..
        }
    ));
    // Retries name the same link; other requests another.
    assert_eq!(link_id_for_request("r1", "G"), link_id_for_request("r1", "G"));
    assert_ne!(link_id_for_request("r1", "G"), link_id_for_request("r2", "G"));
    assert!(crate::domain::family::is_link_id(&link_id_for_request("r1", "G")));
}

#[test]
fn bad_links_are_refused_naming_the_rule_or_field() {
    let (g, m) = (guardian(), minor_with_ppt("2022-05-10"));
    let today = g.today;
    let refuse = |a: &Case, a_id: &str, b: &Case, c: Command| {
        a.state.decide_link(a_id, &b.state, &c, today).unwrap_err()
    };
    let field = |r: Rejection| match r {
        Rejection::Invalid { field, .. } => field,
        Rejection::RuleViolated { rule, .. } => rule,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        field(refuse(
            &g,
            "G",
            &g,
            record(LinkRole::GuardianOf, LinkEvidence::IcbfAct, "G")
        )),
        "other_case_id"
    );
    assert_eq!(
        field(refuse(
            &g,
            "G",
            &Case::new(),
            record(LinkRole::GuardianOf, LinkEvidence::IcbfAct, "X")
        )),
        "other_case_id"
    );
    // Evidence that does not prove the role.
    assert_eq!(
        field(refuse(
            &g,
            "G",
            &m,
            record(LinkRole::GuardianOf, LinkEvidence::MarriageRegistry, "M")
        )),
        "evidence"
    );
    // A minor is no guardian; an adult no ward; a parent is older than the child.
    assert_eq!(
        field(refuse(
            &m,
            "M",
            &g,
            record(LinkRole::GuardianOf, LinkEvidence::IcbfAct, "G")
        )),
        "FAMILY_LINK_AGE"
    );
    let adult = guardian();
    assert_eq!(
        field(refuse(
            &g,
            "G",
            &adult,
            record(LinkRole::GuardianOf, LinkEvidence::IcbfAct, "A")
        )),
        "FAMILY_LINK_AGE"
    );
    assert_eq!(
        field(refuse(
            &m,
            "M",
            &g,
            record(LinkRole::ParentOf, LinkEvidence::CivilBirthRegistry, "G")
        )),
        "FAMILY_LINK_AGE"
    );
    // An erased other case.
    let mut erased = minor_with_ppt("2022-05-10");
    erased.run(Command::ErasePerson {
        on: d("2025-09-01"),
        legal_basis: "LEY_1581_2012".into(),
    });
    assert_eq!(
        field(refuse(
            &g,
            "G",
            &erased,
            record(LinkRole::GuardianOf, LinkEvidence::IcbfAct, "E")
        )),
        "FAMILY_LINK_CASE_ERASED"
    );
    // A duplicate active link of the same kind between the pair.
    let (mut g2, mut m2) = (guardian(), minor_with_ppt("2022-05-10"));
    link(&mut g2, &mut m2);
    let again = Command::RecordFamilyLink {
        on: d("2025-09-02"),
        link_id: "L-ffffffffffffffffffff".into(),
        role: LinkRole::GuardianOf,
        other_case_id: "M".into(),
        evidence: LinkEvidence::CourtOrder,
    };
    assert_eq!(field(refuse(&g2, "G", &m2, again)), "FAMILY_LINK_DUPLICATE");
}

#[test]
fn pep_tutor_needs_a_linked_minor_who_held_a_ppt_on_2023_12_31() {
    let apply_on = Command::PreRegister {
        on: d("2025-09-05"),
        channel: ch("PEP_TUTOR"),
        basis: EligibilityBasis::GuardianOfMinor,
    };
    let decide = |g: &Case, linked: &LinkedCases| g.state.decide_with(&apply_on, g.today, &g.catalog, linked);
    let rule_of = |r: Result<Vec<Event>, Rejection>| match r {
        Err(Rejection::RuleViolated { rule, field, .. }) => (rule, field),
        other => panic!("{other:?}"),
    };
    for (issued, eligible) in [("2022-05-10", true), ("2023-12-31", true), ("2024-01-02", false)] {
        let (mut g, mut m) = (guardian(), minor_with_ppt(issued));
        link(&mut g, &mut m);
        let linked = LinkedCases {
            cases: vec![("M".into(), m.log.clone())],
        };
        let then = state_as_of(&m.log, d("2023-12-31"));
        assert_eq!(
            then.status_on(d("2023-12-31")) == PersonStatus::RegularPpt,
            eligible,
            "{issued}"
        );
        match eligible {
            true => assert!(decide(&g, &linked).is_ok(), "PPT issued {issued}"),
            false => assert_eq!(
                rule_of(decide(&g, &linked)),
                ("PEP_TUTOR_NO_ELIGIBLE_MINOR", "basis")
            ),
        }
        // Without the linked case's events the rule cannot hold.
        assert_eq!(
            rule_of(decide(&g, &LinkedCases::NONE)),
            ("PEP_TUTOR_NO_ELIGIBLE_MINOR", "basis")
        );
    }
    // No link at all.
    let g = guardian();
    assert_eq!(
        rule_of(decide(&g, &LinkedCases::NONE)),
        ("PEP_TUTOR_NO_ELIGIBLE_MINOR", "basis")
    );
}
