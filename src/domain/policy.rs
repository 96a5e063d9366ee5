//! The law in the log: resolutions and decrees as events of the `policy`
//! stream, and the channel rules in force on any date.
//!
//! An instrument (decree, resolution) is recorded once, as one of three
//! [`PolicyEvent`]s: it adopts channel rules, amends the rules an earlier
//! instrument set (a new window, a moved deadline, a longer validity), or
//! repeals an earlier instrument. The [`PolicyBook`] folds the stream and
//! answers [`PolicyBook::catalog_on`]: the [`ChannelCatalog`] in force on a
//! business date, as the book stood at a policy version (the seq of its last
//! policy event). Commands are decided with the catalog in force on their
//! business date, and the events they produce cite the policy version they
//! were decided under, so a replay (or a retry) decides exactly as the
//! original did, whatever was amended since.
//!
//! Rules of the book:
//! - Instrument ids are unique; an amendment or repeal names an instrument
//!   already in the book that is not repealed.
//! - An amendment's channels replace, from its effective date, the rules of
//!   channels of the same code set by the amended instrument (or by an
//!   amendment of it); it may also add channels to that instrument.
//! - A repeal closes the channels the repealed instrument (and its
//!   amendments) set to new applications from its effective date; permits
//!   already issued keep their rules (cancellation, duplicates, extensions).
//! - Among the instruments in force on a date, the one with the latest
//!   effective date (then the latest seq) sets a channel's rules.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::channels::{ChannelCatalog, ChannelRules, InForce};
use super::date::Date;
use super::error::CatalogError;

/// The stream id of the policy stream.
pub const POLICY_STREAM: &str = "policy";
/// Stored event types of the policy stream.
pub const POLICY_EVENT_TYPES: [&str; 3] = ["PolicyAdopted", "PolicyAmended", "PolicyRepealed"];
/// Most instruments the book holds (each a handful of channels).
pub const INSTRUMENTS_MAX: usize = 1024;
/// Longest instrument id, number, issuer; longest title.
pub const INSTRUMENT_FIELD_BYTES_MAX: usize = 64;
/// Longest instrument title.
pub const INSTRUMENT_TITLE_BYTES_MAX: usize = 512;

/// The kind of legal instrument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstrumentKind {
    /// Ley (statute of Congress).
    Ley,
    /// Decreto (of the executive).
    Decreto,
    /// Resolución (of a ministry or Migración Colombia).
    Resolucion,
    /// Circular.
    Circular,
}

impl InstrumentKind {
    /// Stable stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            InstrumentKind::Ley => "LEY",
            InstrumentKind::Decreto => "DECRETO",
            InstrumentKind::Resolucion => "RESOLUCION",
            InstrumentKind::Circular => "CIRCULAR",
        }
    }

    /// Parses a stored code.
    pub fn parse(text: &str) -> Option<InstrumentKind> {
        Some(match text {
            "LEY" => InstrumentKind::Ley,
            "DECRETO" => InstrumentKind::Decreto,
            "RESOLUCION" => InstrumentKind::Resolucion,
            "CIRCULAR" => InstrumentKind::Circular,
            _ => return None,
        })
    }
}

/// A legal instrument as recorded: what it is, who issued it, when it was
/// signed and from when it applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instrument {
    /// Stable id, `A-Z 0-9 -`, e.g. `RES-971-2021`.
    pub id: String,
    /// Decree, resolution ...
    pub kind: InstrumentKind,
    /// Its number as published, e.g. `971`.
    pub number: String,
    /// Issuing body, e.g. `MIGRACION_COLOMBIA` (a code, `A-Z 0-9 _`).
    pub issuer: String,
    /// Day it was signed.
    pub signed_on: Date,
    /// Day its rules apply from (on or after `signed_on`).
    pub effective_on: Date,
    /// Its title or subject, for people (no personal data).
    pub title: String,
}

