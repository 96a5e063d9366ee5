//! Document reservations: the look-up index (sled tree `documents`) from an
//! identity document's blind index to the case holding it, so that no two
//! cases hold one document; and its rebuild from the log in a restored store.

use super::{CaseError, Cases, Identity, FIELD_IDENTITY};
use crate::codec;
use crate::domain::{Event, Sealed};
use crate::log::{Side, SideWrite, Store};
use crate::pii::{self, DataKey, KeyStore};

/// Sled tree of the document look-up index: blind index (32 bytes) ->
/// case id || reserved_at_us (i64 BE).
pub const TREE_DOCUMENTS: &str = "documents";

impl Cases {
    /// The case holding a document, if any (erased persons hold none).
    pub fn find_by_document(&self, doc_type: &str, number: &str) -> Result<Option<String>, CaseError> {
        let blind = self.shared.blind.index(doc_type, number)?;
        match self.shared.documents.get(blind)? {
            Some(held) => {
                let case_id = String::from_utf8_lossy(owner(&held)).into_owned();
                Ok((self.shared.store.stream_version(&case_id)? > 0).then_some(case_id))
            }
            None => Ok(None),
        }
    }

    pub(super) fn blind_of(
        &self,
        key: &DataKey,
        case_id: &str,
        sealed: &Sealed,
    ) -> Result<Vec<[u8; 32]>, CaseError> {
        let identity: Identity = pii::open_json(key, case_id, FIELD_IDENTITY, sealed.as_bytes())?;
        identity
            .documents
            .iter()
            .map(|d| Ok(self.shared.blind.index(&d.doc_type, &d.number)?))
            .collect()
    }

    /// The side writes that reserve documents for a case, made with its
    /// events (see [`crate::log::SideWrite`]): a document no case holds, or
    /// held by a stale reservation, is taken; one this case holds stays. A
    /// document another case holds refuses the command. The writer checks
    /// each condition again against the appends staged before this one.
    pub(super) fn reservations(
        &self,
        case_id: &str,
        blind: &[[u8; 32]],
    ) -> Result<Vec<SideWrite>, CaseError> {
        let mut value = case_id.as_bytes().to_vec();
        value.extend_from_slice(&crate::clock::now_us().to_be_bytes());
        let mut writes: Vec<SideWrite> = Vec::with_capacity(blind.len());
        for b in blind {
            if writes.iter().any(|w| w.key == b[..]) {
                continue;
            }
            let expect = match self.shared.documents.get(b)? {
                None => None,
                Some(held) if owner(&held) == case_id.as_bytes() => continue,
                Some(held) if self.is_stale(&held)? => Some(held.to_vec()),
                Some(_) => return Err(CaseError::DocumentTaken),
            };
            writes.push(SideWrite {
                tree: Side::Documents,
                key: b.to_vec(),
                expect,
                value: value.clone(),
            });
        }
        Ok(writes)
    }

    /// A reservation whose case never got an event, older than a minute.
    fn is_stale(&self, held: &sled::IVec) -> Result<bool, CaseError> {
        let owner_id = std::str::from_utf8(owner(held)).unwrap_or("");
        let at = i64::from_be_bytes(held[held.len() - 8..].try_into().unwrap_or([0; 8]));
        Ok(self.shared.store.stream_version(owner_id)? == 0
            && crate::clock::now_us() - at > crate::limits::RESERVATION_STALE_US)
    }

    pub(super) fn release_reservations(&self, case_id: &str, blind: &[[u8; 32]]) {
        for b in blind {
            if let Ok(Some(held)) = self.shared.documents.get(b) {
                if owner(&held) == case_id.as_bytes() {
                    let _ = self.shared.documents.compare_and_swap(b, Some(&held), None);
                }
            }
        }
    }
}

fn owner(held: &[u8]) -> &[u8] {
    &held[..held.len().saturating_sub(8)]
}

/// What [`rebuild_document_index`] did.
#[derive(Debug, Clone, Copy, Default)]
pub struct DocumentIndexReport {
    /// Cases whose key is active (their identity was opened).
    pub cases: u64,
    /// Erased cases (tombstone: nothing to index).
    pub erased: u64,
    /// Index entries written.
    pub documents: u64,
}

