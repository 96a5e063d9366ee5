//! Disclosure control for published tables.
//!
//! 1. Primary suppression: a cell under `min_cell` (under `min_cell_sensitive`
//!    when it involves minors or a municipality) is hidden.
//! 2. Secondary suppression: in every line of the table (the cells that share
//!    all coordinates but one, for each dimension; for a 1-D table, the whole
//!    table, whose total is published), a line with exactly one hidden cell
//!    gets its next-smallest published cell hidden too, so the hidden value
//!    cannot be recovered from the line's total. Repeated until stable.
//!    If a line has a single hidden cell and nothing left to hide, the
//!    published total is withdrawn when that line is the whole 1-D table.
//!
//! Zero cells are not listed (they are not sensitive), so they never serve
//! as complements.

use std::collections::HashMap;

use crate::limits::{STATS_MIN_CELL, STATS_MIN_CELL_SENSITIVE};

/// Thresholds (configurable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SuppressionRules {
    /// Smallest published cell.
    pub min_cell: u64,
    /// Smallest published cell when it involves minors or a municipality.
    pub min_cell_sensitive: u64,
}

impl Default for SuppressionRules {
    fn default() -> Self {
        SuppressionRules {
            min_cell: STATS_MIN_CELL,
            min_cell_sensitive: STATS_MIN_CELL_SENSITIVE,
        }
    }
}

impl SuppressionRules {
    /// The threshold of a cell.
    pub fn threshold(&self, sensitive: bool) -> u64 {
        if sensitive {
            self.min_cell_sensitive
        } else {
            self.min_cell
        }
    }
}

/// Which cells to hide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suppression {
    /// Per cell (in the order given): whether it is hidden.
    pub hidden: Vec<bool>,
    /// The table total must not be published either.
    pub hide_total: bool,
}

/// Decides suppression for cells at `coords` (all of the same length, the
/// table's dimensions) with `counts` (all > 0). `total_published`: the
/// table's grand total is published.
pub fn suppress(
    coords: &[Vec<u32>],
    counts: &[u64],
    sensitive: &[bool],
    rules: &SuppressionRules,
    total_published: bool,
) -> Suppression {
    let n = counts.len();
    let mut hidden: Vec<bool> = (0..n)
        .map(|i| counts[i] > 0 && counts[i] < rules.threshold(sensitive[i]))
        .collect();
    let dims = coords.first().map_or(0, |c| c.len());
    // Lines: for each dimension d, cells grouped by all coordinates but d.
    let mut lines: Vec<Vec<usize>> = Vec::new();
    if dims == 0 {
        lines.push((0..n).collect());
    }
    for d in 0..dims {
        let mut groups: HashMap<Vec<u32>, Vec<usize>> = HashMap::new();
        for (i, c) in coords.iter().enumerate() {
            let mut k = c.clone();
            k.remove(d);
            groups.entry(k).or_default().push(i);
        }
        let mut gs: Vec<Vec<usize>> = groups.into_values().collect();
        gs.sort();
        lines.extend(gs);
    }
    let mut hide_total = false;
    loop {
        let mut changed = false;
        for line in &lines {
            let hidden_in_line = line.iter().filter(|&&i| hidden[i]).count();
            if hidden_in_line != 1 {
                continue;
            }
            let candidate = line
                .iter()
                .copied()
                .filter(|&i| !hidden[i] && counts[i] > 0)
                .min_by_key(|&i| (counts[i], i));
            match candidate {
                Some(i) => {
                    hidden[i] = true;
                    changed = true;
                }
                None => {
                    if total_published && (dims <= 1) {
                        hide_total = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    // A line in several dimensions whose single hidden cell had no
    // complement: its line total is not published by this table, but the
    // grand total is; if exactly one cell is hidden in all, withdraw it.
    if total_published && hidden.iter().filter(|h| **h).count() == 1 {
        hide_total = true;
    }
    Suppression { hidden, hide_total }
}