/// The rules an instrument sets, as data: the channels it defines or
/// changes, and the measures it takes for everyone at once. The JSON of
/// this struct (as written by [`PolicyRules::to_json`]) is what the log
/// stores and what the content hash covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRules {
    /// Channels, each in full.
    #[serde(default)]
    pub channels: Vec<ChannelRules>,
    /// General measures: one recorded instrument whose effect on every case
    /// it reaches is derived by readers, never written case by case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measures: Vec<GeneralMeasure>,
}

/// Longest extension a general measure may grant, in months.
pub const MEASURE_MONTHS_MAX: u16 = 60;
/// Most measures one instrument may take.
pub const MEASURES_MAX: usize = 16;

/// A measure that applies to everyone it names at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "SCREAMING_SNAKE_CASE", deny_unknown_fields)]
pub enum GeneralMeasure {
    /// Every interim certificate (certificado de trámite) of `channel`
    /// still valid on the instrument's effective date is extended by
    /// `months` from the end of its validity.
    ExtendInterimCertificates {
        /// The channel whose certificates are extended.
        channel: super::codes::ChannelCode,
        /// Months added to each certificate's validity.
        months: u16,
    },
}

/// An interim certificate's validity with the general measures applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DerivedValidity {
    /// The end of validity after every measure that reached it.
    pub valid_until: Date,
    /// The instruments whose measures extended it, in the order applied.
    pub extended_by: Vec<String>,
}

impl PolicyRules {
    /// The stored JSON (compact, fields in declaration order).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("rules serialize")
    }

    /// Parses stored or submitted JSON and checks each channel.
    pub fn from_json(bytes: &[u8]) -> Result<PolicyRules, CatalogError> {
        let rules: PolicyRules = serde_json::from_slice(bytes)?;
        ChannelCatalog::in_force(rules.channels.clone())?;
        Ok(rules)
    }

    /// BLAKE3 of [`PolicyRules::to_json`]: the content hash events carry.
    pub fn content_hash(&self) -> [u8; 32] {
        *blake3::hash(&self.to_json()).as_bytes()
    }
}

/// An event of the policy stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyEvent {
    /// An instrument sets the rules of one or more channels.
    Adopted {
        /// The instrument.
        instrument: Instrument,
        /// The higher instrument it rests on (e.g. `DECRETO-216-2021`), free
        /// text of codes; may be empty.
        legal_basis: String,
        /// The rules it sets.
        rules: PolicyRules,
    },
    /// An instrument changes the rules an earlier one set.
    Amended {
        /// The amending instrument.
        instrument: Instrument,
        /// Id of the amended instrument.
        amends: String,
        /// The channels' rules after the amendment, each in full.
        rules: PolicyRules,
    },
    /// An instrument repeals an earlier one.
    Repealed {
        /// The repealing instrument.
        instrument: Instrument,
        /// Id of the repealed instrument.
        repeals: String,
    },
}

impl PolicyEvent {
    /// Stored event type.
    pub fn event_type(&self) -> &'static str {
        match self {
            PolicyEvent::Adopted { .. } => "PolicyAdopted",
            PolicyEvent::Amended { .. } => "PolicyAmended",
            PolicyEvent::Repealed { .. } => "PolicyRepealed",
        }
    }

    /// The instrument the event records.
    pub fn instrument(&self) -> &Instrument {
        match self {
            PolicyEvent::Adopted { instrument, .. }
            | PolicyEvent::Amended { instrument, .. }
            | PolicyEvent::Repealed { instrument, .. } => instrument,
        }
    }

    /// The rules it sets, if any.
    pub fn rules(&self) -> Option<&PolicyRules> {
        match self {
            PolicyEvent::Adopted { rules, .. } | PolicyEvent::Amended { rules, .. } => Some(rules),
            PolicyEvent::Repealed { .. } => None,
        }
    }

    /// The instrument it amends or repeals, if any.
    pub fn target(&self) -> Option<&str> {
        match self {
            PolicyEvent::Adopted { .. } => None,
            PolicyEvent::Amended { amends, .. } => Some(amends),
            PolicyEvent::Repealed { repeals, .. } => Some(repeals),
        }
    }
}

