//! The operations of the workload, and the cases they act on.
//!
//! Nothing here prints or logs request or response contents: registrations
//! carry fictitious names and tool-made document numbers, reads return
//! sealed-then-opened personal data the tool only inspects for the version
//! and the exit, and the report holds counts and codes only.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tonic::{Code, Response, Status};

use super::mix::OpKind;
use super::report::{Recorder, Rpc};
use crate::api::pb;
use crate::api::pb::audit_client::AuditClient;
use crate::api::pb::caseworker_client::CaseworkerClient;
use crate::api::pb::statistics_client::StatisticsClient;
use crate::audit::merkle;
use crate::client::AuthChannel;
use crate::simulate::generator::DEPARTMENT_SHARES;
use crate::simulate::rng::Rng;

/// Most cases the tool remembers from its own registrations (set-up and
/// during the run), to act on them later.
pub const OWN_CASES_MAX: usize = 1_000_000;

/// One client connection per principal.
#[derive(Clone)]
pub struct Slot {
    /// As a caseworker.
    pub caseworker: CaseworkerClient<AuthChannel>,
    /// As a statistician.
    pub statistics: StatisticsClient<AuthChannel>,
    /// As an auditor.
    pub audit: AuditClient<AuthChannel>,
}

/// A case the tool registered itself, with the document it was registered with.
pub struct OwnCase {
    /// The case id.
    pub case_id: String,
    /// The document's type (wire value).
    pub doc_type: i32,
    /// The document's number.
    pub number: String,
}

/// A case chosen for an operation.
pub enum Picked {
    /// Person `index` of the simulation.
    Simulated(u64),
    /// A case the tool registered during this run.
    Own(Arc<OwnCase>),
}

/// The cases commands, reads and look-ups choose from: the simulated
/// caseload (known from its seed, without reading the store) and the cases
/// the tool registered.
pub struct CasePool {
    simulated: Option<(u64, u64)>,
    own: RwLock<Vec<Arc<OwnCase>>>,
}

impl CasePool {
    /// `simulated`: (seed, persons) of `registry simulate`.
    pub fn new(simulated: Option<(u64, u64)>) -> CasePool {
        CasePool {
            simulated,
            own: RwLock::new(Vec::new()),
        }
    }

