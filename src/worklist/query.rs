//! One page of one list: a range scan per department over the list's date
//! window, merged by (date, case key, certification), with the filters the
//! key does not order (municipality, office, stage, site) checked per entry.
//!
//! A page examines at most [`WORKLIST_SCAN_ENTRIES_MAX`] entries; the
//! position after the last entry examined (its [`Suffix`]) is where the next
//! page starts, so every item is answered exactly once across pages even
//! when a page comes back short.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::engine::Worklists;
use super::facts::Kind;
use super::index::{
    date_floor, decode_item, index_key, list_prefix, Item, Suffix, INDEX_KEY_LEN, SUFFIX_LEN,
};
use crate::domain::{Date, Stage};
use crate::limits::{WORKLIST_HORIZON_DAYS_DEFAULT, WORKLIST_SCAN_ENTRIES_MAX};
use crate::projection::{Position, ProjectionError};

/// A list query, validated.
#[derive(Clone, Debug)]
pub struct Query {
    /// The list.
    pub kind: Kind,
    /// Departments to scan (DIVIPOLA codes), in any order.
    pub departments: Vec<u8>,
    /// Only this DIVIPOLA municipality.
    pub municipality: Option<u32>,
    /// Only this office.
    pub office: Option<String>,
    /// Only this stage.
    pub stage: Option<Stage>,
    /// Only this appointment site.
    pub site: Option<String>,
    /// The window on the list date, inclusive.
    pub from: Option<Date>,
    /// The window's last list date (inclusive).
    pub to: Option<Date>,
    /// Start strictly after this position (from a page token).
    pub after: Option<Suffix>,
    /// Items per page at most.
    pub page_size: usize,
}

impl Query {
    /// The whole list `kind` in `departments`: its own window on
    /// `reference` with the default horizon, no other filter, from the start.
    pub fn whole_list(kind: Kind, departments: Vec<u8>, reference: Date, page_size: usize) -> Query {
        let (from, to) = own_window(kind, reference, WORKLIST_HORIZON_DAYS_DEFAULT);
        Query {
            kind,
            departments,
            municipality: None,
            office: None,
            stage: None,
            site: None,
            from,
            to,
            after: None,
            page_size,
        }
    }
}

/// One page and where the next one starts.
#[derive(Clone, Debug)]
pub struct Page {
    /// The items, in list order.
    pub items: Vec<Item>,
    /// `None` when the list is exhausted.
    pub next: Option<Suffix>,
    /// Entries examined.
    pub examined: usize,
    /// The log position the worklists reflect.
    pub position: Position,
}

impl Query {
    fn matches(&self, item: &Item) -> bool {
        self.municipality.is_none_or(|m| item.municipality == m)
            && self.office.as_deref().is_none_or(|o| item.office == o)
            && self.stage.is_none_or(|s| item.stage == s)
            && self.site.as_deref().is_none_or(|s| item.site == s)
    }

    /// The key range of one department: from the window's start (or just
    /// after `after`) to the day after the window's end.
    fn range(&self, department: u8) -> (Vec<u8>, Vec<u8>) {
        let mut lo = index_key(
            self.kind,
            department,
            &self.from.map_or([0; SUFFIX_LEN], date_floor),
        )
        .to_vec();
        if let Some(after) = &self.after {
            let mut resume = index_key(self.kind, department, after).to_vec();
            resume.push(0); // the smallest key greater than `after`
            lo = lo.max(resume);
        }
        let hi = match self.to {
            Some(to) if to < Date::MAX => {
                index_key(self.kind, department, &date_floor(to.add_days(1))).to_vec()
            }
            _ => {
                let mut p = list_prefix(self.kind, department).to_vec();
                p.push(0xff); // past every date of the department
                p
            }
        };
        (lo, hi)
    }
}

/// The head entry of each department's range, smallest position first.
type Heap = BinaryHeap<Reverse<(Suffix, usize, sled::IVec, sled::IVec)>>;

/// Moves range `i` to its next entry, if any, onto the heap.
fn advance(i: usize, iters: &mut [sled::Iter], heap: &mut Heap) -> Result<(), ProjectionError> {
    if let Some(kv) = iters[i].next() {
        let (k, v) = kv?;
        let s: Suffix = k
            .get(3..INDEX_KEY_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| ProjectionError::Corrupt("worklist key".into()))?;
        heap.push(Reverse((s, i, k, v)));
    }
    Ok(())
}

/// Answers one page of `q` from `worklists`.
pub fn page(worklists: &Worklists, q: &Query) -> Result<Page, ProjectionError> {
    worklists.read(|tree, position| {
        let mut iters: Vec<sled::Iter> = Vec::with_capacity(q.departments.len());
        let mut heap: Heap = BinaryHeap::new();
        for &d in &q.departments {
            let (lo, hi) = q.range(d);
            if lo < hi {
                iters.push(tree.range(lo..hi));
                advance(iters.len() - 1, &mut iters, &mut heap)?;
            }
        }
        let mut items = Vec::with_capacity(q.page_size.min(1024));
        let mut examined = 0;
        let mut next = None;
        while let Some(Reverse((s, i, k, v))) = heap.pop() {
            examined += 1;
            let item = decode_item(&k, &v).ok_or_else(|| ProjectionError::Corrupt("worklist item".into()))?;
            if q.matches(&item) {
                items.push(item);
            }
            advance(i, &mut iters, &mut heap)?;
            let full = items.len() >= q.page_size || examined >= WORKLIST_SCAN_ENTRIES_MAX;
            if full {
                if !heap.is_empty() {
                    next = Some(s);
                }
                break;
            }
        }
        Ok(Page {
            items,
            next,
            examined,
            position,
        })
    })
}

/// Entries of one list in one department.
pub type ListCount = (Kind, u8, u64);

/// How many entries each list holds per department, each list within its
/// own window ([`own_window`]) on `reference` with `horizon_days`:
/// `(list, department, count)` for every non-empty pair, in list then
/// department order, and the position counted. One scan of the index keys
/// (no entry is decoded beyond its key).
pub fn counts(
    worklists: &Worklists,
    reference: Date,
    horizon_days: u32,
) -> Result<(Vec<ListCount>, Position), ProjectionError> {
    worklists.read(|tree, position| {
        let mut out = Vec::new();
        for kind in Kind::ALL {
            let (from, to) = own_window(kind, reference, horizon_days);
            let mut per_department = std::collections::BTreeMap::<u8, u64>::new();
            for k in tree.scan_prefix([b'i', kind as u8]).keys() {
                let k = k?;
                let date = k
                    .get(3..7)
                    .and_then(crate::projection::facts::date_from)
                    .ok_or_else(|| ProjectionError::Corrupt("worklist key".into()))?;
                if from.is_none_or(|f| date >= f) && to.is_none_or(|t| date <= t) {
                    *per_department.entry(k[2]).or_insert(0) += 1;
                }
            }
            out.extend(per_department.into_iter().map(|(d, n)| (kind, d, n)));
        }
        Ok((out, position))
    })
}

/// The list's own window (WorklistKind in the proto) on `reference`.
pub fn own_window(kind: Kind, reference: Date, horizon_days: u32) -> (Option<Date>, Option<Date>) {
    let ahead = reference.add_days(i64::from(horizon_days));
    match kind {
        Kind::DecisionOverdue => (None, Some(reference.add_days(-1))),
        Kind::AppealableDenials => (Some(reference), None),
        Kind::CardsNearAbandonment => (None, Some(ahead)),
        Kind::InterimExpiring | Kind::PermitsExpiring => (Some(reference), Some(ahead)),
        _ => (None, None),
    }
}