/// Why a policy event cannot be recorded; `field` names the request field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct PolicyError {
    /// The field at fault (`instrument.id`, `rules`, `amends` ...).
    pub field: &'static str,
    /// Why.
    pub reason: String,
}

fn err(field: &'static str, reason: impl Into<String>) -> PolicyError {
    PolicyError {
        field,
        reason: reason.into(),
    }
}

/// One recorded policy event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyEntry {
    /// Its seq in the log: the policy version it creates.
    pub seq: u64,
    /// The event.
    pub event: PolicyEvent,
}

/// The policy stream, folded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyBook {
    entries: Vec<PolicyEntry>,
    /// The catalog in force at the current version, from each effective
    /// date on (ascending): the catalog only changes on those dates.
    eras: Vec<(Date, ChannelCatalog)>,
}

impl PolicyBook {
    /// Folds one recorded event (in log order). Never refuses: the log is
    /// the truth ([`PolicyBook::check`] is what refuses, before appending).
    pub fn apply(&mut self, seq: u64, event: PolicyEvent) {
        self.entries.push(PolicyEntry { seq, event });
        self.recompute_eras();
    }

    /// A book of recorded events (in log order), its eras computed once
    /// (folding them one by one with [`PolicyBook::apply`] would recompute
    /// them after each: quadratic in the number of instruments).
    pub fn from_entries(entries: impl IntoIterator<Item = (u64, PolicyEvent)>) -> PolicyBook {
        let mut book = PolicyBook {
            entries: entries
                .into_iter()
                .map(|(seq, event)| PolicyEntry { seq, event })
                .collect(),
            eras: Vec::new(),
        };
        book.recompute_eras();
        book
    }

    fn recompute_eras(&mut self) {
        let mut dates: Vec<Date> = self
            .entries
            .iter()
            .map(|e| e.event.instrument().effective_on)
            .collect();
        dates.sort_unstable();
        dates.dedup();
        self.eras = dates
            .into_iter()
            .map(|d| (d, self.catalog_on(d, u64::MAX)))
            .collect();
    }

    /// The catalog in force on `on` at the current version (what a new
    /// command is decided with); [`PolicyBook::catalog_on`] without the work.
    pub fn current_on(&self, on: Date) -> &ChannelCatalog {
        static EMPTY: std::sync::OnceLock<ChannelCatalog> = std::sync::OnceLock::new();
        match self.eras.partition_point(|(d, _)| *d <= on) {
            0 => EMPTY.get_or_init(|| ChannelCatalog::trusted(Vec::new())),
            i => &self.eras[i - 1].1,
        }
    }

    /// An interim certificate of `channel` recorded as valid until
    /// `recorded`, with the general measures recorded up to version `as_of`
    /// applied in order of effective date (then seq): each measure reaching
    /// the channel extends a certificate still valid on its effective date.
    /// Deterministic and clock-free: a measure with a future effective date
    /// already says which certificates it will extend.
    pub fn interim_validity(
        &self,
        channel: super::codes::ChannelCode,
        recorded: Date,
        as_of: u64,
    ) -> DerivedValidity {
        let mut out = DerivedValidity {
            valid_until: recorded,
            extended_by: Vec::new(),
        };
        let mut measures: Vec<(Date, u64, &str, u16)> = Vec::new();
        for e in self.entries.iter().filter(|e| e.seq <= as_of) {
            for m in e.event.rules().map(|r| r.measures.as_slice()).unwrap_or(&[]) {
                let GeneralMeasure::ExtendInterimCertificates { channel: c, months } = *m;
                if c == channel {
                    let i = e.event.instrument();
                    measures.push((i.effective_on, e.seq, i.id.as_str(), months));
                }
            }
        }
        measures.sort_unstable();
        for (effective_on, _, id, months) in measures {
            if out.valid_until >= effective_on {
                out.valid_until = out.valid_until.add_months(i64::from(months));
                out.extended_by.push(id.to_string());
            }
        }
        out
    }

