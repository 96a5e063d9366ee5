//! The sled layout of the worklists (tree [`TREE`]), and the index entries'
//! encoding.
//!
//! - `i` || kind (u8) || department (u8) || list date (year u16 BE, month,
//!   day) || case key (16 bytes) || certification id (u32 BE; 0 except on the
//!   certification list) -> [`Item`] value: every list of one department is
//!   ordered by its date, so a list with a department and a date window is
//!   one range scan; without a department, one range per department merged
//!   by (date, case key, certification).
//! - `f` || case key (16 bytes) -> [`WorkFacts::encode`](super::facts::WorkFacts::encode)
//! - `m:checkpoint` -> seq (u64 BE) || hash of that event (32 bytes)
//! - `m:version` -> format version (u8)
//!
//! The case key is the statistics projection's (first 16 bytes of
//! BLAKE3(case id)), so entries of one date spread evenly.

use super::facts::{Entry, Kind, Reader, WorkFacts, Writer};
use crate::domain::{ChannelCode, Date, Stage};
use crate::projection::state::CaseKey;

/// The worklists' tree.
pub const TREE: &str = "worklists";
/// Format of the tree; another value is refused with the rebuild command.
pub const FORMAT_VERSION: u8 = 1;
/// Key of the position the stored lists reflect: seq (u64 BE) || hash (32 bytes).
pub const KEY_CHECKPOINT: &[u8] = b"m:checkpoint";
/// Key of the tree's format version (one byte, [`FORMAT_VERSION`]).
pub const KEY_VERSION: &[u8] = b"m:version";

/// Length of an index key: `i`, kind, department, then the [`Suffix`].
pub const INDEX_KEY_LEN: usize = 3 + SUFFIX_LEN;
/// Length of the part of an index key that orders a list across departments.
pub const SUFFIX_LEN: usize = 4 + 16 + 4;
/// Date, case key and certification of an index key: a position in a list.
pub type Suffix = [u8; SUFFIX_LEN];

/// The key of a case's facts.
pub fn facts_key(key: CaseKey) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = b'f';
    k[1..].copy_from_slice(&key.to_be_bytes());
    k
}

/// The first three bytes of every key of one list in one department.
pub fn list_prefix(kind: Kind, department: u8) -> [u8; 3] {
    [b'i', kind as u8, department]
}

/// An index key.
pub fn index_key(kind: Kind, department: u8, suffix: &Suffix) -> [u8; INDEX_KEY_LEN] {
    let mut k = [0u8; INDEX_KEY_LEN];
    k[..3].copy_from_slice(&list_prefix(kind, department));
    k[3..].copy_from_slice(suffix);
    k
}

/// The ordering part of an index key.
pub fn suffix(date: Date, key: CaseKey, certification: u32) -> Suffix {
    let mut s = [0u8; SUFFIX_LEN];
    s[..4].copy_from_slice(&crate::projection::facts::date_bytes(date));
    s[4..20].copy_from_slice(&key.to_be_bytes());
    s[20..].copy_from_slice(&certification.to_be_bytes());
    s
}

/// The smallest suffix of a date (a range bound).
pub fn date_floor(date: Date) -> Suffix {
    suffix(date, 0, 0)
}

/// One item of a list, as stored (key and value decoded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// The list.
    pub kind: Kind,
    /// DIVIPOLA department of residence.
    pub department: u8,
    /// The list date (orders the list).
    pub date: Date,
    /// The certification or subject request (0 on the other lists).
    pub certification: u32,
    /// The case id.
    pub case_id: String,
    /// The application stage.
    pub stage: Stage,
    /// The item's due date, where the list has one.
    pub due_on: Option<Date>,
    /// The date the item's state began (review start, issue...), where the list has one.
    pub since: Option<Date>,
    /// DIVIPOLA municipality of residence.
    pub municipality: u32,
    /// Office of the actor of the latest case event.
    pub office: String,
    /// The appointment site, on the lists that show it (else empty).
    pub site: String,
    /// Channel of the current application.
    pub channel: Option<ChannelCode>,
}

/// The key and value of `entry` of a case whose facts are `f`.
pub fn encode_entry(key: CaseKey, f: &WorkFacts, entry: &Entry) -> ([u8; INDEX_KEY_LEN], Vec<u8>) {
    let k = index_key(
        entry.kind,
        f.department,
        &suffix(entry.date, key, entry.certification),
    );
    let mut w = Writer(Vec::with_capacity(32 + f.case_id.len() + f.office.len()));
    w.str(&f.case_id);
    w.u8(f.stage as u8);
    w.date(entry.due_on);
    w.date(entry.since);
    w.u32(f.municipality);
    w.str(&f.office);
    w.str(if entry.with_site { &f.site } else { "" });
    w.str(f.channel.as_ref().map_or("", |c| c.as_str()));
    (k, w.0)
}

/// Decodes an index entry; `None` if it is not one.
pub fn decode_item(key: &[u8], value: &[u8]) -> Option<Item> {
    if key.len() != INDEX_KEY_LEN || key[0] != b'i' {
        return None;
    }
    let mut r = Reader(value);
    let case_id = r.str()?;
    let stage = *Stage::ALL.get(usize::from(r.u8()?))?;
    let due_on = r.date()?;
    let since = r.date()?;
    let municipality = r.u32()?;
    let office = r.str()?;
    let site = r.str()?;
    let channel = match r.str()? {
        c if c.is_empty() => None,
        c => Some(ChannelCode::parse(&c)?),
    };
    if !r.0.is_empty() {
        return None;
    }
    Some(Item {
        kind: Kind::from_u8(key[1])?,
        department: key[2],
        date: crate::projection::facts::date_from(&key[3..7])?,
        certification: u32::from_be_bytes(key[23..27].try_into().ok()?),
        case_id,
        stage,
        due_on,
        since,
        municipality,
        office,
        site,
        channel,
    })
}
