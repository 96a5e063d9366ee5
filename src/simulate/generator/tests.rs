//! The generator's unit tests: the share tables, determinism, the intended
//! shares over many plans, and every plan accepted by the pure rules.

use super::paths::{etpv_rules, last_denial_closed_by_today};
use super::person::document_number;
use super::*;
use crate::domain::{person_status, CaseState, ChannelCatalog, Department, DocumentType, Municipality};

#[test]
fn shares_sum_to_one_hundred() {
    let paths: f64 = PATH_SHARES.iter().map(|p| p.1).sum();
    let departments: f64 = DEPARTMENT_SHARES.iter().map(|d| d.1).sum();
    let ages: f64 = AGE_SHARES.iter().map(|a| a.2).sum();
    assert!((paths - 100.0).abs() < 1e-9, "{paths}");
    assert!((departments - 100.0).abs() < 1e-9, "{departments}");
    assert!((ages - 100.0).abs() < 1e-9, "{ages}");
    for (code, _, municipalities) in DEPARTMENT_SHARES {
        let d = Department::new(code).unwrap();
        for m in municipalities {
            assert_eq!(Municipality::new(*m).unwrap().department(), d);
        }
    }
    let guajira = path_weights(LA_GUAJIRA, true);
    let irregular: f64 = PATH_SHARES
        .iter()
        .zip(guajira)
        .filter(|((p, _), _)| p.intended() == PersonStatus::Irregular)
        .map(|(_, w)| w)
        .sum();
    let total: f64 = guajira.iter().sum();
    assert!((irregular / total * 100.0 - 27.0).abs() < 0.5);
}

#[test]
fn plans_are_deterministic_and_documents_unique() {
    let a = plan_person(9, 41);
    let b = plan_person(9, 41);
    assert_eq!(a.identity, b.identity);
    assert_eq!(
        a.commands.iter().map(|c| &c.command).collect::<Vec<_>>(),
        b.commands.iter().map(|c| &c.command).collect::<Vec<_>>()
    );
    let mut seen = std::collections::HashSet::new();
    for i in 0..20_000 {
        for kind in [DocumentType::VenezuelanCedula, DocumentType::BirthCertificate] {
            assert!(seen.insert(document_number(3, i, kind)));
        }
    }
}

/// Intended shares over many plans (no store): the targets of the table above.
#[test]
fn intended_shares_match_the_targets() {
    let n = 60_000u64;
    let mut by_status = std::collections::HashMap::new();
    let (mut guajira, mut guajira_irregular, mut minors) = (0u64, 0u64, 0u64);
    for i in 0..n {
        let plan = plan_person(5, i);
        *by_status.entry(plan.intended).or_insert(0u64) += 1;
        let Command::RegisterPerson {
            department,
            birth_year,
            ..
        } = plan.commands[0].command
        else {
            panic!("plans start with a registration")
        };
        if department.code() == LA_GUAJIRA {
            guajira += 1;
            guajira_irregular += u64::from(plan.intended == PersonStatus::Irregular);
        }
        minors += u64::from(TODAY.year() - birth_year < 18);
    }
    let share = |s: PersonStatus| by_status.get(&s).copied().unwrap_or(0) as f64 * 100.0 / n as f64;
    let guajira_share = guajira_irregular as f64 * 100.0 / guajira as f64;
    let minor_share = minors as f64 * 100.0 / n as f64;
    eprintln!(
        "PPT {:.2} IN_PROCESS {:.2} VISA {:.2} PEP_TUTOR {:.2} IRREGULAR {:.2} guajira irregular {guajira_share:.2} minors {minor_share:.2}",
        share(PersonStatus::RegularPpt),
        share(PersonStatus::InProcess),
        share(PersonStatus::RegularVisa),
        share(PersonStatus::RegularPepTutor),
        share(PersonStatus::Irregular),
    );
    assert!((share(PersonStatus::RegularPpt) - 67.7).abs() < 1.0);
    assert!((share(PersonStatus::InProcess) - 12.6).abs() < 1.0);
    assert!((share(PersonStatus::RegularVisa) - 2.6).abs() < 0.5);
    assert!((share(PersonStatus::Irregular) - 17.1).abs() < 1.0);
    assert_eq!(share(PersonStatus::RegularPepTutor), 0.0);
    assert!((guajira_share - 27.0).abs() < 2.5);
    assert!((minor_share - 28.4).abs() < 1.0);
}

/// A denial that is not appealed must have its window closed on
/// TODAY: 10 business days after Monday 2025-12-15 end on Tuesday
/// 2025-12-30 (Christmas, Thursday 25, does not count); a denial on
/// 2025-12-16 could still be appealed on 2025-12-31.
#[test]
fn unappealed_denials_are_decided_before_the_window_that_ends_today() {
    assert_eq!(last_denial_closed_by_today(), date(2025, 12, 15));
    assert_eq!(etpv_rules().appeal_until(date(2025, 12, 15)), date(2025, 12, 30));
    assert_eq!(etpv_rules().appeal_until(date(2025, 12, 16)), TODAY);
}

/// Every plan is accepted by the pure rules command by command, in date
/// order, and ends in the intended status (no store involved).
#[test]
fn plans_obey_the_rules_and_reach_the_intended_status() {
    let catalog = ChannelCatalog::builtin();
    let mut mismatched = 0;
    for i in 0..30_000 {
        let plan = plan_person(17, i);
        let mut state = CaseState::default();
        for c in &plan.commands {
            let events = state
                .decide(&c.command, TODAY, &catalog)
                .unwrap_or_else(|e| panic!("person {i} {:?} {}: {e}", plan.path, c.command.name()));
            for e in &events {
                state.apply(e);
            }
        }
        if person_status(&state, TODAY) != plan.intended {
            mismatched += 1;
        }
    }
    assert_eq!(mismatched, 0);
}
