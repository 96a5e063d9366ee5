//! `CaseFacts` mirrors `CaseState` for everything statistics read: for random
//! event histories (any order, since `apply` is total), the derived status on
//! dates on or after the latest event, the breakdown fields and the funnel
//! agree with the domain's own fold; the stored form round-trips.

use proptest::prelude::*;
use registry::domain::{
    person_status, CancellationGround, CaseState, CertificationRoute, ChannelCode, CountryCode, Date,
    DenialReason, Department, DuplicateCause, EligibilityBasis, Event, ExitKind, LinkEndReason, LinkEvidence,
    LinkRole, Municipality, PermitType, Sealed, Sector, Sex,
};
use registry::projection::facts::funnel;
use registry::projection::CaseFacts;

fn event(kind: u8, on: Date, a: u32, b: u32) -> Event {
    let later = on.add_days(i64::from(b % 400));
    let channels = ["ETPV", "PEP_TUTOR", "VISA_V"];
    let munis = [5001, 11001, 54001, 44001];
    match kind % 26 {
        0 => Event::PersonRegistered {
            on,
            identity: Sealed(vec![1, 2, 3]),
            sex: Sex::ALL[(a % 3) as usize],
            birth_year: 1950 + (b % 75) as u16,
            birth_month: 1 + (a % 12) as u8,
            nationality: CountryCode::parse(["VEN", "COL", "ECU", "HTI", "XXA"][(a % 5) as usize]).unwrap(),
            department: Department::new((munis[(b % 4) as usize] / 1000) as u8).unwrap(),
            municipality: Municipality::new(munis[(b % 4) as usize]).unwrap(),
            documents: vec![],
        },
        1 => Event::PreRegistered {
            application_id: 1 + a % 3,
            channel: ChannelCode::parse(channels[(b % 3) as usize]).unwrap(),
            basis: EligibilityBasis::Pep,
            applied_on: on,
        },
        2 => Event::BiometricAppointmentScheduled {
            on,
            appointment_on: later,
            site: "S1".into(),
        },
        3 => Event::BiometricAppointmentMissed { on },
        4 => Event::BiometricsCaptured {
            on,
            site: "S1".into(),
            operator: "OP1".into(),
            biometric_ref: [7; 32],
        },
        5 => Event::InformationRequested {
            on,
            reason: "R1".into(),
        },
        6 => Event::InformationReceived { on },
        7 => Event::Approved { on },
        8 => Event::Denied {
            on,
            reason: DenialReason::Other,
            appeal_until: later,
        },
        9 => Event::AppealFiled { on },
        10 => Event::AppealDecided {
            on,
            upheld: a % 2 == 0,
        },
        11 => Event::Withdrawn { on },
        12 => Event::PermitIssued {
            on,
            permit_type: PermitType::ALL[(a % 4) as usize],
            permit_number: Sealed(vec![9]),
            valid_until: later,
        },
        13 => Event::CardPrinted { on },
        14 => Event::CardDelivered { on },
        15 => Event::CardAbandoned { on },
        16 => Event::DuplicateRequested {
            on,
            cause: DuplicateCause::Loss,
        },
        17 => Event::DuplicateIssued { on },
        18 => Event::ValidityExtended {
            on,
            valid_until: later,
        },
        19 => Event::PermitCancelled {
            on,
            ground: CancellationGround::Other,
        },
        20 => Event::SupersededByVisa {
            on,
            visa_number: Sealed(vec![4]),
            valid_until: (a % 2 == 0).then_some(later),
        },
        21 => Event::ResidenceUpdated {
            on,
            department: Department::new(11).unwrap(),
            municipality: Municipality::new(11001).unwrap(),
        },
        22 => Event::ExitRecorded {
            on,
            kind: ExitKind::ALL[(a % 3) as usize],
            destination: (a % 3 == 0 && b % 2 == 0)
                .then(|| CountryCode::parse(["PER", "CHL"][(b % 4 / 2) as usize]).unwrap()),
        },
        23 => Event::PersonErased {
            on,
            legal_basis: "LEY_1581".into(),
        },
        24 => Event::CertificationRequested {
            certification_id: 1,
            on,
            route: CertificationRoute::SenaCompetency,
            sector: Sector::Commerce,
        },
        _ => Event::InterimCertificateIssued {
            on,
            valid_until: later,
        },
    }
}

