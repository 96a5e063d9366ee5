//! The cluster file of `registry serve --cluster FILE` (docs/CLUSTER.md):
//!
//! ```toml
//! node_id = 1                      # this node (optional: see below)
//! seed = false                     # true: this (lowest-id) node's existing store seeds a new cluster
//! [raft]                           # optional: timing (defaults 100, 500, 1000)
//! heartbeat_ms = 100
//! election_min_ms = 500
//! election_max_ms = 1000
//! [snapshots]                      # optional
//! every = 10000                    # Raft entries between two snapshots
//! keep = 1000                      # entries kept before a snapshot's index
//! [tls]                            # mutual TLS between nodes (required off loopback)
//! cert = "node1.pem"               # this node's certificate (client and server)
//! key = "node1.key"
//! ca = "cluster-ca.pem"            # the CA that signs every node's certificate
//! [[members]]
//! id = 1
//! raft = "10.0.0.1:7100"           # node-to-node Raft traffic
//! api = "10.0.0.1:50051"           # clients (what a follower names as the leader)
//! audit_vkey = "..."               # optional: pins the member's audit verifier key
//! ```
//!
//! Addresses are `host:port` (an IP or a DNS name). Without `node_id` the
//! node takes the ordinal of a StatefulSet pod from its host name plus one
//! (`registry-0` is node 1), so one file serves every pod.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::types::{Member, NodeId};
use crate::auth::tls::{is_loopback, ClientTls, ServerTls};

/// Most members a cluster file may list.
pub const MEMBERS_MAX: usize = 7;
/// Default Raft entries between two snapshots (`[snapshots] every`).
pub const SNAPSHOT_EVERY_DEFAULT: u64 = 10_000;
/// Default Raft entries kept before a snapshot's index when the log is
/// purged (`[snapshots] keep`), so a follower briefly behind still catches
/// up from the log rather than by a snapshot.
pub const SNAPSHOT_KEEP_DEFAULT: u64 = 1_000;
/// Bounds of `[snapshots] every` and `keep`.
pub const SNAPSHOT_EVERY_RANGE: std::ops::RangeInclusive<u64> = 10..=10_000_000;
/// Largest `[snapshots] keep` accepted (0 is allowed).
pub const SNAPSHOT_KEEP_MAX: u64 = 10_000_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    node_id: Option<NodeId>,
    #[serde(default)]
    tls: Option<RawTls>,
    #[serde(default)]
    snapshots: Option<RawSnapshots>,
    #[serde(default)]
    seed: bool,
    #[serde(default)]
    raft: Option<RawRaft>,
    members: Vec<RawMember>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRaft {
    #[serde(default)]
    heartbeat_ms: Option<u64>,
    #[serde(default)]
    election_min_ms: Option<u64>,
    #[serde(default)]
    election_max_ms: Option<u64>,
}

/// Raft timing of a cluster (`[raft]` in the cluster file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaftTiming {
    /// Between two heartbeats; also how long openraft lets one
    /// AppendEntries request take before it counts as lost.
    pub heartbeat_ms: u64,
    /// A follower that heard no leader for a random time in this range stands for election.
    pub election_min_ms: u64,
    /// The upper end of that range, in ms: above `election_min_ms`, at most
    /// [`ELECTION_MAX_MS`].
    pub election_max_ms: u64,
}

impl Default for RaftTiming {
    fn default() -> RaftTiming {
        RaftTiming {
            heartbeat_ms: super::HEARTBEAT_MS,
            election_min_ms: super::ELECTION_TIMEOUT_MIN_MS,
            election_max_ms: super::ELECTION_TIMEOUT_MAX_MS,
        }
    }
}

/// Bounds of `[raft] heartbeat_ms`; the election timeouts are at least
/// three heartbeats and at most [`ELECTION_MAX_MS`].
pub const HEARTBEAT_RANGE_MS: std::ops::RangeInclusive<u64> = 20..=10_000;
/// Largest `[raft] election_max_ms` accepted, in ms.
pub const ELECTION_MAX_MS: u64 = 60_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSnapshots {
    #[serde(default)]
    every: Option<u64>,
    #[serde(default)]
    keep: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMember {
    id: NodeId,
    raft: String,
    api: String,
    #[serde(default)]
    audit_vkey: Option<String>,
}

/// Why a cluster file cannot be used: it could not be read, or a field is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ClusterFileError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The cluster file's path.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file was read but a field is wrong.
    #[error("{}: {source}", path.display())]
    Invalid {
        /// The cluster file's path.
        path: PathBuf,
        /// Which field, and what is wrong with it.
        source: FieldError,
    },
}

