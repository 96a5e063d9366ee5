//! Replication (docs/CLUSTER.md): a registry cluster of three (or five)
//! nodes on openraft 0.9. The leader's writer chains each group commit as
//! on a single node and proposes it as one Raft entry; it answers the
//! client once a majority holds the entry and the leader applied it. Every
//! node applies committed entries to its own v2 store, checking each
//! record's chain link (src/cluster/state_machine.rs). Followers serve
//! reads; writes sent to a follower are refused with UNAVAILABLE naming
//! the leader's client address (`NOT_LEADER`).

pub mod bench;
pub mod cosign;
pub mod file;
pub mod log_store;
pub mod network;
pub mod snapshot;
pub mod state_machine;
pub mod trees;
pub mod types;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};

pub use file::ClusterFile;
use types::{Command, Member, NodeId, Raft};

use crate::log::writer::PendingProposal;
use crate::log::{AppendError, Log, ProposedBatch, Proposer};

/// How long a proposal may wait for a majority before the writer answers
/// UNAVAILABLE (the outcome is then unknown: the client retries with the
/// same request id and gets the original's answer if it was written).
pub const PROPOSE_TIMEOUT_MS: u64 = 5_000;
/// How long the writer waits for this node to be ready to chain (leading,
/// everything in its Raft log applied) before answering.
pub const READY_WAIT_MS: u64 = 2_000;
/// Raft timing by default: heartbeats and the election timeout range
/// (`[raft]` in the cluster file; docs/CLUSTER.md).
pub const HEARTBEAT_MS: u64 = 100;
/// Default lower end of the election timeout range, in ms
/// (`[raft] election_min_ms`).
pub const ELECTION_TIMEOUT_MIN_MS: u64 = 500;
/// Default upper end of the election timeout range, in ms
/// (`[raft] election_max_ms`).
pub const ELECTION_TIMEOUT_MAX_MS: u64 = 1_000;
/// How long one snapshot chunk may take, the last one including the
/// receiver's verification and install of the whole snapshot.
pub const SNAPSHOT_INSTALL_TIMEOUT_MS: u64 = 30 * 60 * 1_000;
/// Bytes per snapshot chunk (under the Raft service's message limit).
pub const SNAPSHOT_CHUNK_BYTES: u64 = 4 << 20;

