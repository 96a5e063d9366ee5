//! `registry cluster status`: a node's view of its cluster, through Admin/ClusterStatus.

use std::path::PathBuf;
use std::time::Duration;

use crate::api::pb;

/// `registry cluster …` (an admin token; `--target` may list every node:
/// add and remove follow the leader.)
#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// One node's view of its cluster: its role, the leader, Raft positions,
    /// the members and the log head it applied (Admin/ClusterStatus; an
    /// admin token).
    Status(StatusArgs),
    /// Add a node (started on an empty data directory with a cluster file
    /// that lists it): it joins as a learner, receives the whole log, then
    /// votes (Admin/ClusterAddMember; returns once it caught up).
    Add {
        /// The node(s) to ask and how.
        #[command(flatten)]
        node: StatusArgs,
        /// The new node's id.
        #[arg(long)]
        id: u64,
        /// Its Raft address, host:port.
        #[arg(long)]
        raft: String,
        /// Its client address, host:port.
        #[arg(long)]
        api: String,
    },
    /// Check the cosignatures on a checkpoint note (C2SP tlog-cosignature v1,
    /// docs/AUDIT.md §2b) with each cosigner's verifier key: exit 0 only if
    /// every key named has a valid cosignature on it. Works offline.
    VerifyCosignatures {
        /// The checkpoint note (a file, as Audit/GetCheckpoint serves it).
        #[arg(long)]
        checkpoint: PathBuf,
        /// A cosigner verifier key (`<name>+<key id>+<base64(0x04 || key)>`); repeat for each node.
        #[arg(long = "cosigner", required = true)]
        cosigners: Vec<String>,
    },
    /// Verify a snapshot file (`DATA_DIR/snapshots/current.snap`) as a
    /// receiving node does before it uses one: its BLAKE3, every chain link
    /// from the genesis, the Merkle root against its signed checkpoint, the
    /// head (docs/CLUSTER.md, "Snapshots"). Works offline; exit 0 only if it verifies.
    VerifySnapshot {
        /// The snapshot file.
        #[arg(long)]
        file: PathBuf,
        /// The audit verifier key the snapshot's checkpoint must be signed
        /// with (as `audit_vkey` pins it in a cluster file); without it, the key the snapshot names.
        #[arg(long)]
        key: Option<String>,
    },
    /// Remove a node from the voters and the members (Admin/ClusterRemoveMember).
    Remove {
        /// The node(s) to ask and how.
        #[command(flatten)]
        node: StatusArgs,
        /// The node's id.
        #[arg(long)]
        id: u64,
    },
}

/// The node to ask (for add and remove: the nodes), the admin token, TLS
/// and the output format.
#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The node asked: `http://host:port` (or `https://` with --tls-ca); for
    /// add and remove, the nodes as a comma-separated list (they go to the leader).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub target: String,
    /// Admin bearer token file (default: $REGISTRY_TOKEN).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// TLS settings for reaching the node.
    #[command(flatten)]
    pub tls: crate::client::TlsArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `registry cluster` command.
