//! The in-memory projection: facts per case, and the aggregates kept up to
//! date as events are applied (the caseload cube at the reference date,
//! monthly series, funnel, permits expiring, certifications).
//!
//! Applying an event removes the case's old contribution from every
//! aggregate and adds its new one, so each aggregate always equals a
//! recount from the facts (checked by `ProjectionState::recount` in tests).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use super::facts::{funnel, CaseFacts};
use crate::domain::{
    CertificationRoute, CertificationStage, ChannelCode, Date, Event, PermitType, PersonStatus, Sector,
};
use crate::log::follow::{check_next, Break};
use crate::log::Hash;

/// A case's key in the projection: the first 16 bytes of BLAKE3(stream id).
pub type CaseKey = u128;

/// The key of a stream.
pub fn case_key(stream_id: &str) -> CaseKey {
    let h = blake3::hash(stream_id.as_bytes());
    u128::from_be_bytes(h.as_bytes()[..16].try_into().expect("16"))
}

/// Keys are already uniform hashes: use their low bits.
#[derive(Default)]
pub struct KeyHasher(u64);
impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 ^= n as u64;
    }
    fn write_u64(&mut self, n: u64) {
        self.0 ^= n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn write_u32(&mut self, n: u32) {
        self.0 ^= u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}
/// A hash map keyed by case keys (already uniform hashes), with [`KeyHasher`].
pub type KeyMap<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

/// A position of the log: the last event applied and its chain hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// The seq of the last event applied (0: none).
    pub seq: u64,
    /// The chain hash of that event (the genesis hash when none).
    pub hash: Hash,
}

impl Position {
    /// Before the first event: seq 0 and the genesis hash.
    pub const EMPTY: Position = Position {
        seq: 0,
        hash: crate::log::record::GENESIS_PREV_HASH,
    };
    /// The hash in hex.
    pub fn hash_hex(&self) -> String {
        crate::hex::encode(&self.hash)
    }
}

impl From<Position> for crate::log::Head {
    fn from(p: Position) -> crate::log::Head {
        crate::log::Head {
            seq: p.seq,
            hash: p.hash,
        }
    }
}

/// Monthly series kept as counters by month of the event's business date.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// Persons registered (`PersonRegistered`).
    Registrations,
    /// Applications pre-registered (`PreRegistered`).
    PreRegistrations,
    /// Biometric captures (`BiometricsCaptured`).
    BiometricCaptures,
    /// Approvals, and appeals upheld.
    DecisionsApproved,
    /// First-instance denials.
    DecisionsDenied,
    /// Permits issued (`PermitIssued`).
    PermitsIssued,
    /// Cards delivered (`CardDelivered`).
    CardsDelivered,
    /// Permits cancelled (`PermitCancelled`).
    Cancellations,
    /// Persons erased (`PersonErased`).
    Erasures,
}

impl Metric {
    /// Every metric, in codebook order.
    pub const ALL: [Metric; 9] = [
        Metric::Registrations,
        Metric::PreRegistrations,
        Metric::BiometricCaptures,
        Metric::DecisionsApproved,
        Metric::DecisionsDenied,
        Metric::PermitsIssued,
        Metric::CardsDelivered,
        Metric::Cancellations,
        Metric::Erasures,
    ];

    /// The metric's code (`REGISTRATIONS`, ...), as in `--metric` and the codebook.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Registrations => "REGISTRATIONS",
            Metric::PreRegistrations => "PRE_REGISTRATIONS",
            Metric::BiometricCaptures => "BIOMETRIC_CAPTURES",
            Metric::DecisionsApproved => "DECISIONS_APPROVED",
            Metric::DecisionsDenied => "DECISIONS_DENIED",
            Metric::PermitsIssued => "PERMITS_ISSUED",
            Metric::CardsDelivered => "CARDS_DELIVERED",
            Metric::Cancellations => "CANCELLATIONS",
            Metric::Erasures => "ERASURES",
        }
    }
    /// The metric whose code is `s` (case-insensitive); `None` if none.
    pub fn parse(s: &str) -> Option<Metric> {
        Metric::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s))
    }
    /// The metric an event counts in, if any. Approved decisions include
    /// appeals upheld; denied decisions are first-instance denials (an appeal
    /// rejected confirms a denial already counted).
    pub fn of(event: &Event) -> Option<Metric> {
        Some(match event {
            Event::PersonRegistered { .. } => Metric::Registrations,
            Event::PreRegistered { .. } => Metric::PreRegistrations,
            Event::BiometricsCaptured { .. } => Metric::BiometricCaptures,
            Event::Approved { .. } | Event::AppealDecided { upheld: true, .. } => Metric::DecisionsApproved,
            Event::Denied { .. } => Metric::DecisionsDenied,
            Event::PermitIssued { .. } => Metric::PermitsIssued,
            Event::CardDelivered { .. } => Metric::CardsDelivered,
            Event::PermitCancelled { .. } => Metric::Cancellations,
            Event::PersonErased { .. } => Metric::Erasures,
            _ => return None,
        })
    }
}