/// What is wrong in the text of a cluster file; the message names the field.
#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    /// Not TOML of the expected shape (unknown fields are refused).
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    /// No member, or more than [`MEMBERS_MAX`].
    #[error("members: 1 to {MEMBERS_MAX} members are allowed")]
    MemberCount,
    /// A member's id is 0.
    #[error("members.id: ids start at 1")]
    ZeroId,
    /// Two members have this id.
    #[error("members.id: {0} appears twice")]
    DuplicateId(NodeId),
    /// An address is not `host:port` (a non-empty host, a u16 port, at most
    /// 255 characters).
    #[error("{field}: {value} is not host:port")]
    HostPort {
        /// The field: `members.raft` or `members.api`.
        field: String,
        /// The address as written.
        value: String,
    },
    /// A member's Raft address (given) is not on loopback, and the file has
    /// no `[tls]` section.
    #[error(
        "members.raft: {0} is not a loopback address: nodes talk over mutual TLS off loopback; add a [tls] section"
    )]
    RaftOffLoopback(String),
    /// A member's `audit_vkey` is not a verifier key.
    #[error("members.audit_vkey: member {member}: {source}")]
    AuditVkey {
        /// The member's id.
        member: NodeId,
        /// Why the key does not parse.
        source: crate::audit::checkpoint::NoteError,
    },
    /// No `node_id`, and the host name (given) does not end in `-N`.
    #[error("node_id: not set, and the host name {0:?} does not end in a StatefulSet ordinal (-N)")]
    NoOrdinal(String),
    /// This node's id (given or derived) is not among the members.
    #[error("node_id: {0} is not among the members")]
    NotMember(NodeId),
    /// `seed = true` on a node (this id) that is not the lowest member id.
    #[error("seed: only the member with the lowest id seeds a cluster, not node {0}")]
    Seed(NodeId),
    /// `[snapshots] every` (given) is outside [`SNAPSHOT_EVERY_RANGE`].
    #[error("snapshots.every: {0} is outside {start}..={end}", start = SNAPSHOT_EVERY_RANGE.start(), end = SNAPSHOT_EVERY_RANGE.end())]
    SnapshotEvery(u64),
    /// `[snapshots] keep` (given) is above [`SNAPSHOT_KEEP_MAX`].
    #[error("snapshots.keep: {0} is more than {SNAPSHOT_KEEP_MAX}")]
    SnapshotKeep(u64),
    /// `[raft] heartbeat_ms` (given) is outside [`HEARTBEAT_RANGE_MS`].
    #[error("raft.heartbeat_ms: {0} is outside {start}..={end}", start = HEARTBEAT_RANGE_MS.start(), end = HEARTBEAT_RANGE_MS.end())]
    Heartbeat(u64),
    /// `[raft] election_min_ms` is below three heartbeats.
    #[error("raft.election_min_ms: {min} is less than three heartbeats ({three_heartbeats} ms)")]
    ElectionMin {
        /// `election_min_ms` as given (or defaulted).
        min: u64,
        /// Three times `heartbeat_ms`: the least allowed.
        three_heartbeats: u64,
    },
    /// `[raft] election_max_ms` is not above `election_min_ms`, or is above
    /// [`ELECTION_MAX_MS`].
    #[error(
        "raft.election_max_ms: {max} must be above election_min_ms ({min}) and at most {ELECTION_MAX_MS}"
    )]
    ElectionMax {
        /// `election_max_ms` as given (or defaulted).
        max: u64,
        /// `election_min_ms` as given (or defaulted).
        min: u64,
    },
}

/// `host:port` with a port number and a host.
pub fn check_host_port(field: &str, value: &str) -> Result<(), FieldError> {
    match value.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() && value.len() <= 255 => Ok(()),
        _ => Err(FieldError::HostPort {
            field: field.to_string(),
            value: value.to_string(),
        }),
    }
}

/// Whether `host:port` names a loopback address (an IP, or `localhost`).
fn on_loopback(value: &str) -> bool {
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return is_loopback(&addr);
    }
    value
        .rsplit_once(':')
        .is_some_and(|(host, _)| host == "localhost")
}

/// Node id from a StatefulSet pod's host name: its ordinal (`name-N`) plus one.
fn ordinal_node_id() -> Result<NodeId, FieldError> {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .unwrap_or_default();
    let host = host.trim();
    host.rsplit_once('-')
        .and_then(|(_, n)| n.parse::<NodeId>().ok())
        .map(|n| n + 1)
        .ok_or_else(|| FieldError::NoOrdinal(host.to_string()))
}