pub async fn run(command: ClusterCommand) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        ClusterCommand::VerifyCosignatures {
            checkpoint,
            cosigners,
        } => {
            let note =
                std::fs::read_to_string(&checkpoint).map_err(|e| format!("{}: {e}", checkpoint.display()))?;
            let mut failed = Vec::new();
            for key in &cosigners {
                match crate::audit::cosign::verify(&note, key) {
                    Ok((cp, time)) => println!(
                        "cosigned: {} at tree size {} (time {time})",
                        key.split('+').next().unwrap_or(key),
                        cp.size
                    ),
                    Err(e) => failed.push(format!("{}: {e}", key.split('+').next().unwrap_or(key))),
                }
            }
            if failed.is_empty() {
                Ok(())
            } else {
                Err(format!("not cosigned: {}", failed.join("; ")).into())
            }
        }
        ClusterCommand::VerifySnapshot { file, key } => {
            let header = crate::cluster::snapshot::read_header(&file)?;
            let pinned = key
                .map(|k| [(header.built_by, k)].into_iter().collect())
                .unwrap_or_default();
            let v = crate::cluster::snapshot::verify(&file, &pinned)?;
            println!(
                "snapshot verified: Raft entry {}, built by node {}, {} records (head hash {}), {} side-tree entries, checkpoint size {} signed by {}",
                v.header.last_log_id.map_or(0, |l| l.index),
                v.header.built_by,
                v.records,
                crate::hex::encode(&v.header.head_hash),
                v.tree_entries,
                v.checkpoint_size,
                v.header.signed_by
            );
            Ok(())
        }
        ClusterCommand::Status(args) => {
            let mut admin = admin(&args).await?;
            let s = admin
                .cluster_status(pb::ClusterStatusRequest {})
                .await
                .map_err(|e| format!("ClusterStatus: {:?}: {}", e.code(), e.message()))?
                .into_inner();
            Ok(print_status(&s, args.json)?)
        }
        ClusterCommand::Add { node, id, raft, api } => {
            let admin = admin(&node).await?;
            let request = pb::ClusterAddMemberRequest {
                id,
                raft_address: raft,
                api_address: api,
            };
            let s = leader_call(|| {
                let (mut admin, request) = (admin.clone(), request.clone());
                async move { admin.cluster_add_member(request).await }
            })
            .await
            .map_err(|e| format!("ClusterAddMember: {:?}: {}", e.code(), e.message()))?;
            Ok(print_status(&s, node.json)?)
        }
        ClusterCommand::Remove { node, id } => {
            let admin = admin(&node).await?;
            let s = leader_call(|| {
                let mut admin = admin.clone();
                async move {
                    admin
                        .cluster_remove_member(pb::ClusterRemoveMemberRequest { id })
                        .await
                }
            })
            .await
            .map_err(|e| format!("ClusterRemoveMember: {:?}: {}", e.code(), e.message()))?;
            Ok(print_status(&s, node.json)?)
        }
    }
}

type Admin = pb::admin_client::AdminClient<crate::client::AuthChannel>;

async fn admin(args: &StatusArgs) -> Result<Admin, crate::client::ClientError> {
    let mut options = crate::client::ClientOptions::new(&args.target, args.token_file.as_deref())?;
    options.tls = args.tls.for_target(&args.target)?;
    let channel = crate::client::connect(&options, Duration::from_secs(5)).await?;
    Ok(pb::admin_client::AdminClient::new(channel))
}

/// Calls until a node other than a follower answers: a follower's
/// NOT_LEADER moves the channel to the leader (a few tries).
async fn leader_call<F, Fut>(call: F) -> Result<pb::ClusterStatusResponse, tonic::Status>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<pb::ClusterStatusResponse>, tonic::Status>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call().await {
            Ok(r) => return Ok(r.into_inner()),
            Err(s) if s.code() == tonic::Code::Unavailable && attempt < 5 => {
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await
            }
            Err(s) => return Err(s),
        }
    }
}

fn print_status(s: &pb::ClusterStatusResponse, json: bool) -> Result<(), serde_json::Error> {
    let head_hash = crate::hex::encode(&s.head_hash);
    if json {
        let members: Vec<serde_json::Value> = s
            .members
            .iter()
            .map(|m| serde_json::json!({"id": m.id, "raft_address": m.raft_address, "api_address": m.api_address}))
            .collect();
        let v = serde_json::json!({
            "node_id": s.node_id,
            "state": s.state,
            "term": s.term,
            "leader_id": s.leader_id,
            "leader_api_address": s.leader_api_address,
            "last_log_index": s.last_log_index,
            "last_applied_index": s.last_applied_index,
            "head_seq": s.head_seq,
            "head_hash": head_hash,
            "cosigner_vkey": s.cosigner_vkey,
            "snapshot_index": s.snapshot_index,
            "purged_index": s.purged_index,
            "members": members,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("node {} {} term {}", s.node_id, s.state, s.term);
    match s.leader_id {
        0 => println!("leader: none known"),
        id => println!("leader: node {id} ({})", s.leader_api_address),
    }
    println!(
        "raft: last log index {}, last applied {}",
        s.last_log_index, s.last_applied_index
    );
    println!(
        "snapshot: entry {}, log purged up to entry {}",
        s.snapshot_index, s.purged_index
    );
    println!("log head: seq {} hash {head_hash}", s.head_seq);
    println!("cosigner key: {}", s.cosigner_vkey);
    for m in &s.members {
        println!("member {}: api {} raft {}", m.id, m.api_address, m.raft_address);
    }
    Ok(())
}