/// One cell of the monthly series broken down: an event counted in `metric`
/// in `month`, by the case's department, sex, age band (on the event's
/// business date), channel (of its current application) and derived status
/// on that date, all as they are right after the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesCell {
    /// What the cell counts.
    pub metric: Metric,
    /// The month of the event's business date ([`month_index`]).
    pub month: u32,
    /// DIVIPOLA department (0: none).
    pub department: u8,
    /// Sex recorded at registration.
    pub sex: crate::domain::Sex,
    /// Age band on the event's business date.
    pub age_band: crate::domain::AgeBand,
    /// Derived status on the event's business date.
    pub status: PersonStatus,
    /// `None`: no current application.
    pub channel: Option<ChannelCode>,
}

impl SeriesCell {
    /// The cell an event of `metric` on `on` counts in, from the case's facts
    /// after the event.
    pub fn of(metric: Metric, on: Date, f: &CaseFacts) -> SeriesCell {
        SeriesCell {
            metric,
            month: month_index(on),
            department: (f.municipality_code / 1000) as u8,
            sex: f.sex,
            age_band: f.age_band_on(on),
            status: f.status_on(on),
            channel: f.channel(),
        }
    }

    /// Stored form without metric and month (those are in the key):
    /// department, sex, age band, status, channel length, channel bytes.
    pub(crate) fn encode_tail(&self, out: &mut Vec<u8>) {
        out.extend([
            self.department,
            self.sex as u8,
            self.age_band as u8,
            self.status as u8,
        ]);
        let ch = self
            .channel
            .map_or_else(Vec::new, |c| c.as_str().as_bytes().to_vec());
        out.push(ch.len() as u8);
        out.extend(ch);
    }

    /// Decodes one [`SeriesCell::encode_tail`] at the start of `b`; returns
    /// the cell and the bytes read.
    pub(crate) fn decode_tail(metric: Metric, month: u32, b: &[u8]) -> Option<(SeriesCell, usize)> {
        let len = *b.get(4)? as usize;
        let channel = if len == 0 {
            None
        } else {
            Some(ChannelCode::parse(std::str::from_utf8(b.get(5..5 + len)?).ok()?)?)
        };
        Some((
            SeriesCell {
                metric,
                month,
                department: b[0],
                sex: *crate::domain::Sex::ALL.get(b[1] as usize)?,
                age_band: *crate::domain::AgeBand::ALL.get(b[2] as usize)?,
                status: *PersonStatus::ALL.get(b[3] as usize)?,
                channel,
            },
            5 + len,
        ))
    }
}

/// Month index: year * 12 + (month - 1).
pub fn month_index(d: Date) -> u32 {
    u32::from(d.year()) * 12 + u32::from(d.month()) - 1
}

/// The last day of a month index.
pub fn month_end(m: u32) -> Date {
    let first = Date::new((m / 12) as u16, (m % 12 + 1) as u8, 1).unwrap_or(Date::MAX);
    first.add_months(1).add_days(-1)
}

/// Whether `d` is the last day of its month.
pub fn is_month_end(d: Date) -> bool {
    month_end(month_index(d)) == d
}

/// `YYYY-MM` of a month index.
pub fn month_label(m: u32) -> String {
    format!("{:04}-{:02}", m / 12, m % 12 + 1)
}

/// A certification as statistics see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertFacts {
    /// The certification's route.
    pub route: CertificationRoute,
    /// The sector certified.
    pub sector: Sector,
    /// Where the certification stands.
    pub stage: CertificationStage,
}

/// A cube cell: one combination of the caseload dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cell {
    /// Derived status on the cube's reference date.
    pub status: PersonStatus,
    /// DIVIPOLA municipality code (0: unknown).
    pub municipality: u32,
    /// Sex recorded at registration.
    pub sex: crate::domain::Sex,
    /// Age band on the cube's reference date.
    pub age_band: crate::domain::AgeBand,
    /// Index in the channel table (0: no application).
    pub channel: u8,
    /// 0: never a permit; else `PermitType as u8 + 1`.
    pub permit_type: u8,
    /// 0: none; else 1 + the three letters, 5 bits each ([`nationality_value`]).
    pub nationality: u16,
    /// 0: did not depart; [`DESTINATION_UNKNOWN`]: departed, destination not
    /// recorded; else the destination as [`nationality_value`].
    pub exit_destination: u16,
    /// An active family link names a guardian of the person.
    pub guardian: bool,
}

/// The cube value of a departure without a recorded destination.
pub const DESTINATION_UNKNOWN: u16 = 0xffff;

/// The cube value of a case's exit destination.
pub fn destination_value(f: &CaseFacts) -> u16 {
    match (f.exit, f.exit_destination()) {
        (Some(crate::domain::ExitKind::Departed), Some(c)) => nationality_value(Some(c)),
        (Some(crate::domain::ExitKind::Departed), None) => DESTINATION_UNKNOWN,
        _ => 0,
    }
}

