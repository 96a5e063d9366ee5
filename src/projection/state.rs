//! The in-memory projection: facts per case, and the aggregates kept up to
//! date as events are applied (the caseload cube at the reference date,
//! monthly series, funnel, permits expiring, certifications).
//!
//! Applying an event removes the case's old contribution from every
//! aggregate and adds its new one, so each aggregate always equals a
//! recount from the facts (checked by `ProjectionState::recount` in tests).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use super::facts::{funnel, CaseFacts};
use crate::domain::{
    CertificationRoute, CertificationStage, ChannelCode, Date, Event, PermitType, PersonStatus, Sector,
};
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
pub type KeyMap<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

/// A position of the log: the last event applied and its chain hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub seq: u64,
    pub hash: Hash,
}

impl Position {
    pub const EMPTY: Position = Position {
        seq: 0,
        hash: crate::log::record::GENESIS_PREV_HASH,
    };
    /// The hash in hex.
    pub fn hash_hex(&self) -> String {
        crate::hex::encode(&self.hash)
    }
}

/// Monthly series kept as counters by month of the event's business date.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    Registrations,
    PreRegistrations,
    BiometricCaptures,
    DecisionsApproved,
    DecisionsDenied,
    PermitsIssued,
    CardsDelivered,
    Cancellations,
    Erasures,
}

impl Metric {
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

/// Month index: year * 12 + (month - 1).
pub fn month_index(d: Date) -> u32 {
    u32::from(d.year()) * 12 + u32::from(d.month()) - 1
}

/// `YYYY-MM` of a month index.
pub fn month_label(m: u32) -> String {
    format!("{:04}-{:02}", m / 12, m % 12 + 1)
}

/// A certification as statistics see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CertFacts {
    pub route: CertificationRoute,
    pub sector: Sector,
    pub stage: CertificationStage,
}

/// A cube cell: one combination of the caseload dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cell {
    pub status: PersonStatus,
    /// DIVIPOLA municipality code (0: unknown).
    pub municipality: u32,
    pub sex: crate::domain::Sex,
    pub age_band: crate::domain::AgeBand,
    /// Index in the channel table (0: no application).
    pub channel: u8,
    /// 0: never a permit; else `PermitType as u8 + 1`.
    pub permit_type: u8,
    /// An active family link names a guardian of the person.
    pub guardian: bool,
}

impl Cell {
    pub(crate) fn pack(self) -> u64 {
        u64::from(self.guardian) << 44
            | (self.status as u64) << 40
            | u64::from(self.municipality) << 20
            | (self.sex as u64) << 16
            | (self.age_band as u64) << 12
            | u64::from(self.channel) << 4
            | u64::from(self.permit_type)
    }
    pub(crate) fn unpack(k: u64) -> Cell {
        Cell {
            status: PersonStatus::ALL[(k >> 40) as usize & 0xf],
            municipality: ((k >> 20) & 0xf_ffff) as u32,
            sex: crate::domain::Sex::ALL[(k >> 16) as usize & 0xf],
            age_band: crate::domain::AgeBand::ALL[(k >> 12) as usize & 0xf],
            channel: ((k >> 4) & 0xff) as u8,
            permit_type: (k & 0xf) as u8,
            guardian: (k >> 44) & 1 == 1,
        }
    }
}

/// Counts by cell, in a dense vector (fast to scan) with an index.
#[derive(Clone, Debug, Default)]
pub struct Cube {
    index: KeyMap<u64, u32>,
    pub(crate) cells: Vec<(u64, i64)>,
}

impl Cube {
    fn add(&mut self, key: u64, n: i64) {
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
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }
}

/// What one case adds to the aggregates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Contribution {
    cell: Option<u64>,
    funnel: u8,
    expiring: Option<u32>,
}

