//! The cluster file of `registry serve --cluster FILE` (docs/CLUSTER.md):
//!
//! ```toml
//! node_id = 1                      # this node
//! [tls]                            # mutual TLS between nodes (required off loopback)
//! cert = "node1.pem"               # this node's certificate (client and server)
//! key = "node1.key"
//! ca = "cluster-ca.pem"            # the CA that signs every node's certificate
//! [[members]]
//! id = 1
//! raft = "10.0.0.1:7100"           # node-to-node Raft traffic
//! api = "10.0.0.1:50051"           # clients (what a follower names as the leader)
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::types::{Member, NodeId};
use crate::auth::tls::{is_loopback, ClientTls, ServerTls};

/// Most members a cluster file may list.
pub const MEMBERS_MAX: usize = 7;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    node_id: NodeId,
    #[serde(default)]
    tls: Option<RawTls>,
    members: Vec<RawMember>,
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
}

/// A checked cluster file.
#[derive(Clone, Debug)]
pub struct ClusterFile {
    pub node_id: NodeId,
    /// Every member by id (ordered).
    pub members: BTreeMap<NodeId, Member>,
    /// This node's certificate, key and the cluster CA, relative paths resolved against the file's folder.
    pub tls: Option<(PathBuf, PathBuf, PathBuf)>,
}

impl ClusterFile {
    /// Reads and checks a cluster file; errors name the field.
    pub fn load(path: &Path) -> Result<ClusterFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        ClusterFile::parse(&text, base).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses the text of a cluster file (paths relative to `base`).
    pub fn parse(text: &str, base: &Path) -> Result<ClusterFile, String> {
        let raw: Raw = toml::from_str(text).map_err(|e| e.to_string())?;
        if raw.members.is_empty() || raw.members.len() > MEMBERS_MAX {
            return Err(format!("members: 1 to {MEMBERS_MAX} members are allowed"));
        }
        let mut members = BTreeMap::new();
        for m in raw.members {
            if m.id == 0 {
                return Err("members.id: ids start at 1".into());
            }
            let raft: SocketAddr = m
                .raft
                .parse()
                .map_err(|_| format!("members.raft: {} is not host:port", m.raft))?;
            let _: SocketAddr = m
                .api
                .parse()
                .map_err(|_| format!("members.api: {} is not host:port", m.api))?;
            if raw.tls.is_none() && !is_loopback(&raft) {
                return Err(format!(
                    "members.raft: {raft} is not a loopback address: nodes talk over mutual TLS off loopback; add a [tls] section"
                ));
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
                return Err(format!("members.id: {} appears twice", m.id));
            }
        }
        if !members.contains_key(&raw.node_id) {
            return Err(format!("node_id: {} is not among the members", raw.node_id));
        }
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        Ok(ClusterFile {
            node_id: raw.node_id,
            members,
            tls: raw.tls.map(|t| (resolve(t.cert), resolve(t.key), resolve(t.ca))),
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
        String,
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