pub use super::facts::{country_of as nationality_of, country_value as nationality_value};

impl Cell {
    pub(crate) fn pack(self) -> u128 {
        u128::from(self.exit_destination) << 64 | u128::from(self.pack_low())
    }
    fn pack_low(self) -> u64 {
        u64::from(self.guardian) << 60
            | u64::from(self.nationality) << 44
            | (self.status as u64) << 40
            | u64::from(self.municipality) << 20
            | (self.sex as u64) << 16
            | (self.age_band as u64) << 12
            | u64::from(self.channel) << 4
            | u64::from(self.permit_type)
    }
    pub(crate) fn unpack(k: u128) -> Cell {
        let exit_destination = (k >> 64) as u16;
        let k = k as u64;
        Cell {
            exit_destination,
            status: PersonStatus::ALL[(k >> 40) as usize & 0xf],
            municipality: ((k >> 20) & 0xf_ffff) as u32,
            sex: crate::domain::Sex::ALL[(k >> 16) as usize & 0xf],
            age_band: crate::domain::AgeBand::ALL[(k >> 12) as usize & 0xf],
            channel: ((k >> 4) & 0xff) as u8,
            permit_type: (k & 0xf) as u8,
            nationality: ((k >> 44) & 0xffff) as u16,
            guardian: (k >> 60) & 1 == 1,
        }
    }
}

/// Counts by cell, in a dense vector (fast to scan) with an index.
#[derive(Clone, Debug, Default)]
pub struct Cube {
    index: KeyMap<u128, u32>,
    /// Packed cell keys and their counts (`index` finds a key's slot).
    pub(crate) cells: Vec<(u128, i64)>,
}

impl Cube {
    fn add(&mut self, key: u128, n: i64) {
        let next = self.cells.len() as u32;
        let slot = *self.index.entry(key).or_insert(next);
        if slot == next {
            self.cells.push((key, 0));
        }
        self.cells[slot as usize].1 += n;
    }
    /// Non-zero cells.
    pub fn iter(&self) -> impl Iterator<Item = (Cell, u64)> + '_ {
        self.cells
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|&(k, n)| (Cell::unpack(k), n as u64))
    }
    /// Distinct cells ever used.
    pub fn len(&self) -> usize {
        self.cells.len()
    }
    /// Whether no cell was ever used.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }
}

/// What one case adds to the aggregates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Contribution {
    cell: Option<u128>,
    funnel: u8,
    expiring: Option<u32>,
}

/// The projection's state in memory.
#[derive(Clone, Debug)]
pub struct ProjectionState {
    /// Per-case facts, by case key.
    pub(crate) cases: KeyMap<CaseKey, CaseFacts>,
    /// Per-certification facts, by case key and certification id.
    pub(crate) certs: KeyMap<(CaseKey, u32), CertFacts>,
    /// Reference date of the cube ("as of today").
    pub(crate) cube_date: Date,
    /// Counts of registered persons by cell on `cube_date`.
    pub(crate) cube: Cube,
    /// Funnel counts in step order (`funnel::STEPS`).
    pub(crate) funnel: [i64; 5],
    /// Permits held, by the month their validity ends.
    pub(crate) expiring: BTreeMap<u32, i64>,
    /// Monthly counts of each metric's events, by (metric, month).
    pub(crate) series: BTreeMap<(Metric, u32), u64>,
    /// The series broken down ([`SeriesCell`]); its sums are `series`.
    pub(crate) series_cells: BTreeMap<SeriesCell, u64>,
    /// (metric, month) whose cells changed since the last persist.
    pub(crate) dirty_series: std::collections::BTreeSet<(Metric, u32)>,
    /// Certifications by route, sector and stage.
    pub(crate) cert_counts: BTreeMap<(CertificationRoute, Sector, CertificationStage), i64>,
    /// Channel codes by cube index (index 0 is "no application").
    pub(crate) channels: Vec<Option<ChannelCode>>,
    channel_index: HashMap<Option<ChannelCode>, u8>,
    /// Last event applied.
    pub(crate) position: Position,
    /// Latest business date seen in any event.
    pub(crate) max_on: Option<Date>,
    /// Events applied since this state was created or loaded.
    pub(crate) events_applied: u64,
    /// Cases whose facts changed since the last persist (when `track_dirty`).
    pub(crate) dirty: HashSet<CaseKey, BuildHasherDefault<KeyHasher>>,
    /// Certifications whose facts changed since the last persist (when `track_dirty`).
    pub(crate) dirty_certs: HashSet<(CaseKey, u32), BuildHasherDefault<KeyHasher>>,
    /// Whether changes are tracked for persisting (a followed projection).
    pub(crate) track_dirty: bool,
    /// Month-end snapshots (only when `snapshots_on`): month index -> the
    /// cube as of that month's last day D (each case folded over its events
    /// dated <= D, statuses and ages on D), for every month from the
    /// earliest business date applied to the month before the latest one
    /// (`max_on`). Later month-ends are answered from the facts.
    pub(crate) snapshots: BTreeMap<u32, Cube>,
    /// Whether month-end snapshots are kept (persisted projections).
    pub(crate) snapshots_on: bool,
    /// Months whose snapshot changed since the last persist.
    pub(crate) dirty_snapshots: BTreeSet<u32>,
    /// Cases changed since the snapshots were last brought up to date
    /// ([`ProjectionState::flush_snapshots`]): the facts the snapshots count
    /// them with, and each event's date with the facts after it. Deferring
    /// costs one pass over a case's months per flush instead of one per
    /// event (a log written case by case has several events of a case in
    /// one page).
    pending: KeyMap<CaseKey, PendingCase>,
}

