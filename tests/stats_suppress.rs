//! Published-mode disclosure control: primary suppression under the
//! thresholds (stricter for minors and municipalities), secondary
//! suppression so that no hidden cell can be derived from row, column or
//! table totals (checked by an attacker that repeatedly solves every line
//! with a single unknown), and a random-table property test.

use std::collections::HashMap;

use proptest::prelude::*;
use registry::projection::suppress::{suppress, SuppressionRules};

/// The attacker: knows every line total (sum over all cells sharing all
/// coordinates but one) and, if published, the grand total; repeatedly
/// solves lines with exactly one unknown cell. Returns the suppressed
/// cells it recovered.
fn recoverable(coords: &[Vec<u32>], counts: &[u64], hidden: &[bool], total_published: bool) -> Vec<usize> {
    let n = counts.len();
    let dims = coords.first().map_or(0, |c| c.len());
    let mut lines: Vec<Vec<usize>> = Vec::new();
    if total_published {
        lines.push((0..n).collect());
    }
    for d in 0..dims {
        let mut g: HashMap<Vec<u32>, Vec<usize>> = HashMap::new();
        for (i, c) in coords.iter().enumerate() {
            let mut k = c.clone();
            k.remove(d);
            g.entry(k).or_default().push(i);
        }
        // Line totals of multi-dimensional tables are what other published
        // tables (lower-dimensional breakdowns) reveal.
        // A one-cell line's total is the cell itself: publishing it is the
        // lower-dimensional table's business (where the same rules apply).
        if dims > 1 || !total_published {
            lines.extend(g.into_values().filter(|l| l.len() > 1));
        }
    }
    let mut known: Vec<bool> = hidden.iter().map(|h| !h).collect();
    let mut found = Vec::new();
    loop {
        let mut progress = false;
        for line in &lines {
            let unknown: Vec<usize> = line.iter().copied().filter(|&i| !known[i]).collect();
            if unknown.len() == 1 {
                known[unknown[0]] = true;
                found.push(unknown[0]);
                progress = true;
            }
        }
        if !progress {
            return found;
        }
    }
}

fn table_2d(rows: &[&[u64]]) -> (Vec<Vec<u32>>, Vec<u64>) {
    let mut coords = Vec::new();
    let mut counts = Vec::new();
    for (r, row) in rows.iter().enumerate() {
        for (c, n) in row.iter().enumerate() {
            if *n > 0 {
                coords.push(vec![r as u32, c as u32]);
                counts.push(*n);
            }
        }
    }
    (coords, counts)
}

#[test]
fn primary_suppression_uses_the_stricter_threshold_for_sensitive_cells() {
    let rules = SuppressionRules::default();
    let coords: Vec<Vec<u32>> = (0..6).map(|i| vec![i]).collect();
    let counts = [4, 5, 9, 10, 100, 200];
    let plain = suppress(&coords, &counts, &[false; 6], &rules, false);
    // 4 is under 5; 5 is hidden as its complement (the table is one line).
    assert_eq!(plain.hidden, vec![true, true, false, false, false, false]);
    let sensitive = suppress(&coords, &counts, &[true; 6], &rules, false);
    assert_eq!(sensitive.hidden[..4], [true, true, true, false]);
    let custom = SuppressionRules {
        min_cell: 11,
        min_cell_sensitive: 20,
    };
    let s = suppress(&coords, &counts, &[false; 6], &custom, false);
    assert_eq!(s.hidden[..4], [true, true, true, true]);
}

#[test]
fn one_dimensional_table_with_total_hides_a_complement() {
    let rules = SuppressionRules::default();
    let coords: Vec<Vec<u32>> = (0..4).map(|i| vec![i]).collect();
    let counts = [3, 50, 20, 70];
    let s = suppress(&coords, &counts, &[false; 4], &rules, true);
    assert_eq!(
        s.hidden,
        vec![true, false, true, false],
        "the next smallest (20) is hidden too"
    );
    assert!(!s.hide_total);
    assert!(recoverable(&coords, &counts, &s.hidden, true).is_empty());
    // A single cell under the threshold: nothing to complement it with, so
    // the total is withdrawn.
    let s = suppress(&[vec![0]], &[3], &[false], &rules, true);
    assert!(s.hidden[0] && s.hide_total);
}

#[test]
fn two_dimensional_table_protects_rows_and_columns() {
    let rules = SuppressionRules::default();
    let (coords, counts) = table_2d(&[
        &[2, 40, 55, 61],
        &[30, 41, 3, 70],
        &[25, 26, 27, 28],
        &[80, 1, 90, 95],
    ]);
    let s = suppress(&coords, &counts, &vec![false; counts.len()], &rules, true);
    let hidden_values: Vec<u64> = counts
        .iter()
        .zip(&s.hidden)
        .filter(|(_, h)| **h)
        .map(|(n, _)| *n)
        .collect();
    assert!(hidden_values.contains(&2) && hidden_values.contains(&3) && hidden_values.contains(&1));
    assert!(
        hidden_values.len() > 3,
        "secondary suppression added cells: {hidden_values:?}"
    );
    assert!(
        recoverable(&coords, &counts, &s.hidden, true).is_empty(),
        "a hidden cell is derivable: {:?}",
        s.hidden
    );
}