    /// Cases in the pool now.
    pub fn len(&self) -> u64 {
        self.simulated.map_or(0, |(_, n)| n) + self.own_len() as u64
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn own_len(&self) -> usize {
        self.own.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Remembers a case the tool registered (up to [`OWN_CASES_MAX`]).
    pub fn add(&self, case: OwnCase) {
        let mut own = self.own.write().unwrap_or_else(|p| p.into_inner());
        if own.len() < OWN_CASES_MAX {
            own.push(Arc::new(case));
        }
    }

    /// A case chosen uniformly.
    pub fn pick(&self, rng: &mut Rng) -> Option<Picked> {
        let n = self.len();
        if n == 0 {
            return None;
        }
        let i = rng.below(n);
        match self.simulated {
            Some((_, persons)) if i < persons => Some(Picked::Simulated(i)),
            _ => {
                let own = self.own.read().unwrap_or_else(|p| p.into_inner());
                let j = (i - self.simulated.map_or(0, |(_, n)| n)) as usize;
                own.get(j.min(own.len().saturating_sub(1)))
                    .cloned()
                    .map(Picked::Own)
            }
        }
    }

    /// The case id of a chosen case.
    pub fn case_id(&self, picked: &Picked) -> String {
        match (picked, self.simulated) {
            (Picked::Simulated(i), Some((seed, _))) => crate::simulate::case_id(seed, *i),
            (Picked::Own(c), _) => c.case_id.clone(),
            (Picked::Simulated(_), None) => unreachable!("simulated index without a simulation"),
        }
    }

    /// One identity document of a chosen case (type, number as registered).
    pub fn document(&self, picked: &Picked, rng: &mut Rng) -> (i32, String) {
        match (picked, self.simulated) {
            (Picked::Simulated(i), Some((seed, _))) => {
                let plan = crate::simulate::plan_person(seed, *i);
                let docs = &plan.identity.documents;
                let d = rng.pick(docs);
                let doc_type = pb::DocumentType::from_str_name(&format!("DOCUMENT_TYPE_{}", d.doc_type))
                    .map_or(0, |t| t as i32);
                (doc_type, d.number.clone())
            }
            (Picked::Own(c), _) => (c.doc_type, c.number.clone()),
            (Picked::Simulated(_), None) => unreachable!("simulated index without a simulation"),
        }
    }
}

/// Everything the clients share.
pub struct Ctx {
    /// The connections, one slot per connection index.
    pub slots: Vec<Slot>,
    /// The cases operations choose from.
    pub pool: CasePool,
    /// Where every measured operation is recorded.
    pub rec: Recorder,
    /// Distinguishes this run's request ids and document numbers: 16 hex digits.
    pub run_id: String,
    /// Deadline of each call.
    pub timeout: Duration,
    /// The next request number (for request ids).
    pub next_request: AtomicU64,
}

/// The outcome of one operation: the code of its last RPC.
pub type Outcome = Code;

/// Purpose sent with reads and look-ups.
const PURPOSE: &str = "REVIEW";

impl Ctx {
    /// A request id not used before (this run's id and a counter).
    fn request_id(&self) -> String {
        let n = self.next_request.fetch_add(1, Ordering::Relaxed);
        format!("lt-{}-{n}", self.run_id)
    }

    /// One RPC with the tool's deadline, timed and recorded when measured.
    async fn call<T>(
        &self,
        rpc: Rpc,
        measured: bool,
        fut: impl Future<Output = Result<Response<T>, Status>>,
    ) -> Result<T, Status> {
        let started = Instant::now();
        let result = match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r.map(Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded("the load test's deadline passed")),
        };
        if measured {
            let code = result.as_ref().map_or_else(|s| s.code(), |_| Code::Ok);
            self.rec.rpc(rpc, started.elapsed(), code);
        }
        result
    }

    fn count(&self, counter: &AtomicU64, measured: bool) {
        if measured {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The server appended an access event for an answered personal-data read.
    fn accessed(&self) {
        self.rec.access_events.fetch_add(1, Ordering::Relaxed);
    }

    fn appended(&self, r: &pb::CommandResult) {
        if !r.deduplicated && r.last_seq >= r.first_seq && r.first_seq > 0 {
            self.rec
                .appended_events
                .fetch_add(r.last_seq - r.first_seq + 1, Ordering::Relaxed);
        }
    }

    /// Runs one operation of `kind` on connection `slot`.
    pub async fn run(&self, slot: usize, kind: OpKind, rng: &mut Rng, measured: bool) -> Outcome {
        let slot = &self.slots[slot % self.slots.len()];
        match kind {
            OpKind::Command => self.command(slot, rng, measured).await,
            OpKind::Register => self.register(slot, rng, measured).await.0,
            OpKind::Read => self.read(slot, rng, measured).await,
            OpKind::Lookup => self.lookup(slot, rng, measured).await,
            OpKind::Stats => self.stats(slot, rng, measured).await,
            OpKind::Proof => self.proof(slot, rng, measured).await,
        }
    }

    /// GetCase for the version, then UpdateResidence at that version; once
    /// more if the version moved in between (ABORTED).
    async fn command(&self, slot: &Slot, rng: &mut Rng, measured: bool) -> Outcome {
        let Some(picked) = self.pool.pick(rng) else {
            return Code::FailedPrecondition;
        };
        let case_id = self.pool.case_id(&picked);
        for attempt in 0..2 {
            let read = pb::GetCaseRequest {
                case_id: case_id.clone(),
                purpose: PURPOSE.into(),
            };
            let case = match self
                .call(
                    Rpc::CommandGetCase,
                    measured,
                    slot.caseworker.clone().get_case(read),
                )
                .await
            {
                Ok(case) => {
                    self.accessed();
                    case
                }
                Err(s) => return s.code(),
            };
            if attempt == 0 && case.exit != pb::ExitKind::Unspecified as i32 {
                self.count(&self.rec.commands_on_exited, measured);
            }
            let (department, municipality) = residence(rng);
            let update = pb::UpdateResidenceRequest {
                header: Some(pb::CommandHeader {
                    request_id: self.request_id(),
                    case_id: case_id.clone(),
                    expected_version: case.version,
                    on: String::new(),
                }),
                department,
                municipality,
            };
            match self
                .call(
                    Rpc::UpdateResidence,
                    measured,
                    slot.caseworker.clone().update_residence(update),
                )
                .await
            {
                Ok(r) => {
                    self.appended(&r);
                    return Code::Ok;
                }
                Err(s) if s.code() == Code::Aborted && attempt == 0 => {
                    self.count(&self.rec.command_retries, measured);
                }
                Err(s) => return s.code(),
            }
        }
        Code::Aborted
    }

    /// RegisterPerson of a fictitious person with a tool-made passport
    /// number; on success the case joins the pool.
    pub async fn register(&self, slot: &Slot, rng: &mut Rng, measured: bool) -> (Outcome, Option<Status>) {
        let request_id = self.request_id();
        let n = self.next_request.fetch_add(1, Ordering::Relaxed);
        // "LT", 16 hex digits, a counter: alphanumeric, at most 32 characters,
        // and never one of the simulator's (all-digit or "V"-prefixed) numbers.
        let number = format!("LT{}{n}", self.run_id).to_uppercase();
        let doc_type = pb::DocumentType::Passport as i32;
        let (department, municipality) = residence(rng);
        let birth_date = format!(
            "{}-{:02}-{:02}",
            1950 + rng.below(56),
            1 + rng.below(12),
            1 + rng.below(28)
        );
        let request = pb::RegisterPersonRequest {
            header: Some(pb::CommandHeader {
                request_id,
                case_id: String::new(),
                expected_version: 0,
                on: String::new(),
            }),
            person: Some(pb::PersonalData {
                given_names: "CARGA".into(),
                family_names: "PRUEBA SINTETICA".into(),
                birth_date,
                documents: vec![pb::IdentityDocument {
                    r#type: doc_type,
                    number: number.clone(),
                }],
                phone: String::new(),
                email: String::new(),
                address: String::new(),
            }),
            sex: if rng.chance(0.505) {
                pb::Sex::F as i32
            } else {
                pb::Sex::M as i32
            },
            nationality: "VEN".into(),
            department,
            municipality,
        };
        match self
            .call(
                Rpc::RegisterPerson,
                measured,
                slot.caseworker.clone().register_person(request),
            )
            .await
        {
            Ok(r) => {
                self.appended(&r);
                self.rec.registered.fetch_add(1, Ordering::Relaxed);
                self.pool.add(OwnCase {
                    case_id: r.case_id,
                    doc_type,
                    number,
                });
                (Code::Ok, None)
            }
            Err(s) => (s.code(), Some(s)),
        }
    }

    async fn read(&self, slot: &Slot, rng: &mut Rng, measured: bool) -> Outcome {
        let Some(picked) = self.pool.pick(rng) else {
            return Code::FailedPrecondition;
        };
        let request = pb::GetCaseRequest {
            case_id: self.pool.case_id(&picked),
            purpose: PURPOSE.into(),
        };
        match self
            .call(Rpc::GetCase, measured, slot.caseworker.clone().get_case(request))
            .await
        {
            Ok(_) => {
                self.accessed();
                Code::Ok
            }
            Err(s) => s.code(),
        }
    }

    async fn lookup(&self, slot: &Slot, rng: &mut Rng, measured: bool) -> Outcome {
        let Some(picked) = self.pool.pick(rng) else {
            return Code::FailedPrecondition;
        };
        let (doc_type, number) = self.pool.document(&picked, rng);
        let request = pb::FindCasesByDocumentRequest {
            document: Some(pb::IdentityDocument {
                r#type: doc_type,
                number,
            }),
            purpose: PURPOSE.into(),
        };
        match self
            .call(
                Rpc::FindCasesByDocument,
                measured,
                slot.caseworker.clone().find_cases_by_document(request),
            )
            .await
        {
            Ok(r) => {
                self.accessed();
                let counter = if r.case_ids.is_empty() {
                    &self.rec.lookup_misses
                } else {
                    &self.rec.lookup_hits
                };
                self.count(counter, measured);
                Code::Ok
            }
            Err(s) => s.code(),
        }
    }

    /// One of: by status; by department; by status and department, published.
    async fn stats(&self, slot: &Slot, rng: &mut Rng, measured: bool) -> Outcome {
        let (by, published): (&[&str], bool) = match rng.below(3) {
            0 => (&["status"], false),
            1 => (&["department"], false),
            _ => (&["status", "department"], true),
        };
        let request = pb::CaseloadRequest {
            by: by.iter().map(|d| d.to_string()).collect(),
            filters: Vec::new(),
            as_of_date: String::new(),
            as_of_seq: 0,
            published,
        };
        match self
            .call(Rpc::Caseload, measured, slot.statistics.clone().caseload(request))
            .await
        {
            Ok(_) => Code::Ok,
            Err(s) => s.code(),
        }
    }

    /// The latest checkpoint, then an inclusion proof of a random event and
    /// a consistency proof from a random earlier size, each checked against
    /// the checkpoint's root (the checkpoint's signature is not checked: the
    /// verifier key comes out of band).
    async fn proof(&self, slot: &Slot, rng: &mut Rng, measured: bool) -> Outcome {
        let cp = pb::GetCheckpointRequest {
            tree_size: None,
            sign_now: false,
        };
        let cp = match self
            .call(
                Rpc::GetCheckpoint,
                measured,
                slot.audit.clone().get_checkpoint(cp),
            )
            .await
        {
            Ok(cp) => cp,
            Err(s) => return s.code(),
        };
        let size = cp.tree_size;
        if size == 0 {
            self.count(&self.rec.proofs_empty_tree, measured);
            return Code::Ok;
        }
        let Ok(root) = <merkle::Hash>::try_from(cp.root_hash.as_slice()) else {
            self.count(&self.rec.proofs_invalid, measured);
            return Code::Ok;
        };
        let seq = 1 + rng.below(size);
        let inclusion = pb::GetInclusionProofRequest { seq, tree_size: size };
        let proof = match self
            .call(
                Rpc::GetInclusionProof,
                measured,
                slot.audit.clone().get_inclusion_proof(inclusion),
            )
            .await
        {
            Ok(p) => p,
            Err(s) => return s.code(),
        };
        let valid = proof.tree_size == size
            && hashes(std::slice::from_ref(&proof.leaf_hash)).is_some_and(|leaf| {
                hashes(&proof.hashes).is_some_and(|path| {
                    merkle::verify_inclusion(&leaf[0], seq - 1, size, &path, &root).is_ok()
                })
            });
        let counter = if valid {
            &self.rec.proofs_verified
        } else {
            &self.rec.proofs_invalid
        };
        self.count(counter, measured);
        let from_size = 1 + rng.below(size);
        let consistency = pb::GetConsistencyProofRequest {
            from_size,
            to_size: size,
        };
        let proof = match self
            .call(
                Rpc::GetConsistencyProof,
                measured,
                slot.audit.clone().get_consistency_proof(consistency),
            )
            .await
        {
            Ok(p) => p,
            Err(s) => return s.code(),
        };
        let valid = proof.from_size == from_size
            && proof.to_size == size
            && proof.to_root == root
            && <merkle::Hash>::try_from(proof.from_root.as_slice()).is_ok_and(|from_root| {
                hashes(&proof.hashes).is_some_and(|path| {
                    merkle::verify_consistency(from_size, size, &from_root, &root, &path).is_ok()
                })
            });
        let counter = if valid {
            &self.rec.proofs_verified
        } else {
            &self.rec.proofs_invalid
        };
        self.count(counter, measured);
        Code::Ok
    }
}

/// 32-byte hashes, or `None` if one has another length.
fn hashes(raw: &[Vec<u8>]) -> Option<Vec<merkle::Hash>> {
    raw.iter()
        .map(|h| merkle::Hash::try_from(h.as_slice()).ok())
        .collect()
}

/// A valid (department, municipality) pair in DIVIPOLA codes, uniformly
/// among the simulator's municipalities.
pub fn residence(rng: &mut Rng) -> (String, String) {
    let (department, _, municipalities) = rng.pick(&DEPARTMENT_SHARES);
    let municipality = rng.pick(municipalities);
    (format!("{department:02}"), format!("{municipality:05}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residences_are_well_formed_divipola_pairs() {
        let mut rng = Rng::new(3);
        for _ in 0..500 {
            let (d, m) = residence(&mut rng);
            assert_eq!(d.len(), 2);
            assert_eq!(m.len(), 5);
            assert!(m.starts_with(&d), "{m} not in {d}");
        }
    }

    #[test]
    fn the_pool_names_simulated_cases_and_their_documents() {
        let pool = CasePool::new(Some((7, 10)));
        let mut rng = Rng::new(1);
        for _ in 0..50 {
            let p = pool.pick(&mut rng).unwrap();
            let Picked::Simulated(i) = p else {
                panic!("only simulated cases in the pool")
            };
            assert!(i < 10);
            assert_eq!(pool.case_id(&p), crate::simulate::case_id(7, i));
            let (t, number) = pool.document(&p, &mut rng);
            assert_ne!(t, 0, "a known document type");
            let plan = crate::simulate::plan_person(7, i);
            assert!(plan.identity.documents.iter().any(|d| d.number == number));
        }
        pool.add(OwnCase {
            case_id: "C-own".into(),
            doc_type: 2,
            number: "LT1".into(),
        });
        assert_eq!(pool.len(), 11);
        let own = (0..500)
            .filter_map(|_| pool.pick(&mut rng))
            .filter(|p| matches!(p, Picked::Own(_)))
            .count();
        assert!(own > 10 && own < 120, "own case picked {own} times of 500");
    }
}