/// A case's changes not yet counted in the month-end snapshots.
#[derive(Clone, Debug)]
struct PendingCase {
    counted: Option<CaseFacts>,
    steps: Vec<(Date, CaseFacts)>,
}

/// Why an event could not be applied: the projection stops (never skips).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApplyError {
    /// The next event has another seq than the position's + 1.
    #[error("gap in the log: expected seq {expected}, found seq {found}")]
    Gap {
        /// The position's seq + 1.
        expected: u64,
        /// The seq the event has.
        found: u64,
    },
    /// The event's prev_hash is not the hash of the position's event.
    #[error("chain broken at seq {seq}: its prev_hash is not the hash of seq {prev}")]
    Chain {
        /// The event's seq.
        seq: u64,
        /// The position's seq.
        prev: u64,
    },
    /// The event's payload does not decode as its event type.
    #[error("event at seq {seq} cannot be decoded: {reason}")]
    Decode {
        /// The event's seq.
        seq: u64,
        /// The codec's error.
        reason: String,
    },
}

impl From<Break> for ApplyError {
    fn from(b: Break) -> ApplyError {
        match b {
            Break::Gap { expected, found } => ApplyError::Gap { expected, found },
            Break::Link { seq, prev } => ApplyError::Chain { seq, prev },
        }
    }
}

impl ProjectionState {
    /// An empty projection whose cube counts statuses on `cube_date`.
    pub fn new(cube_date: Date) -> ProjectionState {
        ProjectionState {
            cases: KeyMap::default(),
            certs: KeyMap::default(),
            cube_date,
            cube: Cube::default(),
            funnel: [0; 5],
            expiring: BTreeMap::new(),
            series: BTreeMap::new(),
            series_cells: BTreeMap::new(),
            dirty_series: Default::default(),
            cert_counts: BTreeMap::new(),
            channels: vec![None],
            channel_index: HashMap::from([(None, 0)]),
            position: Position::EMPTY,
            max_on: None,
            events_applied: 0,
            dirty: HashSet::default(),
            dirty_certs: HashSet::default(),
            track_dirty: false,
            snapshots: BTreeMap::new(),
            snapshots_on: false,
            dirty_snapshots: BTreeSet::new(),
            pending: KeyMap::default(),
        }
    }

    /// A state that also keeps month-end snapshots (persisted projections).
    pub fn with_snapshots(cube_date: Date) -> ProjectionState {
        ProjectionState {
            snapshots_on: true,
            ..ProjectionState::new(cube_date)
        }
    }

    /// The log position this state reflects.
    pub fn position(&self) -> Position {
        self.position
    }
    /// The cube's reference date.
    pub fn cube_date(&self) -> Date {
        self.cube_date
    }
    /// Latest business date seen.
    pub fn max_on(&self) -> Option<Date> {
        self.max_on
    }
    /// Cases known.
    pub fn cases(&self) -> usize {
        self.cases.len()
    }
    /// Facts of one case.
    pub fn facts(&self, key: CaseKey) -> Option<&CaseFacts> {
        self.cases.get(&key)
    }
    /// The cube.
    pub fn cube(&self) -> &Cube {
        &self.cube
    }
    /// Channel code of a cube index.
    pub fn channel_code(&self, index: u8) -> Option<ChannelCode> {
        self.channels.get(index as usize).copied().flatten()
    }
    pub(crate) fn channel_lookup(&self, code: &str) -> Option<u8> {
        if code == "NONE" {
            return Some(0);
        }
        self.channels
            .iter()
            .position(|c| c.is_some_and(|c| c.as_str() == code))
            .map(|i| i as u8)
    }

    fn intern(&mut self, c: Option<ChannelCode>) -> u8 {
        if let Some(&i) = self.channel_index.get(&c) {
            return i;
        }
        let i = u8::try_from(self.channels.len()).unwrap_or(u8::MAX);
        if i < u8::MAX {
            self.channels.push(c);
            self.channel_index.insert(c, i);
        }
        i
    }

    /// The cube cell of a case on `on` (registered cases only).
    pub(crate) fn cell_of(&mut self, f: &CaseFacts, on: Date) -> Option<u128> {
        if !f.registered {
            return None;
        }
        let channel = self.intern(f.channel());
        Some(cell_key(f, on, channel))
    }