#[test]
fn without_secondary_suppression_the_attacker_would_succeed() {
    // Sanity check of the attacker itself.
    let (coords, counts) = table_2d(&[&[2, 40], &[30, 41]]);
    let primary_only = vec![true, false, false, false];
    assert_eq!(recoverable(&coords, &counts, &primary_only, true), vec![0]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn no_hidden_cell_is_derivable_in_random_tables(
        rows in 1usize..7,
        cols in 1usize..7,
        cells in prop::collection::vec(prop_oneof![1u64..12, 0u64..1, 12u64..300], 36),
        sens in prop::collection::vec(any::<bool>(), 36),
    ) {
        let rules = SuppressionRules::default();
        let mut coords = Vec::new();
        let mut counts = Vec::new();
        let mut sensitive = Vec::new();
        for r in 0..rows {
            for c in 0..cols {
                let n = cells[r * 6 + c];
                if n > 0 {
                    coords.push(vec![r as u32, c as u32]);
                    counts.push(n);
                    sensitive.push(sens[r * 6 + c]);
                }
            }
        }
        let s = suppress(&coords, &counts, &sensitive, &rules, true);
        for i in 0..counts.len() {
            if counts[i] < rules.threshold(sensitive[i]) {
                prop_assert!(s.hidden[i], "primary cell {} published", i);
            }
        }
        let total_published = !s.hide_total;
        let found = recoverable(&coords, &counts, &s.hidden, total_published);
        // A 2-D line whose single hidden cell has no complement in the line
        // cannot be protected inside this table; it must not happen when
        // the line has other cells.
        for i in found {
            let line_has_other = coords.iter().enumerate().any(|(j, c)| j != i && (c[0] == coords[i][0] || c[1] == coords[i][1]));
            prop_assert!(!line_has_other, "cell {} ({:?}) derivable; hidden {:?} counts {:?}", i, coords[i], s.hidden, counts);
        }
    }
}

/// A projection holding `cells[(month, department, sex)]` registrations.
fn registrations(cells: &[((u8, u8, usize), u64)]) -> registry::projection::ProjectionState {
    use registry::domain::{CountryCode, Date, Department, Event, Municipality, Sealed, Sex};
    let mut s = registry::projection::ProjectionState::new(Date::new(2025, 12, 31).unwrap());
    let mut case = 0u64;
    for &((month, dep, sex), n) in cells {
        let muni = [5001, 8001, 11001, 54001][dep as usize];
        for _ in 0..n {
            case += 1;
            s.apply_event(
                registry::projection::case_key(&format!("case-{case}")),
                &Event::PersonRegistered {
                    on: Date::new(2024, month, 10).unwrap(),
                    identity: Sealed(vec![1]),
                    sex: [Sex::Female, Sex::Male][sex],
                    birth_year: 1990,
                    birth_month: 1,
                    nationality: CountryCode::VEN,
                    department: Department::new((muni / 1000) as u8).unwrap(),
                    municipality: Municipality::new(muni).unwrap(),
                    documents: vec![],
                },
            );
        }
    }
    s
}

/// The series broken down by department and sex, published, is a 3-D table
/// (month x department x sex) whose margins are published elsewhere: the
/// monthly totals (the series itself), the series by department and the
/// series by sex. An attacker who knows every line total of the 3-D table
/// (so every such margin, whether published or not) recovers no hidden
/// cell; and the hidden cells are real counts: published and hidden cells
/// add up to the monthly totals.
#[test]
fn a_series_broken_down_by_two_dimensions_gives_no_hidden_cell_away_through_its_margins() {
    use registry::projection::{series_by, Metric};
    let rules = SuppressionRules::default();
    let mut tried_hidden = 0;
    for seed in 0..40u64 {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            x >> 33
        };
        let mut cells = Vec::new();
        for month in 1..=6u8 {
            for dep in 0..4u8 {
                for sex in 0..2usize {
                    let n = match next() % 4 {
                        0 => next() % 5,
                        _ => 5 + next() % 30,
                    };
                    cells.push(((month, dep, sex), n));
                }
            }
        }
        let state = registrations(&cells);
        let totals = series_by(&state, Metric::Registrations, &[], None, None, false, &rules);
        let p = series_by(
            &state,
            Metric::Registrations,
            &["department", "sex"],
            None,
            None,
            true,
            &rules,
        );
        let truth = series_by(
            &state,
            Metric::Registrations,
            &["department", "sex"],
            None,
            None,
            false,
            &rules,
        );
        assert_eq!(p.points.len(), truth.points.len());
        let mut coords = Vec::new();
        let mut counts = Vec::new();
        let mut hidden = Vec::new();
        let mut by_month: HashMap<String, u64> = HashMap::new();
        for (pt, t) in p.points.iter().zip(&truth.points) {
            assert_eq!(pt.label, t.label);
            let parts: Vec<&str> = pt.label.split('/').collect();
            assert_eq!(parts.len(), 3, "{}", pt.label);
            let n = t.count.unwrap();
            if let Some(c) = pt.count {
                assert_eq!(c, n);
                assert!(c >= rules.min_cell, "published {} < {}", c, rules.min_cell);
            }
            *by_month.entry(parts[0].to_string()).or_insert(0) += n;
            coords.push(vec![
                parts[0][5..].parse::<u32>().unwrap(),
                parts[1].parse::<u32>().unwrap(),
                (parts[2] == "M") as u32,
            ]);
            counts.push(n);
            hidden.push(pt.count.is_none());
        }
        for m in &totals.points {
            assert_eq!(by_month[&m.label], m.count.unwrap(), "month {}", m.label);
        }
        tried_hidden += hidden.iter().filter(|h| **h).count();
        let found = recoverable(&coords, &counts, &hidden, true);
        assert!(
            found.is_empty(),
            "seed {seed}: hidden cells recovered from the margins: {:?}",
            found.iter().map(|&i| &p.points[i].label).collect::<Vec<_>>()
        );
    }
    assert!(
        tried_hidden > 100,
        "the tables had cells to protect ({tried_hidden})"
    );
}