/// Why a cluster node could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A file of the cluster file's `[tls]` section could not be read.
    #[error("cluster file: {0}")]
    Tls(#[from] crate::auth::tls::TlsError),
    /// tonic refused the Raft service's server TLS settings.
    #[error("cluster file: {0}")]
    ServerTls(#[source] tonic::transport::Error),
    /// The store holds this many events but has no Raft state, and the
    /// cluster file does not say `seed = true`.
    #[error(
        "this store holds {0} events but never belonged to a cluster: a node starts from an empty data directory and receives the log from the cluster, or seeds a new cluster with `seed = true` in its cluster file (docs/CLUSTER.md)"
    )]
    NotInCluster(u64),
    /// openraft refused the Raft configuration built from the cluster file.
    #[error("raft: {0}")]
    Config(#[source] Box<openraft::ConfigError>),
    /// Raft could not start on this node.
    #[error("raft: {0}")]
    Fatal(#[source] Box<openraft::error::Fatal<NodeId>>),
    /// Initializing a new cluster (on its lowest-id node) failed, other
    /// than because it was initialized already.
    #[error("raft: {0}")]
    Initialize(#[source] Box<RaftError<NodeId, openraft::error::InitializeError<NodeId, Member>>>),
    /// The Raft log store (its sled trees) could not be opened or read.
    #[error("storage: {0}")]
    Sled(#[from] sled::Error),
    /// The log's head could not be read.
    #[error("storage: {0}")]
    Store(#[from] crate::log::StoreError),
    /// The Raft state machine over the store could not be opened.
    #[error("storage: {0}")]
    StateMachine(#[source] Box<openraft::StorageError<NodeId>>),
}

/// A running cluster node.
pub struct Cluster {
    /// This node's Raft handle (status, membership changes, shutdown).
    pub raft: Raft,
    /// This node's id (the cluster file's `node_id`).
    pub me: NodeId,
    /// Where the Raft service finds this node's cosigner (set once audit runs).
    pub cosigner: network::CosignerSlot,
    /// Where the snapshot builder finds this node's checkpointer (set once audit runs).
    pub checkpointer: state_machine::CheckpointerSlot,
    /// The peers' client TLS (cosignature requests).
    pub peer_tls: Option<tonic::transport::ClientTlsConfig>,
    server: Option<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

/// What `registry cluster status` and the Admin service report of a node.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NodeStatus {
    /// The node reporting.
    pub node_id: NodeId,
    /// Its Raft role, as openraft names it (`Leader`, `Follower`,
    /// `Candidate`, `Learner`, `Shutdown`).
    pub state: String,
    /// Its current Raft term.
    pub term: u64,
    /// The leader it knows of, if any.
    pub leader: Option<NodeId>,
    /// That leader's client (gRPC API) address, when it is a known member.
    pub leader_api: Option<String>,
    /// The last entry of its Raft log.
    pub last_log_index: Option<u64>,
    /// The last entry it applied to its store.
    pub last_applied_index: Option<u64>,
    /// The entry of this node's current snapshot.
    pub snapshot_index: Option<u64>,
    /// The last entry purged from its Raft log.
    pub purged_index: Option<u64>,
    /// The members of the current Raft membership (voters and learners), by id.
    pub members: BTreeMap<NodeId, Member>,
}

impl Cluster {
    /// Starts this node's Raft on the open `log` (opened with
    /// [`Log::open_replicated`]), serves the Raft service on `raft_listener`,
    /// initializes a new cluster (the lowest id of a cluster file whose nodes
    /// never ran), and gives the writer its proposer.
    pub async fn start(
        log: &Log,
        file: &ClusterFile,
        raft_listener: tokio::net::TcpListener,
    ) -> Result<Cluster, ClusterError> {
        let me = file.node_id;
        let db = log.store().db().clone();
        let applier = log.applier();
        let log_store = log_store::LogStore::open(&db, applier.clone())?;
        let pristine = log_store.is_pristine()?;
        let head = log.store().head()?;
        let seeding = pristine && head.seq > 0;
        if seeding && !file.seed {
            return Err(ClusterError::NotInCluster(head.seq));
        }
        let checkpointer = state_machine::CheckpointerSlot::default();
        let snapshots = state_machine::SnapshotConfig {
            dir: snapshot::dir_of(log.store().dir()),
            me,
            pinned: file.audit_vkeys.clone(),
            checkpointer: checkpointer.clone(),
            capture: snapshot::Capture::default(),
            failed_at: Default::default(),
        };
        let sm = state_machine::StateMachine::open(db, applier, snapshots)
            .map_err(|e| ClusterError::StateMachine(Box::new(e)))?;
        let config = openraft::Config {
            cluster_name: "migreg".into(),
            heartbeat_interval: file.timing.heartbeat_ms,
            election_timeout_min: file.timing.election_min_ms,
            election_timeout_max: file.timing.election_max_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(file.snapshot_every),
            max_in_snapshot_log_to_keep: file.snapshot_keep,
            install_snapshot_timeout: SNAPSHOT_INSTALL_TIMEOUT_MS,
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
            max_payload_entries: 64,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ClusterError::Config(Box::new(e)))?;
        let (server_tls, client_tls) = file.tls_configs()?;
        let network = network::Network { tls: client_tls };
        let raft = Raft::new(me, Arc::new(config), network, log_store, sm)
            .await
            .map_err(|e| ClusterError::Fatal(Box::new(e)))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = server_tls {
            builder = builder.tls_config(tls).map_err(ClusterError::ServerTls)?;
        }
        let cosigner = network::CosignerSlot::default();
        let router = builder.add_service(network::server(raft.clone(), cosigner.clone()));
        let incoming = tonic::transport::server::TcpIncoming::from(raft_listener).with_nodelay(Some(true));
        let server = tokio::spawn(async move {
            if let Err(e) = router
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await
            {
                tracing::error!(error = %e, "the Raft service stopped");
            }
        });
        if pristine && file.members.keys().next() == Some(&me) {
            // A seed starts a cluster of itself alone; the others join
            // through snapshots of its store (see `seed_members`).
            let members: BTreeMap<NodeId, Member> = if seeding {
                [(me, file.me().clone())].into_iter().collect()
            } else {
                file.members.clone()
            };
            if seeding {
                tracing::info!(
                    node = me,
                    events = head.seq,
                    "seeding a new cluster from this store"
                );
            }
            match raft.initialize(members).await {
                Ok(()) => tracing::info!(node = me, "initialized a new cluster"),
                Err(RaftError::APIError(e)) => tracing::info!(error = %e, "cluster already initialized"),
                Err(e) => return Err(ClusterError::Initialize(Box::new(e))),
            }
        }
        let proposer = Arc::new(ClusterProposer {
            raft: raft.clone(),
            me,
            runtime: tokio::runtime::Handle::current(),
        });
        log.store().side_slot().set(proposer.clone());
        log.set_proposer(proposer);
        if file.seed {
            tokio::spawn(seed_members(raft.clone(), me, file.members.clone()));
        }
        tokio::spawn(stop_on_fatal(raft.clone(), log.applier()));
        tracing::info!(node = me, members = file.members.len(), "cluster node started");
        Ok(Cluster {
            raft,
            me,
            cosigner,
            checkpointer,
            peer_tls: file.tls_configs()?.1,
            server: Some((stop, server)),
        })
    }

    /// This node's view of the cluster.
    pub fn status(&self) -> NodeStatus {
        status_of(&self.raft)
    }

    /// Stops Raft and the Raft service (before the log is closed).
    pub async fn shutdown(mut self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "stopping Raft");
        }
        if let Some((stop, server)) = self.server.take() {
            let _ = stop.send(());
            let _ = server.await;
        }
    }
}

/// Stops the node (fail-stop, as a failed chain check does) when its Raft
/// stops on an error: a storage error, a panic. A node whose Raft stopped
/// would otherwise keep answering reads while it neither leads nor follows.
async fn stop_on_fatal(raft: Raft, applier: std::sync::Arc<std::sync::Mutex<crate::log::Applier>>) {
    let mut rx = raft.metrics();
    loop {
        let fatal = match &rx.borrow().running_state {
            Err(openraft::error::Fatal::Stopped) => return,
            Err(e) => Some(e.to_string()),
            Ok(()) => None,
        };
        if let Some(reason) = fatal {
            tracing::error!(%reason, "Raft stopped on an error; this node stops");
            applier.lock().unwrap_or_else(|p| p.into_inner()).fail(format!(
                "this node's Raft stopped: {reason}; restart it (docs/CLUSTER.md)"
            ));
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// How often the seed retries adding a member that is not reachable yet.
pub const SEED_RETRY_MS: u64 = 2_000;

/// On the node whose cluster file says `seed = true`: once it leads,
/// takes a snapshot of its store and purges its Raft log behind it (so
/// every other node must receive the store as a snapshot, never as
/// entries its empty store cannot continue), then adds every member of
/// the file that is not a member yet, one at a time, each as a learner
/// that installs the snapshot and then as a voter. Safe to run again after
/// a restart: it only adds what is missing.
async fn seed_members(raft: Raft, me: NodeId, wanted: BTreeMap<NodeId, Member>) {
    loop {
        let m = raft.metrics().borrow().clone();
        if m.current_leader == Some(me) && m.state.is_leader() && m.last_applied.is_some() {
            break;
        }
        if m.current_leader.is_some() && m.current_leader != Some(me) {
            // Another node leads: the cluster exists already.
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = raft.metrics().borrow().clone();
    if m.purged.is_none() {
        let applied = m.last_applied.map_or(0, |l| l.index);
        if let Err(e) = raft.trigger().snapshot().await {
            tracing::error!(error = %e, "seed: the snapshot could not be triggered");
            return;
        }
        let mut rx = raft.metrics();
        let snapshot = rx
            .wait_for(|m| m.snapshot.is_some_and(|s| s.index >= applied))
            .await
            .map(|m| m.snapshot);
        let Ok(Some(snapshot)) = snapshot else {
            tracing::error!("seed: the snapshot was not built");
            return;
        };
        if let Err(e) = raft.trigger().purge_log(snapshot.index).await {
            tracing::error!(error = %e, "seed: the log could not be purged");
            return;
        }
        tracing::info!(
            index = snapshot.index,
            "seed: snapshot taken; members join through it"
        );
    }
    for (id, member) in wanted {
        loop {
            let m = raft.metrics().borrow().clone();
            if m.current_leader != Some(me) {
                return;
            }
            let membership = m.membership_config.membership();
            if membership.voter_ids().any(|v| v == id) {
                break;
            }
            let step = if membership.get_node(&id).is_none() {
                // A learner first; it receives the snapshot, then the log.
                raft.add_learner(id, member.clone(), false)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            } else {
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned().flatten())
                    .map(|l| l.index);
                if matched.is_some() && matched >= m.last_applied.map(|l| l.index) {
                    let voters = openraft::ChangeMembers::AddVoterIds([id].into_iter().collect());
                    raft.change_membership(voters, false)
                        .await
                        .map(|_| tracing::info!(node = id, "seed: member joined as a voter"))
                        .map_err(|e| e.to_string())
                } else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Ok(())
                }
            };
            if let Err(e) = step {
                tracing::warn!(node = id, error = %e, "seed: adding a member failed; retrying");
                tokio::time::sleep(Duration::from_millis(SEED_RETRY_MS)).await;
            }
        }
    }
}

/// Why a membership change was not made.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// Membership changes are made on the leader; this node is not it.
    #[error("this node is not the cluster's leader")]
    NotLeader {
        /// The leader's client (gRPC API) address, when known.
        leader: Option<String>,
    },
    /// The change was refused: the node to add is a member already, the
    /// node to remove is not one, or Raft refused it; the text says why.
    #[error("the cluster refused the change: {0}")]
    Refused(String),
}

fn membership_error(e: RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> MembershipError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => MembershipError::NotLeader {
            leader: f.leader_node.map(|n| n.api),
        },
        other => MembershipError::Refused(other.to_string()),
    }
}

/// Adds a member (on the leader): a learner first, waiting until it caught
/// up with the log, then a voter.
pub async fn add_member(raft: &Raft, id: NodeId, member: Member) -> Result<(), MembershipError> {
    let status = status_of(raft);
    if status.leader != Some(status.node_id) {
        return Err(MembershipError::NotLeader {
            leader: status.leader_api,
        });
    }
    if status.members.contains_key(&id) {
        return Err(MembershipError::Refused(format!("node {id} is a member already")));
    }
    raft.add_learner(id, member, true)
        .await
        .map_err(membership_error)?;
    let voters = openraft::ChangeMembers::AddVoterIds([id].into_iter().collect());
    raft.change_membership(voters, false)
        .await
        .map_err(membership_error)?;
    tracing::info!(node = id, "member added");
    Ok(())
}

/// Removes a member (on the leader) from the voters and the members.
pub async fn remove_member(raft: &Raft, id: NodeId) -> Result<(), MembershipError> {
    let status = status_of(raft);
    if status.leader != Some(status.node_id) {
        return Err(MembershipError::NotLeader {
            leader: status.leader_api,
        });
    }
    if !status.members.contains_key(&id) {
        return Err(MembershipError::Refused(format!("node {id} is not a member")));
    }
    let voters = openraft::ChangeMembers::RemoveVoters([id].into_iter().collect());
    raft.change_membership(voters, false)
        .await
        .map_err(membership_error)?;
    tracing::info!(node = id, "member removed");
    Ok(())
}

/// A node's view of the cluster, from its Raft metrics.
pub fn status_of(raft: &Raft) -> NodeStatus {
    let m = raft.metrics().borrow().clone();
    let members: BTreeMap<NodeId, Member> = m
        .membership_config
        .membership()
        .nodes()
        .map(|(id, n)| (*id, n.clone()))
        .collect();
    let leader_api = m
        .current_leader
        .and_then(|l| members.get(&l))
        .map(|n| n.api.clone());
    NodeStatus {
        node_id: m.id,
        state: format!("{:?}", m.state),
        term: m.current_term,
        leader: m.current_leader,
        leader_api,
        last_log_index: m.last_log_index,
        last_applied_index: m.last_applied.map(|l| l.index),
        snapshot_index: m.snapshot.map(|l| l.index),
        purged_index: m.purged.map(|l| l.index),
        members,
    }
}

/// Runs a future to completion from blocking code: on the writer's thread,
/// or on a runtime thread (where it first leaves the worker pool).
fn block_on<F: std::future::Future>(runtime: &tokio::runtime::Handle, f: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => tokio::task::block_in_place(|| runtime.block_on(f)),
        Err(_) => runtime.block_on(f),
    }
}

impl crate::log::side::TreeReplicator for ClusterProposer {
    fn write(
        &self,
        tree: &str,
        ops: Vec<crate::log::side::CasOp>,
    ) -> Result<Result<(), usize>, trees::TreeWriteError> {
        let mut write = types::TreeWrite::default();
        for (key, old, new) in ops {
            write.expect.push((tree.to_string(), key.clone(), old));
            write.set.push((tree.to_string(), key, new));
        }
        self.tree_write(write)
    }

    fn write_unconditional(
        &self,
        tree: &str,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<Result<(), usize>, trees::TreeWriteError> {
        let write = types::TreeWrite {
            expect: Vec::new(),
            set: vec![(tree.to_string(), key, Some(value))],
        };
        self.tree_write(write)
    }
}

impl ClusterProposer {
    /// Proposes a tree write and waits until this node applied it.
    fn tree_write(&self, write: types::TreeWrite) -> Result<Result<(), usize>, trees::TreeWriteError> {
        trees::check(&write)?;
        let raft = self.raft.clone();
        let written = block_on(&self.runtime, async move {
            tokio::time::timeout(
                Duration::from_millis(PROPOSE_TIMEOUT_MS),
                raft.client_write(Command::Trees(write)),
            )
            .await
        });
        match written {
            Ok(Ok(response)) => match response.data {
                types::Applied::Trees(result) => Ok(result),
                other => Err(trees::TreeWriteError::Answer(other)),
            },
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(trees::TreeWriteError::NotLeader(f.leader_node.map(|n| n.api)))
            }
            Ok(Err(e)) => Err(trees::TreeWriteError::Unconfirmed(Box::new(e))),
            Err(_) => Err(trees::TreeWriteError::Timeout),
        }
    }
}

/// The writer's way into the cluster (see [`Proposer`]).
struct ClusterProposer {
    raft: Raft,
    me: NodeId,
    runtime: tokio::runtime::Handle,
}

impl Proposer for ClusterProposer {
    fn leader(&self) -> Result<(), AppendError> {
        // On every command: read the metrics in place, and look the
        // leader's address up only when refusing.
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        match m.current_leader {
            Some(l) if l == self.me => Ok(()),
            leader => Err(AppendError::NotLeader {
                leader: leader
                    .and_then(|l| m.membership_config.membership().get_node(&l))
                    .map(|n| n.api.clone()),
            }),
        }
    }

    fn ready(&self) -> Result<(), AppendError> {
        let deadline = Instant::now() + Duration::from_millis(READY_WAIT_MS);
        loop {
            let status = status_of(&self.raft);
            let m = self.raft.metrics().borrow().clone();
            match status.leader {
                Some(l) if l != self.me => {
                    return Err(AppendError::NotLeader {
                        leader: status.leader_api,
                    })
                }
                Some(_) if m.state.is_leader() => {
                    // Every entry of the log applied (the term's blank entry
                    // included): the store's head is the cluster's, and no
                    // earlier proposal of this writer is still in flight.
                    let applied = m.last_applied;
                    let caught_up = applied.is_some_and(|a| {
                        a.leader_id.term == m.current_term && Some(a.index) == m.last_log_index
                    });
                    if caught_up {
                        return Ok(());
                    }
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(match status.leader {
                    Some(l) if l == self.me => AppendError::Unavailable(
                        "this leader has not applied its earlier entries yet (a majority may be unreachable); retry with the same request id".into(),
                    ),
                    _ => AppendError::NotLeader { leader: None },
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn propose(&self, batch: ProposedBatch) -> Result<Box<dyn PendingProposal>, AppendError> {
        let command = Command::Append {
            records: batch.records,
            head_seq: batch.head.seq,
            head_hash: batch.head.hash,
            side: batch.side,
        };
        // Handed to Raft's core in the writer's order (one thread, one
        // channel): the entries reach the log in the order they chain.
        let raft = self.raft.clone();
        let rx =
            block_on(&self.runtime, async move { raft.client_write_ff(command).await }).map_err(|e| {
                AppendError::Unavailable(format!(
                    "the cluster is stopping ({e}); retry with the same request id"
                ))
            })?;
        Ok(Box::new(PendingWrite {
            rx,
            head_seq: batch.head.seq,
            runtime: self.runtime.clone(),
        }))
    }
}

/// An `Append` entry handed to Raft, until it is applied here (or fails).
struct PendingWrite {
    rx: tokio::sync::oneshot::Receiver<openraft::raft::ClientWriteResult<types::TypeConfig>>,
    head_seq: u64,
    runtime: tokio::runtime::Handle,
}

impl PendingWrite {
    fn outcome(
        &self,
        result: openraft::raft::ClientWriteResult<types::TypeConfig>,
    ) -> Result<(), AppendError> {
        match result {
            Ok(response) => match response.data {
                types::Applied::Appended { head_seq } if head_seq == self.head_seq => Ok(()),
                other => Err(AppendError::Unavailable(format!(
                    "the cluster applied the batch with an unexpected answer {other:?}"
                ))),
            },
            Err(ClientWriteError::ForwardToLeader(f)) => Err(AppendError::NotLeader {
                leader: f.leader_node.map(|n| n.api),
            }),
            Err(e) => Err(AppendError::Unavailable(format!(
                "the cluster did not confirm the write ({e}); retry with the same request id"
            ))),
        }
    }
}

fn dropped() -> AppendError {
    AppendError::Unavailable("the cluster dropped the write (leadership changed or the node stopped); retry with the same request id".into())
}

impl PendingProposal for PendingWrite {
    fn try_done(&mut self) -> Option<Result<(), AppendError>> {
        use tokio::sync::oneshot::error::TryRecvError;
        match self.rx.try_recv() {
            Ok(result) => Some(self.outcome(result)),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Closed) => Some(Err(dropped())),
        }
    }

    fn wait(&mut self, timeout: Duration) -> Result<(), AppendError> {
        let runtime = self.runtime.clone();
        let rx = &mut self.rx;
        // The timer is made inside the runtime (it needs its reactor).
        let received = block_on(&runtime, async move { tokio::time::timeout(timeout, rx).await });
        match received {
            Ok(Ok(result)) => self.outcome(result),
            Ok(Err(_)) => Err(dropped()),
            Err(_) => Err(AppendError::Unavailable(format!(
                "no majority confirmed the write within {} ms; retry with the same request id",
                timeout.as_millis()
            ))),
        }
    }
}