/// The projection's state in memory.
#[derive(Clone, Debug)]
pub struct ProjectionState {
    pub(crate) cases: KeyMap<CaseKey, CaseFacts>,
    pub(crate) certs: KeyMap<(CaseKey, u32), CertFacts>,
    /// Reference date of the cube ("as of today").
    pub(crate) cube_date: Date,
    pub(crate) cube: Cube,
    pub(crate) funnel: [i64; 5],
    pub(crate) expiring: BTreeMap<u32, i64>,
    pub(crate) series: BTreeMap<(Metric, u32), u64>,
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
    pub(crate) dirty: HashSet<CaseKey, BuildHasherDefault<KeyHasher>>,
    pub(crate) dirty_certs: HashSet<(CaseKey, u32), BuildHasherDefault<KeyHasher>>,
    pub(crate) track_dirty: bool,
}

/// Checks that `ev` comes right after `position`: the next seq, linked to
/// the position's hash. Every follower of the log applies only events that
/// pass (statistics, worklists): a gap or a broken link stops it.
pub fn check_next(position: Position, ev: &crate::log::StoredEvent) -> Result<(), ApplyError> {
    let r = &ev.record;
    let expected = position.seq + 1;
    if r.seq != expected {
        return Err(ApplyError::Gap {
            expected,
            found: r.seq,
        });
    }
    if r.prev_hash != position.hash {
        return Err(ApplyError::Chain {
            seq: r.seq,
            prev: position.seq,
        });
    }
    Ok(())
}

/// Why an event could not be applied: the projection stops (never skips).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApplyError {
    #[error("gap in the log: expected seq {expected}, found seq {found}")]
    Gap { expected: u64, found: u64 },
    #[error("chain broken at seq {seq}: its prev_hash is not the hash of seq {prev}")]
    Chain { seq: u64, prev: u64 },
    #[error("event at seq {seq} cannot be decoded: {reason}")]
    Decode { seq: u64, reason: String },
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
            cert_counts: BTreeMap::new(),
            channels: vec![None],
            channel_index: HashMap::from([(None, 0)]),
            position: Position::EMPTY,
            max_on: None,
            events_applied: 0,
            dirty: HashSet::default(),
            dirty_certs: HashSet::default(),
            track_dirty: false,
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
    pub(crate) fn cell_of(&mut self, f: &CaseFacts, on: Date) -> Option<u64> {
        if !f.registered {
            return None;
        }
        let channel = self.intern(f.channel());
        Some(
            Cell {
                status: f.status_on(on),
                municipality: f.municipality_code,
                sex: f.sex,
                age_band: f.age_band_on(on),
                channel,
                permit_type: f.permit_type.map_or(0, |t| t as u8 + 1),
                guardian: f.has_guardian(),
            }
            .pack(),
        )
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
        check_next(self.position, ev)?;
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
        self.cases.insert(key, facts);
        if self.track_dirty {
            self.dirty.insert(key);
        }
        let on = event.on();
        self.max_on = Some(self.max_on.map_or(on, |m| m.max(on)));
        if let Some(metric) = Metric::of(event) {
            *self.series.entry((metric, month_index(on))).or_insert(0) += 1;
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
            cert_counts: self.cert_counts.clone(),
        }
    }

    /// Approximate heap bytes held (hash tables at their capacity).
    pub fn memory_bytes(&self) -> usize {
        let slot = |k: usize, v: usize| k + v + 1;
        self.cases.capacity() * slot(16, std::mem::size_of::<CaseFacts>())
            + self.certs.capacity() * slot(20, std::mem::size_of::<CertFacts>())
            + self.cube.index.capacity() * slot(8, 4)
            + self.cube.cells.capacity() * 16
            + self.series.len() * 48
    }
}

/// Everything a state answers, in canonical order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateSummary {
    pub position: Position,
    pub cube_date: Date,
    pub facts: Vec<(CaseKey, CaseFacts)>,
    pub certs: Vec<((CaseKey, u32), CertFacts)>,
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
    pub funnel: [i64; 5],
    pub expiring: BTreeMap<u32, i64>,
    pub series: BTreeMap<(Metric, u32), u64>,
    pub cert_counts: BTreeMap<(CertificationRoute, Sector, CertificationStage), i64>,
}

/// Permit type of a cube code (0: none).
pub fn permit_type_of(code: u8) -> Option<PermitType> {
    code.checked_sub(1)
        .and_then(|i| PermitType::ALL.get(i as usize).copied())
}