    /// Like `cell_of`, for a case whose channel is already interned (every
    /// case in `cases` is: its contribution was computed when applied or
    /// loaded).
    fn cell_interned(&self, f: &CaseFacts, on: Date) -> Option<u128> {
        if !f.registered {
            return None;
        }
        Some(cell_key(f, on, self.interned_channel(f)))
    }

    fn interned_channel(&self, f: &CaseFacts) -> u8 {
        self.channel_index.get(&f.channel()).copied().unwrap_or(u8::MAX)
    }

    /// Before an event dated `on` is folded: makes sure a snapshot exists
    /// for every month-end from the earliest business date to the month
    /// before `on`'s, if `on` is later. A month-end D before `on` and on or
    /// after every date applied so far is the facts' cube on D (a scan of
    /// the facts); a month-end before every date applied is empty.
    fn extend_snapshots(&mut self, on: Date) {
        let Some(max_on) = self.max_on else { return };
        let (m_on, m_max) = (month_index(on), month_index(max_on));
        let first = self.snapshots.keys().next().copied().unwrap_or(m_max);
        if m_on < first.min(m_max) || m_on > m_max {
            // New snapshots count every case as it is now: bring the
            // existing ones up to date first.
            self.flush_snapshots();
        }
        for m in m_on..first.min(m_max) {
            self.snapshots.insert(m, Cube::default());
            self.dirty_snapshots.insert(m);
        }
        for m in m_max..m_on {
            let d = month_end(m);
            let mut cube = Cube::default();
            for f in self.cases.values() {
                if let Some(cell) = self.cell_interned(f, d) {
                    cube.add(cell, 1);
                }
            }
            self.snapshots.insert(m, cube);
            self.dirty_snapshots.insert(m);
        }
    }

    /// Notes a case's event dated `on` for the snapshots (counted at the
    /// next [`ProjectionState::flush_snapshots`]).
    fn defer_snapshots(&mut self, key: CaseKey, old: Option<&CaseFacts>, new: &CaseFacts, on: Date) {
        if self.snapshots.is_empty() {
            return;
        }
        self.pending
            .entry(key)
            .or_insert_with(|| PendingCase {
                counted: old.copied(),
                steps: Vec::new(),
            })
            .steps
            .push((on, *new));
    }

    /// Brings the month-end snapshots up to date with the events applied
    /// since the last flush. For a changed case, every snapshot of a
    /// month-end D on or after its first new event's date counted it as it
    /// was before (its earlier events are dated <= that date: `decide`
    /// refuses a date before a case's latest) and now counts it as of D:
    /// the facts after its last new event dated <= D.
    pub fn flush_snapshots(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        let months: Vec<(u32, Date)> = self.snapshots.keys().map(|&m| (m, month_end(m))).collect();
        let mut dirty = vec![false; months.len()];
        let channel = |s: &ProjectionState, f: &CaseFacts| f.registered.then(|| s.interned_channel(f));
        let mut steps: Vec<(Date, CaseFacts, Option<u8>)> = Vec::new();
        for (_, case) in pending {
            let Some(&(first, _)) = case.steps.first() else {
                continue;
            };
            let counted = case.counted.as_ref().and_then(|f| Some((f, channel(self, f)?)));
            steps.clear();
            steps.extend(case.steps.iter().map(|(on, f)| (*on, *f, channel(self, f))));
            let from = months.partition_point(|(m, _)| *m < month_index(first));
            let mut step = 0;
            for (i, &(m, d)) in months.iter().enumerate().skip(from) {
                while step + 1 < steps.len() && steps[step + 1].0 <= d {
                    step += 1;
                }
                let before = counted.map(|(f, ch)| cell_key(f, d, ch));
                let (_, f, ch) = &steps[step];
                let after = ch.map(|ch| cell_key(f, d, ch));
                if before == after {
                    continue;
                }
                let cube = self.snapshots.get_mut(&m).expect("listed");
                if let Some(b) = before {
                    cube.add(b, -1);
                }
                if let Some(a) = after {
                    cube.add(a, 1);
                }
                dirty[i] = true;
            }
        }
        for (i, (m, _)) in months.iter().enumerate() {
            if dirty[i] {
                self.dirty_snapshots.insert(*m);
            }
        }
    }

    /// The caseload as of month-end `d` from its snapshot: a state holding
    /// only that cube (like [`ProjectionState::cube_only_at`]), or `None`
    /// when no snapshot answers (snapshots off, `d` not a month-end, or on
    /// or after the latest business date: the facts answer those).
    pub fn month_end_state(&self, d: Date) -> Option<ProjectionState> {
        let max_on = self.max_on?;
        if !self.snapshots_on || !self.pending.is_empty() || !is_month_end(d) || d >= max_on {
            return None;
        }
        let m = month_index(d);
        let first = self
            .snapshots
            .keys()
            .next()
            .copied()
            .unwrap_or(month_index(max_on));
        let cube = match self.snapshots.get(&m) {
            Some(c) => c.clone(),
            // Before the earliest business date: nobody was registered yet.
            None if m < first => Cube::default(),
            None => return None,
        };
        let mut s = ProjectionState::new(d);
        s.channels = self.channels.clone();
        s.channel_index = self.channel_index.clone();
        s.position = self.position;
        s.max_on = self.max_on;
        s.cube = cube;
        Some(s)
    }