/// Rebuilds the document index (tree `documents`) of a store that no server
/// has open, from the log and the person keys. The tree must be empty (a
/// restored store).
///
/// Two sequential passes over the log, never a fold per case (which reads
/// each case's events from a different chunk: ~2.8k cases/s at full scale):
/// the first notes, for each case, the seq of the last event that sealed
/// its identity (an erasure forgets it); the second reads those events in
/// seq order, chunk by chunk, opens each identity with its case's key and
/// indexes its documents. Memory is one entry per case (its id and a seq)
/// and one per document (its blind index), ~150 bytes a case.
/// Errors name the case; two cases holding one document is an error (the
/// index never allows it, so the log or the keys are not what they were).
pub fn rebuild_document_index(
    store: &Store,
    keys: &KeyStore,
    progress: &mut dyn FnMut(u64),
) -> Result<DocumentIndexReport, CaseError> {
    let documents = store.db().open_tree(TREE_DOCUMENTS)?;
    if !documents.is_empty() {
        return Err(CaseError::invariant(
            "the document index is not empty: it is rebuilt only in a new store",
        ));
    }
    let head = store.head()?.seq;
    // Pass 1: the last identity-sealing event of each case.
    let mut last_identity = std::collections::HashMap::<String, u64>::new();
    let mut erased = std::collections::HashSet::<String>::new();
    store.for_each_record(1, head, |record| {
        match record.event_type.as_str() {
            "PersonRegistered" | "PersonalDataUpdated" if !erased.contains(&record.stream_id) => {
                last_identity.insert(record.stream_id.clone(), record.seq);
            }
            "PersonErased" => {
                last_identity.remove(&record.stream_id);
                erased.insert(record.stream_id.clone());
            }
            _ => {}
        }
        Ok(())
    })?;
    let mut todo: Vec<(u64, String)> = last_identity.into_iter().map(|(c, s)| (s, c)).collect();
    todo.sort_unstable();

    // Pass 2: open and index, in seq order.
    let blind = keys.blind_indexer()?;
    let mut report = DocumentIndexReport {
        erased: erased.len() as u64,
        ..Default::default()
    };
    drop(erased);
    let now = crate::clock::now_us().to_be_bytes();
    let mut held = std::collections::HashMap::<[u8; 32], u32>::new();
    for page in todo.chunks(10_000) {
        let seqs: Vec<u64> = page.iter().map(|(s, _)| *s).collect();
        let events = store.get_many(&seqs)?;
        let mut batch = sled::Batch::default();
        for ((seq, case_id), ev) in page.iter().zip(events) {
            if ev.record.seq != *seq || &ev.record.stream_id != case_id {
                return Err(CaseError::invariant(format!(
                    "record {seq} is not the event noted for {case_id}"
                )));
            }
            let Some(key) = keys.get(case_id)? else {
                // Its key is destroyed: an erasure whose event is later than
                // this log (cannot be) or keys from elsewhere. Nothing to open.
                return Err(CaseError::invariant(format!(
                    "case {case_id} has an identity in the log and no key: \
                     the log or the keys are not those of one store"
                )));
            };
            let sealed = match codec::decode(&ev.record.event_type, &ev.record.payload)? {
                Event::PersonRegistered { identity, .. } | Event::PersonalDataUpdated { identity, .. } => {
                    identity
                }
                _ => return Err(CaseError::invariant(format!("record {seq} seals no identity"))),
            };
            report.cases += 1;
            let identity: Identity = pii::open_json(&key, case_id, FIELD_IDENTITY, sealed.as_bytes())?;
            for d in &identity.documents {
                let b = blind.index(&d.doc_type, &d.number)?;
                let index =
                    u32::try_from(report.cases).map_err(|_| CaseError::invariant("too many cases"))?;
                match held.insert(b, index) {
                    Some(other) if other != index => {
                        let other = &todo[other as usize - 1].1;
                        return Err(CaseError::invariant(format!(
                            "cases {other} and {case_id} hold the same identity document: \
                             the log or the keys are not those of one store"
                        )));
                    }
                    _ => {}
                }
                let mut value = case_id.as_bytes().to_vec();
                value.extend_from_slice(&now);
                batch.insert(&b[..], value);
                report.documents += 1;
            }
        }
        documents.apply_batch(batch)?;
        progress(report.cases);
    }
    progress(report.cases);
    Ok(report)
}
