//! `registry cluster status`: a node's view of its cluster, through Admin/ClusterStatus.

use std::path::PathBuf;
use std::time::Duration;

use crate::api::pb;

/// `registry cluster …`
#[derive(clap::Subcommand, Debug)]
pub enum ClusterCommand {
    /// One node's view of its cluster: its role, the leader, Raft positions,
    /// the members and the log head it applied (Admin/ClusterStatus; an
    /// admin token).
    Status(StatusArgs),
}

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The node asked: `http://host:port` (or `https://` with --tls-ca).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub target: String,
    /// Admin bearer token file (default: $REGISTRY_TOKEN).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    #[command(flatten)]
    pub tls: crate::client::TlsArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs a `registry cluster` command.
pub async fn run(command: ClusterCommand) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        ClusterCommand::Status(args) => status(args).await,
    }
}

async fn status(args: StatusArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut options = crate::client::ClientOptions::new(&args.target, args.token_file.as_deref())?;
    options.tls = args.tls.for_target(&args.target)?;
    let channel = crate::client::connect(&options, Duration::from_secs(5)).await?;
    let s = pb::admin_client::AdminClient::new(channel)
        .cluster_status(pb::ClusterStatusRequest {})
        .await
        .map_err(|e| format!("ClusterStatus: {:?}: {}", e.code(), e.message()))?
        .into_inner();
    let head_hash = crate::hex::encode(&s.head_hash);
    if args.json {
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
    println!("log head: seq {} hash {head_hash}", s.head_seq);
    for m in &s.members {
        println!("member {}: api {} raft {}", m.id, m.api_address, m.raft_address);
    }
    Ok(())
}