fn history() -> impl Strategy<Value = Vec<Event>> {
    // Usually starts with a registration and an application, like real cases.
    (
        any::<bool>(),
        prop::collection::vec((any::<u8>(), 0u32..60, any::<u32>(), any::<u32>()), 0..30),
    )
        .prop_map(|(start_registered, steps)| {
            let mut on = Date::new(2021, 3, 1).unwrap();
            let mut out = Vec::new();
            if start_registered {
                out.push(event(0, on, 1, 2));
                out.push(event(1, on, 0, 0));
            }
            // Family links as decide makes them: fresh ids, ends of active
            // links only, with the role the link was recorded with.
            let mut links: Vec<(String, LinkRole)> = Vec::new();
            let mut next_link = 0u32;
            for (kind, gap, a, b) in steps {
                on = on.add_days(i64::from(gap));
                match kind % 32 {
                    26..=28 => {
                        next_link += 1;
                        let link_id = format!("L-{next_link:020}");
                        let role = LinkRole::ALL[(a % 6) as usize];
                        links.push((link_id.clone(), role));
                        out.push(Event::FamilyLinkRecorded {
                            on,
                            link_id,
                            role,
                            other_case_id: format!("C-{b:020}"),
                            evidence: LinkEvidence::CourtOrder,
                        });
                    }
                    29 | 30 if !links.is_empty() => {
                        let (link_id, role) = links.remove(a as usize % links.len());
                        out.push(Event::FamilyLinkEnded {
                            on,
                            link_id,
                            role,
                            reason: LinkEndReason::RecordedInError,
                        });
                    }
                    _ => out.push(event(kind, on, a, b)),
                }
            }
            out
        })
}

fn check(events: &[Event]) -> Result<(), TestCaseError> {
    let state = CaseState::from_events(events);
    let facts = CaseFacts::from_events(events);
    prop_assert_eq!(facts.registered, state.exists());
    prop_assert_eq!(facts.stage, state.stage());
    prop_assert_eq!(facts.channel(), state.channel());
    prop_assert_eq!(facts.erased, state.is_erased());
    prop_assert_eq!(facts.exit, state.exit().map(|e| e.kind));
    prop_assert_eq!(facts.exit_destination(), state.exit().and_then(|e| e.destination));
    prop_assert_eq!(facts.nationality(), state.nationality());
    prop_assert_eq!(facts.has_guardian(), state.has_active_guardian());
    prop_assert_eq!(
        usize::from(facts.guardians),
        state
            .active_links()
            .filter(|l| l.role == LinkRole::WardOf)
            .count()
    );
    if state.exists() {
        prop_assert_eq!(facts.municipality(), state.municipality());
        let p = state.person().unwrap();
        prop_assert_eq!(facts.sex, p.sex);
        prop_assert_eq!(
            (facts.birth_year, facts.birth_month),
            (p.birth_year, p.birth_month)
        );
    }
    prop_assert_eq!(facts.permit_type, state.permit().map(|p| p.permit_type));
    let m = state.milestones();
    let bits = facts.funnel_bits();
    prop_assert_eq!(bits & funnel::PRE_REGISTERED != 0, m.pre_registered_on.is_some());
    prop_assert_eq!(bits & funnel::BIOMETRICS != 0, m.biometrics_on.is_some());
    prop_assert_eq!(bits & funnel::PRINTED != 0, m.printed_on.is_some());
    prop_assert_eq!(bits & funnel::DELIVERED != 0, m.delivered_on.is_some());
    let latest = state.latest_on().unwrap_or(Date::new(2021, 1, 1).unwrap());
    for days in [0, 1, 30, 200, 400, 800, 5000] {
        let d = latest.add_days(days);
        prop_assert_eq!(
            facts.status_on(d),
            person_status(&state, d),
            "on {} after {:?}",
            d,
            events
        );
        if let Some(p) = state.person() {
            prop_assert_eq!(facts.age_band_on(d), p.age_band_on(d));
        }
    }
    prop_assert_eq!(CaseFacts::decode(&facts.encode()), Some(facts));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn facts_agree_with_case_state(events in history()) {
        check(&events)?;
    }

    #[test]
    fn facts_agree_on_every_prefix(events in history()) {
        for n in 0..=events.len() {
            check(&events[..n])?;
        }
    }
}

#[test]
fn facts_are_small() {
    assert!(
        std::mem::size_of::<CaseFacts>() <= 72,
        "{}",
        std::mem::size_of::<CaseFacts>()
    );
}