    /// Whether any recorded instrument takes a general measure.
    pub fn has_measures(&self) -> bool {
        self.entries
            .iter()
            .any(|e| e.event.rules().is_some_and(|r| !r.measures.is_empty()))
    }

    /// The book as it stood at log position `seq` (events after it dropped).
    pub fn as_of(&self, seq: u64) -> PolicyBook {
        PolicyBook::from_entries(
            self.entries
                .iter()
                .filter(|e| e.seq <= seq)
                .map(|e| (e.seq, e.event.clone())),
        )
    }

    /// The policy version: the seq of the last policy event, 0 if none.
    pub fn version(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.seq)
    }

    /// Every recorded event, in log order.
    pub fn entries(&self) -> &[PolicyEntry] {
        &self.entries
    }

    /// The entry recording instrument `id`, if any.
    pub fn find(&self, id: &str) -> Option<&PolicyEntry> {
        self.entries.iter().find(|e| e.event.instrument().id == id)
    }

    /// The instrument `id` is repealed by, if any (with the repeal's entry).
    pub fn repealed_by(&self, id: &str) -> Option<&PolicyEntry> {
        let root = self.root_of(id, u64::MAX)?;
        self.entries.iter().find(|e| {
            matches!(&e.event, PolicyEvent::Repealed { repeals, .. }
                if self.root_of(repeals, e.seq).as_deref() == Some(root.as_str()))
        })
    }

    /// The adopted instrument an instrument's rules descend from (itself for
    /// an adoption), as the book stood at `as_of`.
    fn root_of(&self, id: &str, as_of: u64) -> Option<String> {
        let mut id = id.to_string();
        for _ in 0..=self.entries.len() {
            let entry = self
                .entries
                .iter()
                .find(|e| e.seq <= as_of && e.event.instrument().id == id)?;
            match &entry.event {
                PolicyEvent::Adopted { .. } => return Some(id),
                PolicyEvent::Amended { amends, .. } => id = amends.clone(),
                PolicyEvent::Repealed { .. } => return None,
            }
        }
        None
    }

    /// Whether `event` may be recorded next: a well-formed instrument with
    /// a new id, a target that exists and is not repealed, rules that are
    /// consistent, and a catalog that stays consistent on every date.
    pub fn check(&self, event: &PolicyEvent) -> Result<(), PolicyError> {
        let i = event.instrument();
        check_code(&i.id, "instrument.id", b'-')?;
        check_code(&i.issuer, "instrument.issuer", b'_')?;
        if i.number.is_empty()
            || i.number.len() > INSTRUMENT_FIELD_BYTES_MAX
            || i.number.chars().any(char::is_control)
        {
            return Err(err(
                "instrument.number",
                format!("1..={INSTRUMENT_FIELD_BYTES_MAX} bytes, no control characters"),
            ));
        }
        if i.title.is_empty()
            || i.title.len() > INSTRUMENT_TITLE_BYTES_MAX
            || i.title.chars().any(char::is_control)
        {
            return Err(err(
                "instrument.title",
                format!("1..={INSTRUMENT_TITLE_BYTES_MAX} bytes, no control characters"),
            ));
        }
        if i.effective_on < i.signed_on {
            return Err(err("instrument.effective_on", "before the instrument was signed"));
        }
        if self.entries.len() >= INSTRUMENTS_MAX {
            return Err(err(
                "instrument",
                format!("the book holds at most {INSTRUMENTS_MAX} instruments"),
            ));
        }
        if self.find(&i.id).is_some() {
            return Err(err("instrument.id", format!("{} is already recorded", i.id)));
        }
        if let PolicyEvent::Adopted { legal_basis, .. } = event {
            if legal_basis.len() > INSTRUMENT_TITLE_BYTES_MAX || legal_basis.chars().any(char::is_control) {
                return Err(err("legal_basis", "too long or with control characters"));
            }
        }
        if let Some(target) = event.target() {
            let field = if matches!(event, PolicyEvent::Amended { .. }) {
                "amends"
            } else {
                "repeals"
            };
            let entry = self
                .find(target)
                .ok_or_else(|| err(field, format!("no instrument {target} is recorded")))?;
            if matches!(entry.event, PolicyEvent::Repealed { .. }) {
                return Err(err(field, format!("{target} is a repeal")));
            }
            if let Some(by) = self.repealed_by(target) {
                return Err(err(
                    field,
                    format!("{target} is repealed by {}", by.event.instrument().id),
                ));
            }
            if i.effective_on < entry.event.instrument().effective_on {
                return Err(err(
                    "instrument.effective_on",
                    format!("before {target} takes effect"),
                ));
            }
        }
        if let Some(rules) = event.rules() {
            if rules.channels.is_empty() && rules.measures.is_empty() {
                return Err(err("rules", "an instrument sets at least one channel or measure"));
            }
            if rules.measures.len() > MEASURES_MAX {
                return Err(err("rules.measures", format!("at most {MEASURES_MAX} measures")));
            }
            for m in &rules.measures {
                let GeneralMeasure::ExtendInterimCertificates { channel, months } = *m;
                if months == 0 || months > MEASURE_MONTHS_MAX {
                    return Err(err("rules.measures.months", format!("1..={MEASURE_MONTHS_MAX}")));
                }
                let in_force = self.catalog_on(i.effective_on, u64::MAX);
                let own = rules.channels.iter().find(|c| c.code == channel);
                match own.or_else(|| in_force.get(channel)) {
                    None => {
                        return Err(err(
                            "rules.measures.channel",
                            format!("{channel} is not in force on {}", i.effective_on),
                        ))
                    }
                    Some(c) if c.interim_days_max.is_none() => {
                        return Err(err(
                            "rules.measures.channel",
                            format!("{channel} issues no interim certificate"),
                        ))
                    }
                    Some(_) => {}
                }
            }
            ChannelCatalog::in_force(rules.channels.clone()).map_err(|e| err("rules", e.to_string()))?;
            // A channel belongs to one lineage: another adopted instrument's
            // channel is amended through that instrument, never re-adopted.
            let root = match event {
                PolicyEvent::Amended { amends, .. } => self.root_of(amends, u64::MAX),
                _ => Some(i.id.clone()),
            };
            let mut owners = HashMap::new();
            for e in &self.entries {
                if let Some(r) = e.event.rules() {
                    let owner = self.root_of(&e.event.instrument().id, u64::MAX);
                    for c in &r.channels {
                        owners.insert(c.code, owner.clone());
                    }
                }
            }
            for c in &rules.channels {
                if let Some(owner) = owners.get(&c.code) {
                    if *owner != root {
                        return Err(err(
                            "rules.channels",
                            format!(
                                "{} is set by {}: amend that instrument",
                                c.code,
                                owner.as_deref().unwrap_or("?")
                            ),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The catalog in force on `on` as the book stood at policy version
    /// `as_of` (events with a later seq are ignored): each channel with the
    /// rules of the latest instrument in force that day, and where they
    /// come from ([`ChannelRules::in_force`]). Channels no instrument set
    /// by that day are absent.
    pub fn catalog_on(&self, on: Date, as_of: u64) -> ChannelCatalog {
        let mut known: Vec<&PolicyEntry> = self.entries.iter().filter(|e| e.seq <= as_of).collect();
        // Channel order: the order channels were first adopted.
        let mut order: Vec<super::codes::ChannelCode> = Vec::new();
        for e in &known {
            for c in e.event.rules().map(|r| r.channels.as_slice()).unwrap_or(&[]) {
                if !order.contains(&c.code) {
                    order.push(c.code);
                }
            }
        }
        known.sort_by_key(|e| (e.event.instrument().effective_on, e.seq));
        let mut current: HashMap<super::codes::ChannelCode, (ChannelRules, Option<String>)> = HashMap::new();
        for e in known {
            let i = e.event.instrument();
            if i.effective_on > on {
                break;
            }
            match &e.event {
                PolicyEvent::Adopted { rules, .. } | PolicyEvent::Amended { rules, .. } => {
                    let root = self.root_of(&i.id, as_of);
                    for c in &rules.channels {
                        let mut c = c.clone();
                        c.in_force = Some(InForce {
                            instrument: i.id.clone(),
                            seq: e.seq,
                            since: i.effective_on,
                            repealed: None,
                        });
                        current.insert(c.code, (c, root.clone()));
                    }
                }
                PolicyEvent::Repealed { repeals, .. } => {
                    let root = self.root_of(repeals, e.seq.saturating_sub(1));
                    for (c, owner) in current.values_mut() {
                        if *owner == root {
                            if let Some(f) = &mut c.in_force {
                                f.repealed = Some((i.effective_on, i.id.clone()));
                            }
                        }
                    }
                }
            }
        }
        let channels = order
            .into_iter()
            .filter_map(|code| current.remove(&code).map(|(c, _)| c))
            .collect();
        ChannelCatalog::trusted(channels)
    }

    /// The genesis of a new store: the instruments behind the shipped
    /// channels, with their numbers and dates (see `policy_genesis.json`).
    pub fn genesis() -> Vec<PolicyEvent> {
        let doc: Vec<GenesisEntry> =
            serde_json::from_str(GENESIS_JSON).expect("the embedded policy_genesis.json is valid");
        doc.into_iter()
            .map(|g| PolicyEvent::Adopted {
                instrument: g.instrument,
                legal_basis: g.legal_basis,
                rules: PolicyRules {
                    channels: g.channels,
                    measures: Vec::new(),
                },
            })
            .collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenesisEntry {
    instrument: Instrument,
    legal_basis: String,
    channels: Vec<ChannelRules>,
}

const GENESIS_JSON: &str = include_str!("policy_genesis.json");

fn check_code(text: &str, field: &'static str, sep: u8) -> Result<(), PolicyError> {
    let ok = !text.is_empty()
        && text.len() <= INSTRUMENT_FIELD_BYTES_MAX
        && text.as_bytes()[0].is_ascii_uppercase()
        && text
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == sep);
    if ok {
        Ok(())
    } else {
        Err(err(
            field,
            format!(
                "1..={INSTRUMENT_FIELD_BYTES_MAX} of A-Z 0-9 {}, starting with a letter",
                sep as char
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::channels::Window;
    use crate::domain::ChannelCode;

    fn d(text: &str) -> Date {
        Date::parse(text).unwrap()
    }

    fn genesis_book() -> PolicyBook {
        let mut book = PolicyBook::default();
        for (i, e) in PolicyBook::genesis().into_iter().enumerate() {
            book.check(&e).unwrap();
            book.apply(i as u64 + 1, e);
        }
        book
    }

    fn instrument(id: &str, on: &str) -> Instrument {
        Instrument {
            id: id.into(),
            kind: InstrumentKind::Resolucion,
            number: "1".into(),
            issuer: "MIGRACION_COLOMBIA".into(),
            signed_on: d(on),
            effective_on: d(on),
            title: "test".into(),
        }
    }

    fn pep_tutor(book: &PolicyBook) -> ChannelRules {
        let mut c = book
            .catalog_on(Date::MAX, u64::MAX)
            .get(ChannelCode::parse("PEP_TUTOR").unwrap())
            .unwrap()
            .clone();
        c.in_force = None;
        c
    }

    #[test]
    fn genesis_holds_the_four_channels_with_their_instruments() {
        let book = genesis_book();
        let on = book.catalog_on(d("2026-01-15"), book.version());
        let codes: Vec<&str> = on.channels().iter().map(|c| c.code.as_str()).collect();
        assert_eq!(codes, ["ETPV", "PEP_TUTOR", "VISA_V", "SC2"]);
        let etpv = on.get(ChannelCode::parse("ETPV").unwrap()).unwrap();
        assert_eq!(etpv.in_force.as_ref().unwrap().instrument, "RES-971-2021");
        // Before Res. 12509/2024 took effect there was no Visa V.
        let before = book.catalog_on(d("2024-12-03"), book.version());
        assert!(before.get(ChannelCode::parse("VISA_V").unwrap()).is_none());
        assert_eq!(book.current_on(d("2024-12-03")), &before);
        assert!(book.current_on(d("2010-01-01")).channels().is_empty());
        // Built at once (a store's load) or event by event: the same book.
        let at_once = PolicyBook::from_entries(
            PolicyBook::genesis()
                .into_iter()
                .enumerate()
                .map(|(i, e)| (i as u64 + 1, e)),
        );
        assert_eq!(at_once, book);
        assert_eq!(
            book.as_of(2),
            PolicyBook::from_entries(book.entries()[..2].iter().map(|e| (e.seq, e.event.clone())))
        );
    }

    #[test]
    fn an_amendment_applies_from_its_date_and_only_at_later_versions() {
        let mut book = genesis_book();
        let v_before = book.version();
        let mut tutor = pep_tutor(&book);
        tutor.windows[0].closes_on = Some(d("2026-10-31"));
        let amend = PolicyEvent::Amended {
            instrument: instrument("RES-9999-2026", "2026-04-15"),
            amends: "RES-2451-2025".into(),
            rules: PolicyRules {
                channels: vec![tutor],
                measures: Vec::new(),
            },
        };
        book.check(&amend).unwrap();
        book.apply(10, amend);
        let code = ChannelCode::parse("PEP_TUTOR").unwrap();
        let after = book.catalog_on(d("2026-06-01"), book.version());
        assert!(after
            .get(code)
            .unwrap()
            .check_window(d("2026-06-01"), false)
            .is_ok());
        assert_eq!(
            after.get(code).unwrap().in_force.as_ref().unwrap().instrument,
            "RES-9999-2026"
        );
        // Before its effective date, or at the earlier version, the old rules.
        let early = book.catalog_on(d("2026-04-14"), book.version());
        assert_eq!(
            early.get(code).unwrap().in_force.as_ref().unwrap().instrument,
            "RES-2451-2025"
        );
        let old = book.catalog_on(d("2026-06-01"), v_before);
        assert!(old
            .get(code)
            .unwrap()
            .check_window(d("2026-06-01"), false)
            .is_err());
        assert_eq!(book.current_on(d("2026-06-01")), &after);
    }

    #[test]
    fn a_repeal_closes_applications_and_keeps_the_rules() {
        let mut book = genesis_book();
        let repeal = PolicyEvent::Repealed {
            instrument: instrument("RES-5000-2026", "2026-02-01"),
            repeals: "RES-12509-2024".into(),
        };
        book.check(&repeal).unwrap();
        book.apply(10, repeal);
        let visa = book
            .catalog_on(d("2026-03-01"), 10)
            .get(ChannelCode::parse("VISA_V").unwrap())
            .unwrap()
            .clone();
        assert_eq!(
            visa.check_window(d("2026-03-01"), false)
                .map_err(|e| e.to_string()),
            Err("VISA_V was repealed by RES-5000-2026 from 2026-02-01".into())
        );
        assert!(visa.check_window(d("2026-01-31"), false).is_ok());
        assert_eq!(book.repealed_by("RES-12509-2024").unwrap().seq, 10);
        // A repealed instrument can be neither amended nor repealed again.
        let again = PolicyEvent::Repealed {
            instrument: instrument("RES-5001-2026", "2026-03-01"),
            repeals: "RES-12509-2024".into(),
        };
        assert_eq!(book.check(&again).unwrap_err().field, "repeals");
    }

    #[test]
    fn inconsistent_instruments_are_refused_naming_the_field() {
        let book = genesis_book();
        let tutor = pep_tutor(&book);
        let adopt = |i: Instrument, channels: Vec<ChannelRules>| PolicyEvent::Adopted {
            instrument: i,
            legal_basis: String::new(),
            rules: PolicyRules {
                channels,
                measures: Vec::new(),
            },
        };
        // The same id twice.
        let e = book.check(&adopt(
            instrument("RES-971-2021", "2026-01-01"),
            vec![tutor.clone()],
        ));
        assert_eq!(e.unwrap_err().field, "instrument.id");
        // A channel another instrument set is amended, not re-adopted.
        let e = book.check(&adopt(
            instrument("RES-1-2026", "2026-01-01"),
            vec![tutor.clone()],
        ));
        assert_eq!(e.unwrap_err().field, "rules.channels");
        // Effective before signed.
        let mut i = instrument("RES-2-2026", "2026-01-01");
        i.effective_on = d("2025-12-31");
        assert_eq!(
            book.check(&adopt(i, vec![tutor.clone()])).unwrap_err().field,
            "instrument.effective_on"
        );
        // A malformed id; an unknown target.
        let e = book.check(&adopt(instrument("res 3", "2026-01-01"), vec![tutor.clone()]));
        assert_eq!(e.unwrap_err().field, "instrument.id");
        let amend = PolicyEvent::Amended {
            instrument: instrument("RES-4-2026", "2026-01-01"),
            amends: "RES-404-2020".into(),
            rules: PolicyRules {
                channels: vec![tutor],
                measures: Vec::new(),
            },
        };
        assert_eq!(book.check(&amend).unwrap_err().field, "amends");
        // A new channel with a new code is a new adoption.
        let mut new = pep_tutor(&book);
        new.code = ChannelCode::parse("REOPEN_2027").unwrap();
        new.windows = vec![Window {
            opens_on: Some(d("2027-01-01")),
            closes_on: Some(d("2027-06-30")),
            minors_close_on: None,
        }];
        book.check(&adopt(instrument("RES-5-2026", "2026-12-01"), vec![new]))
            .unwrap();
    }

    #[test]
    fn one_measure_extends_every_certificate_valid_on_its_date() {
        let mut book = genesis_book();
        let etpv = ChannelCode::parse("ETPV").unwrap();
        let measure = PolicyEvent::Adopted {
            instrument: instrument("RES-7000-2026", "2026-03-01"),
            legal_basis: "RES-971-2021".into(),
            rules: PolicyRules {
                channels: Vec::new(),
                measures: vec![GeneralMeasure::ExtendInterimCertificates {
                    channel: etpv,
                    months: 6,
                }],
            },
        };
        book.check(&measure).unwrap();
        book.apply(10, measure);
        // Valid on the effective date: extended, naming the instrument.
        let v = book.interim_validity(etpv, d("2026-03-01"), 10);
        assert_eq!(v.valid_until, d("2026-09-01"));
        assert_eq!(v.extended_by, ["RES-7000-2026"]);
        // Expired before it, or at a version before the measure: unchanged.
        assert_eq!(
            book.interim_validity(etpv, d("2026-02-28"), 10).valid_until,
            d("2026-02-28")
        );
        assert_eq!(
            book.interim_validity(etpv, d("2026-03-01"), 9).valid_until,
            d("2026-03-01")
        );
        // Another channel is not reached.
        let sc2 = ChannelCode::parse("SC2").unwrap();
        assert!(book
            .interim_validity(sc2, d("2026-05-01"), 10)
            .extended_by
            .is_empty());
        // A measure on a channel without interim certificates, or of 0 months, is refused.
        let bad = |channel, months| PolicyEvent::Adopted {
            instrument: instrument("RES-7001-2026", "2026-03-01"),
            legal_basis: String::new(),
            rules: PolicyRules {
                channels: Vec::new(),
                measures: vec![GeneralMeasure::ExtendInterimCertificates { channel, months }],
            },
        };
        assert_eq!(
            book.check(&bad(sc2, 6)).unwrap_err().field,
            "rules.measures.channel"
        );
        assert_eq!(
            book.check(&bad(etpv, 0)).unwrap_err().field,
            "rules.measures.months"
        );
    }

    #[test]
    fn rules_round_trip_through_their_stored_json_with_a_stable_hash() {
        for e in PolicyBook::genesis() {
            let rules = e.rules().unwrap();
            let back = PolicyRules::from_json(&rules.to_json()).unwrap();
            assert_eq!(&back, rules);
            assert_eq!(back.content_hash(), rules.content_hash());
        }
    }
}