/// A checked cluster file.
#[derive(Clone, Debug)]
pub struct ClusterFile {
    /// This node's id: `node_id`, else the StatefulSet ordinal of the host
    /// name plus one. Always one of `members`.
    pub node_id: NodeId,
    /// Every member by id (ordered).
    pub members: BTreeMap<NodeId, Member>,
    /// This node's certificate, key and the cluster CA, relative paths resolved against the file's folder.
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
    /// Raft entries between two snapshots.
    pub snapshot_every: u64,
    /// Raft entries kept before a snapshot's index when the log is purged.
    pub snapshot_keep: u64,
    /// Heartbeat and election timeouts.
    pub timing: RaftTiming,
    /// This node's existing single-node store seeds a new cluster (only
    /// the lowest id, only while its Raft state is empty): docs/CLUSTER.md.
    pub seed: bool,
    /// Members' audit verifier keys where the file pins them: a snapshot
    /// built by such a member must carry a checkpoint signed with it.
    pub audit_vkeys: BTreeMap<NodeId, String>,
}

impl ClusterFile {
    /// Reads and checks a cluster file; errors name the field.
    pub fn load(path: &Path) -> Result<ClusterFile, ClusterFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ClusterFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        ClusterFile::parse(&text, base).map_err(|source| ClusterFileError::Invalid {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Parses the text of a cluster file (paths relative to `base`).
    pub fn parse(text: &str, base: &Path) -> Result<ClusterFile, FieldError> {
        let raw: Raw = toml::from_str(text)?;
        if raw.members.is_empty() || raw.members.len() > MEMBERS_MAX {
            return Err(FieldError::MemberCount);
        }
        let mut members = BTreeMap::new();
        let mut audit_vkeys = BTreeMap::new();
        for m in raw.members {
            if m.id == 0 {
                return Err(FieldError::ZeroId);
            }
            check_host_port("members.raft", &m.raft)?;
            check_host_port("members.api", &m.api)?;
            if raw.tls.is_none() && !on_loopback(&m.raft) {
                return Err(FieldError::RaftOffLoopback(m.raft));
            }
            if let Some(vkey) = &m.audit_vkey {
                crate::audit::checkpoint::Verifier::parse(vkey)
                    .map_err(|source| FieldError::AuditVkey { member: m.id, source })?;
                audit_vkeys.insert(m.id, vkey.trim().to_string());
            }
            if members
                .insert(
                    m.id,
                    Member {
                        raft: m.raft,
                        api: m.api,
                    },
                )
                .is_some()
            {
                return Err(FieldError::DuplicateId(m.id));
            }
        }
        let node_id = match raw.node_id {
            Some(id) => id,
            None => ordinal_node_id()?,
        };
        if !members.contains_key(&node_id) {
            return Err(FieldError::NotMember(node_id));
        }
        if raw.seed && members.keys().next() != Some(&node_id) {
            return Err(FieldError::Seed(node_id));
        }
        let snapshots = raw.snapshots.unwrap_or(RawSnapshots {
            every: None,
            keep: None,
        });
        let snapshot_every = snapshots.every.unwrap_or(SNAPSHOT_EVERY_DEFAULT);
        if !SNAPSHOT_EVERY_RANGE.contains(&snapshot_every) {
            return Err(FieldError::SnapshotEvery(snapshot_every));
        }
        let snapshot_keep = snapshots.keep.unwrap_or(SNAPSHOT_KEEP_DEFAULT);
        if snapshot_keep > SNAPSHOT_KEEP_MAX {
            return Err(FieldError::SnapshotKeep(snapshot_keep));
        }
        let defaults = RaftTiming::default();
        let timing = match raw.raft {
            None => defaults,
            Some(r) => RaftTiming {
                heartbeat_ms: r.heartbeat_ms.unwrap_or(defaults.heartbeat_ms),
                election_min_ms: r.election_min_ms.unwrap_or(defaults.election_min_ms),
                election_max_ms: r.election_max_ms.unwrap_or(defaults.election_max_ms),
            },
        };
        if !HEARTBEAT_RANGE_MS.contains(&timing.heartbeat_ms) {
            return Err(FieldError::Heartbeat(timing.heartbeat_ms));
        }
        if timing.election_min_ms < 3 * timing.heartbeat_ms {
            return Err(FieldError::ElectionMin {
                min: timing.election_min_ms,
                three_heartbeats: 3 * timing.heartbeat_ms,
            });
        }
        if timing.election_max_ms <= timing.election_min_ms || timing.election_max_ms > ELECTION_MAX_MS {
            return Err(FieldError::ElectionMax {
                max: timing.election_max_ms,
                min: timing.election_min_ms,
            });
        }
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        Ok(ClusterFile {
            timing,
            node_id,
            members,
            tls: raw.tls.map(|t| (resolve(t.cert), resolve(t.key), resolve(t.ca))),
            snapshot_every,
            snapshot_keep,
            audit_vkeys,
            seed: raw.seed,
        })
    }

    /// This node's member entry.
    pub fn me(&self) -> &Member {
        &self.members[&self.node_id]
    }

    /// The Raft service's TLS (client certificates required) and the peers' client TLS.
    #[allow(clippy::type_complexity)]
    pub fn tls_configs(
        &self,
    ) -> Result<
        (
            Option<tonic::transport::ServerTlsConfig>,
            Option<tonic::transport::ClientTlsConfig>,
        ),
        crate::auth::tls::TlsError,
    > {
        let Some((cert, key, ca)) = &self.tls else {
            return Ok((None, None));
        };
        let server = ServerTls {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: Some(ca.clone()),
            client_cert_required: true,
        }
        .config()?;
        let client = ClientTls {
            ca: Some(ca.clone()),
            identity: Some((cert.clone(), key.clone())),
            domain: None,
        }
        .config()?;
        Ok((Some(server), Some(client)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMBERS: &str = "[[members]]\nid = 1\nraft = \"127.0.0.1:7101\"\napi = \"127.0.0.1:7001\"\n\
                           [[members]]\nid = 2\nraft = \"127.0.0.1:7102\"\napi = \"127.0.0.1:7002\"\n";

    #[test]
    fn a_loopback_cluster_needs_no_tls() {
        let f = ClusterFile::parse(&format!("node_id = 2\n{MEMBERS}"), Path::new("/etc")).unwrap();
        assert_eq!(f.node_id, 2);
        assert_eq!(f.me().api, "127.0.0.1:7002");
        assert!(f.tls.is_none());
    }

    #[test]
    fn off_loopback_nodes_need_tls_and_relative_paths_resolve() {
        let members = "[[members]]\nid = 1\nraft = \"registry-0.registry-headless:7100\"\napi = \"registry-0.registry-headless:50051\"\n";
        let e = ClusterFile::parse(&format!("node_id = 1\n{members}"), Path::new("/etc"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("members.raft:"), "{e}");
        let text =
            format!("node_id = 1\n[tls]\ncert = \"n.pem\"\nkey = \"n.key\"\nca = \"/ca.pem\"\n{members}");
        let f = ClusterFile::parse(&text, Path::new("/etc/registry")).unwrap();
        let (cert, _, ca) = f.tls.unwrap();
        assert_eq!(cert, Path::new("/etc/registry/n.pem"));
        assert_eq!(ca, Path::new("/ca.pem"));
    }

    #[test]
    fn mistakes_name_their_field() {
        let cases = [
            (format!("node_id = 3\n{MEMBERS}"), "node_id:"),
            (
                format!(
                    "node_id = 1\n{MEMBERS}{}",
                    MEMBERS
                        .split("[[members]]")
                        .nth(1)
                        .map(|m| format!("[[members]]{m}"))
                        .unwrap()
                ),
                "members.id:",
            ),
            (
                "node_id = 1\n[[members]]\nid = 1\nraft = \"127.0.0.1\"\napi = \"127.0.0.1:1\"\n".to_string(),
                "members.raft:",
            ),
            (
                "node_id = 1\n[[members]]\nid = 0\nraft = \"127.0.0.1:1\"\napi = \"127.0.0.1:2\"\n"
                    .to_string(),
                "members.id:",
            ),
            ("node_id = 1\n".to_string(), "missing field"),
            (format!("node_id = 1\n[snapshots]\nevery = 1\n{MEMBERS}"), "snapshots.every:"),
            (format!("node_id = 1\n[raft]\nheartbeat_ms = 200\n{MEMBERS}"), "raft.election_min_ms:"),
            (
                format!("node_id = 1\n[raft]\nelection_min_ms = 900\nelection_max_ms = 800\n{MEMBERS}"),
                "raft.election_max_ms:",
            ),
            (format!("node_id = 1\n[raft]\nheartbeat_ms = 5\n{MEMBERS}"), "raft.heartbeat_ms:"),
            (
                "node_id = 1\n[[members]]\nid = 1\nraft = \"127.0.0.1:1\"\napi = \"127.0.0.1:2\"\naudit_vkey = \"x\"\n"
                    .to_string(),
                "members.audit_vkey:",
            ),
        ];
        for (text, field) in cases {
            let e = ClusterFile::parse(&text, Path::new(".")).unwrap_err().to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
    }
}