    /// The months with a snapshot.
    pub fn snapshot_months(&self) -> impl Iterator<Item = u32> + '_ {
        self.snapshots.keys().copied()
    }

    /// A snapshot's non-zero cells as (cell with its channel code, count),
    /// for persisting: channel indexes are this state's own.
    pub(crate) fn snapshot_cells(&self, m: u32) -> Vec<(u128, Option<ChannelCode>, u64)> {
        let Some(cube) = self.snapshots.get(&m) else {
            return Vec::new();
        };
        // Cells in (cell, channel code) order, whatever this state's
        // channel indexes: the rank of each index in code order.
        let mut by_code: Vec<usize> = (0..self.channels.len()).collect();
        by_code.sort_by(|a, b| {
            let code = |i: usize| self.channels[i].map(|c| c.as_str().to_string());
            code(*a).cmp(&code(*b))
        });
        let mut rank = vec![0usize; self.channels.len().max(256)];
        for (r, i) in by_code.into_iter().enumerate() {
            rank[i] = r;
        }
        let mut out: Vec<(u128, usize, Option<ChannelCode>, u64)> = cube
            .cells
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|&(k, n)| {
                let channel = Cell::unpack(k).channel;
                (
                    k & !(0xff << 4),
                    rank[channel as usize],
                    self.channel_code(channel),
                    n as u64,
                )
            })
            .collect();
        out.sort_unstable_by_key(|(k, r, _, _)| (*k, *r));
        out.into_iter().map(|(k, _, c, n)| (k, c, n)).collect()
    }

    /// Loads a persisted snapshot: cells without their channel index, with
    /// the channel code.
    pub(crate) fn load_snapshot(&mut self, m: u32, cells: Vec<(u128, Option<ChannelCode>, u64)>) {
        let mut cube = Cube::default();
        for (k, channel, n) in cells {
            let i = self.intern(channel);
            cube.add(k | u128::from(i) << 4, n as i64);
        }
        self.snapshots.insert(m, cube);
    }

    fn contribution(&mut self, f: &CaseFacts) -> Contribution {
        let on = self.cube_date;
        Contribution {
            cell: self.cell_of(f, on),
            funnel: if f.registered { f.funnel_bits() } else { 0 },
            expiring: f.held_permit_until().map(month_index),
        }
    }

    fn add(&mut self, c: Contribution, sign: i64) {
        if let Some(cell) = c.cell {
            self.cube.add(cell, sign);
        }
        for (i, (_, bit)) in funnel::STEPS.iter().enumerate() {
            if c.funnel & bit != 0 {
                self.funnel[i] += sign;
            }
        }
        if let Some(m) = c.expiring {
            let e = self.expiring.entry(m).or_insert(0);
            *e += sign;
            if *e == 0 {
                self.expiring.remove(&m);
            }
        }
    }

    /// Applies one stored event, proving continuity: its seq must follow the
    /// position and its prev_hash must be the position's hash.
    pub fn apply_stored(&mut self, ev: &crate::log::StoredEvent) -> Result<(), ApplyError> {
        self.apply_stored_if(ev, |_| true)
    }

    /// Like [`ProjectionState::apply_stored`], but folds the event only if
    /// `keep` accepts it (the position advances either way): point-in-time
    /// replays by business date.
    pub fn apply_stored_if(
        &mut self,
        ev: &crate::log::StoredEvent,
        keep: impl Fn(&Event) -> bool,
    ) -> Result<(), ApplyError> {
        let r = &ev.record;
        check_next(self.position.into(), r.seq, &r.prev_hash)?;
        if r.event_type == crate::cases::ACCESS_EVENT_TYPE || crate::codec::is_policy_event(&r.event_type) {
            // Reads of personal data are audit records, and policy events
            // set the rules, not a case: statistics skip them.
            self.position = Position {
                seq: r.seq,
                hash: ev.hash,
            };
            return Ok(());
        }
        let event = crate::codec::decode(&r.event_type, &r.payload).map_err(|e| ApplyError::Decode {
            seq: r.seq,
            reason: e.to_string(),
        })?;
        if keep(&event) {
            self.apply_event(case_key(&r.stream_id), &event);
        }
        self.position = Position {
            seq: r.seq,
            hash: ev.hash,
        };
        Ok(())
    }

    /// Folds one domain event of case `key` into facts and aggregates.
    pub fn apply_event(&mut self, key: CaseKey, event: &Event) {
        let on = event.on();
        if self.snapshots_on {
            self.extend_snapshots(on);
        }
        let old = self.cases.get(&key).copied();
        let before = old.as_ref().map(|f| self.contribution(f));
        let mut facts = old.unwrap_or_default();
        facts.apply(event);
        let after = self.contribution(&facts);
        if before != Some(after) {
            if let Some(b) = before {
                self.add(b, -1);
            }
            self.add(after, 1);
        }
        if self.snapshots_on {
            self.defer_snapshots(key, old.as_ref(), &facts, on);
        }
        self.cases.insert(key, facts);
        if self.track_dirty {
            self.dirty.insert(key);
        }
        self.max_on = Some(self.max_on.map_or(on, |m| m.max(on)));
        if let Some(metric) = Metric::of(event) {
            *self.series.entry((metric, month_index(on))).or_insert(0) += 1;
            *self
                .series_cells
                .entry(SeriesCell::of(metric, on, &facts))
                .or_insert(0) += 1;
            if self.track_dirty {
                self.dirty_series.insert((metric, month_index(on)));
            }
        }
        self.apply_certification(key, event);
        self.events_applied += 1;
    }

    fn apply_certification(&mut self, key: CaseKey, event: &Event) {
        let (id, new) = match *event {
            Event::CertificationRequested {
                certification_id,
                route,
                sector,
                ..
            } => (
                certification_id,
                Some(CertFacts {
                    route,
                    sector,
                    stage: CertificationStage::Requested,
                }),
            ),
            Event::CertificationAssessed {
                certification_id,
                passed,
                ..
            } => (
                certification_id,
                self.certs.get(&(key, certification_id)).map(|c| CertFacts {
                    stage: if passed {
                        CertificationStage::AssessedPassed
                    } else {
                        CertificationStage::AssessedFailed
                    },
                    ..*c
                }),
            ),
            Event::CertificationAwarded { certification_id, .. } => (
                certification_id,
                self.certs.get(&(key, certification_id)).map(|c| CertFacts {
                    stage: CertificationStage::Awarded,
                    ..*c
                }),
            ),
            Event::CertificationDenied { certification_id, .. } => (
                certification_id,
                self.certs.get(&(key, certification_id)).map(|c| CertFacts {
                    stage: CertificationStage::Denied,
                    ..*c
                }),
            ),
            _ => return,
        };
        let Some(new) = new else { return };
        // `CaseState` appends a requested certification even if its id was
        // seen; statistics count by id (ids are unique through `decide`).
        if let Some(old) = self.certs.insert((key, id), new) {
            self.count_cert(old, -1);
        }
        self.count_cert(new, 1);
        if self.track_dirty {
            self.dirty_certs.insert((key, id));
        }
    }

    fn count_cert(&mut self, c: CertFacts, sign: i64) {
        let k = (c.route, c.sector, c.stage);
        let e = self.cert_counts.entry(k).or_insert(0);
        *e += sign;
        if *e == 0 {
            self.cert_counts.remove(&k);
        }
    }

    /// Moves the cube to another reference date (a scan of the facts).
    /// A state that holds only what a caseload breakdown reads: the cube at
    /// `on` (from every case's facts), the channel codes and the position.
    /// Unlike a clone moved to `on`, it does not copy every case's facts
    /// (hundreds of MB at full scale) for one dated query.
    pub fn cube_only_at(&self, on: Date) -> ProjectionState {
        let mut s = ProjectionState::new(on);
        s.channels = self.channels.clone();
        s.channel_index = self.channel_index.clone();
        s.position = self.position;
        s.max_on = self.max_on;
        for f in self.cases.values() {
            if let Some(cell) = s.cell_of(f, on) {
                s.cube.add(cell, 1);
            }
        }
        s
    }

    /// Moves the cube's reference date to `on` and recomputes the aggregates from the facts.
    pub fn set_cube_date(&mut self, on: Date) {
        self.cube_date = on;
        self.rebuild_aggregates();
    }

    /// Recomputes cube, funnel, expiring and certification counts from facts.
    pub(crate) fn rebuild_aggregates(&mut self) {
        self.cube = Cube::default();
        self.funnel = [0; 5];
        self.expiring.clear();
        let facts: Vec<CaseFacts> = self.cases.values().copied().collect();
        for f in &facts {
            let c = self.contribution(f);
            self.add(c, 1);
        }
        self.cert_counts.clear();
        let certs: Vec<CertFacts> = self.certs.values().copied().collect();
        for c in certs {
            self.count_cert(c, 1);
        }
    }

    /// Inserts loaded facts without touching aggregates (call
    /// `rebuild_aggregates` after loading).
    pub(crate) fn load_case(&mut self, key: CaseKey, f: CaseFacts) {
        self.cases.insert(key, f);
    }

    /// Funnel counts in step order.
    pub fn funnel(&self) -> [(&'static str, u64); 5] {
        let mut out = [("", 0); 5];
        for (i, (name, _)) in funnel::STEPS.iter().enumerate() {
            out[i] = (name, self.funnel[i].max(0) as u64);
        }
        out
    }

    /// Permits held, by month of their end of validity (month index, count).
    pub fn expiring(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.expiring.iter().map(|(m, n)| (*m, *n as u64))
    }

    /// Monthly counts of a metric (month index, count), zero months omitted.
    pub fn series(&self, metric: Metric) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.series
            .range((metric, 0)..=(metric, u32::MAX))
            .map(|((_, m), n)| (*m, *n))
    }

    /// Certification counts by (route, sector, stage).
    pub fn certifications(
        &self,
    ) -> impl Iterator<Item = (CertificationRoute, Sector, CertificationStage, u64)> + '_ {
        self.cert_counts
            .iter()
            .map(|((r, s, st), n)| (*r, *s, *st, *n as u64))
    }

    /// A canonical, comparable summary of everything the state answers
    /// (tests compare incremental and rebuilt states with it).
    pub fn summary(&self) -> StateSummary {
        let mut cube = BTreeMap::new();
        for (cell, n) in self.cube.iter() {
            let ch = self.channel_code(cell.channel).map(|c| c.as_str().to_string());
            *cube
                .entry((
                    cell.status,
                    cell.municipality,
                    cell.sex,
                    cell.age_band,
                    ch,
                    cell.permit_type,
                    cell.guardian,
                ))
                .or_insert(0) += n;
        }
        let mut facts: Vec<(CaseKey, CaseFacts)> = self.cases.iter().map(|(k, f)| (*k, *f)).collect();
        facts.sort_by_key(|(k, _)| *k);
        let mut certs: Vec<((CaseKey, u32), CertFacts)> = self.certs.iter().map(|(k, c)| (*k, *c)).collect();
        certs.sort_by_key(|(k, _)| *k);
        StateSummary {
            position: self.position,
            cube_date: self.cube_date,
            facts,
            certs,
            cube,
            funnel: self.funnel,
            expiring: self.expiring.clone(),
            series: self.series.clone(),
            series_cells: self.series_cells.clone(),
            cert_counts: self.cert_counts.clone(),
        }
    }

    /// Approximate heap bytes held (hash tables at their capacity).
    pub fn memory_bytes(&self) -> usize {
        let slot = |k: usize, v: usize| k + v + 1;
        self.cases.capacity() * slot(16, std::mem::size_of::<CaseFacts>())
            + self.certs.capacity() * slot(20, std::mem::size_of::<CertFacts>())
            + self.cube.index.capacity() * slot(16, 4)
            + self.cube.cells.capacity() * 32
            + self.series.len() * 48
            + self.series_cells.len() * SERIES_CELL_BYTES
            + self
                .snapshots
                .values()
                .map(|c| c.index.capacity() * slot(16, 4) + c.cells.capacity() * 32)
                .sum::<usize>()
    }

    /// The series cells of `metric` (in key order).
    pub fn series_cells(&self, metric: Metric) -> impl Iterator<Item = (&SeriesCell, u64)> + '_ {
        self.series_cells
            .iter()
            .filter(move |(c, _)| c.metric == metric)
            .map(|(c, n)| (c, *n))
    }
}

/// Everything a state answers, in canonical order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateSummary {
    /// The log position the state reflects.
    pub position: Position,
    /// The cube's reference date.
    pub cube_date: Date,
    /// Every case's facts, by case key.
    pub facts: Vec<(CaseKey, CaseFacts)>,
    /// Every certification's facts, by case key and id.
    pub certs: Vec<((CaseKey, u32), CertFacts)>,
    /// The cube's non-zero cells, with the channel as its code (not its index).
    #[allow(clippy::type_complexity)]
    pub cube: BTreeMap<
        (
            PersonStatus,
            u32,
            crate::domain::Sex,
            crate::domain::AgeBand,
            Option<String>,
            u8,
            bool,
        ),
        u64,
    >,
    /// Funnel counts in step order.
    pub funnel: [i64; 5],
    /// Permits held, by the month their validity ends.
    pub expiring: BTreeMap<u32, i64>,
    /// Monthly counts by (metric, month).
    pub series: BTreeMap<(Metric, u32), u64>,
    /// The series broken down.
    pub series_cells: BTreeMap<SeriesCell, u64>,
    /// Certifications by route, sector and stage.
    pub cert_counts: BTreeMap<(CertificationRoute, Sector, CertificationStage), i64>,
}

/// The packed cube cell of registered facts on `on`, with a channel index.
fn cell_key(f: &CaseFacts, on: Date, channel: u8) -> u128 {
    Cell {
        status: f.status_on(on),
        municipality: f.municipality_code,
        sex: f.sex,
        age_band: f.age_band_on(on),
        channel,
        permit_type: f.permit_type.map_or(0, |t| t as u8 + 1),
        nationality: f.nationality_code,
        exit_destination: destination_value(f),
        guardian: f.has_guardian(),
    }
    .pack()
}

/// Approximate bytes of one series cell in memory: key (28) and count (8) in a
/// B-tree node, with its share of the node (about a third more).
pub const SERIES_CELL_BYTES: usize = 48;

/// Permit type of a cube code (0: none).
pub fn permit_type_of(code: u8) -> Option<PermitType> {
    code.checked_sub(1)
        .and_then(|i| PermitType::ALL.get(i as usize).copied())
}
