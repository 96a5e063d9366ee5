//! Node-to-node Raft traffic over tonic: service `regularization.cluster.v1.Raft`
//! (proto/regularization/cluster/v1/raft.proto), each message a postcard body.

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tonic::{Request, Response, Status};

use super::types::{decode, encode, Member, NodeId, Raft, TypeConfig};

pub mod pb {
    //! The generated client, server and message of
    //! `regularization.cluster.v1.Raft` (a `RaftMessage` carries one
    //! postcard-encoded openraft request or reply).
    tonic::include_proto!("regularization.cluster.v1");
}

use pb::raft_client::RaftClient;
use pb::RaftMessage;

/// Largest node-to-node message, either way (a batch of Raft entries).
pub const RAFT_MESSAGE_BYTES_MAX: usize = 64 << 20;
/// How long a snapshot chunk other than the last may take.
pub const SNAPSHOT_CHUNK_TIMEOUT_MS: u64 = 20_000;

/// Makes a client per peer.
#[derive(Clone)]
pub struct Network {
    /// Client TLS to the peers (mutual TLS from the cluster file's `[tls]`);
    /// `None`: plaintext, allowed only on loopback.
    pub tls: Option<tonic::transport::ClientTlsConfig>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Peer {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let channel = tonic::transport::Endpoint::from_shared(format!("{scheme}://{}", node.raft))
            .map(|e| {
                e.connect_timeout(std::time::Duration::from_millis(500))
                    .tcp_nodelay(true)
            })
            .and_then(|e| match &self.tls {
                Some(tls) => e.tls_config(tls.clone()),
                None => Ok(e),
            })
            .map(|e| e.connect_lazy());
        let client = channel.ok().map(|c| {
            RaftClient::new(c)
                .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX)
        });
        Peer { target, client }
    }
}

/// The client of one peer.
pub struct Peer {
    target: NodeId,
    client: Option<RaftClient<tonic::transport::Channel>>,
}

type RpcErr<E> = RPCError<NodeId, Member, RaftError<NodeId, E>>;

impl Peer {
    async fn call<Req, Resp, E>(
        &mut self,
        which: &'static str,
        req: &Req,
        timeout: std::time::Duration,
    ) -> Result<Resp, RpcErr<E>>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        E: std::error::Error + serde::de::DeserializeOwned,
    {
        let Some(client) = self.client.as_mut() else {
            let e = std::io::Error::other("the peer's raft address is not a valid URI");
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        };
        let body = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut request = Request::new(RaftMessage { body });
        request.set_timeout(timeout);
        let answer = match which {
            "append" => client.append_entries(request).await,
            "vote" => client.vote(request).await,
            _ => client.install_snapshot(request).await,
        };
        let answer = answer.map_err(|s| {
            let e = std::io::Error::other(format!("{}: {}", s.code(), s.message()));
            RPCError::Unreachable(Unreachable::new(&e))
        })?;
        let result: Result<Resp, RaftError<NodeId, E>> =
            decode(&answer.into_inner().body).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        self.call("append", &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        // A chunk is written to a file; only the last one waits for the
        // receiver to verify and install the whole snapshot.
        let timeout = if rpc.done {
            option.hard_ttl()
        } else {
            option
                .hard_ttl()
                .min(std::time::Duration::from_millis(SNAPSHOT_CHUNK_TIMEOUT_MS))
        };
        self.call("snapshot", &rpc, timeout).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr<openraft::error::Infallible>> {
        self.call("vote", &rpc, option.hard_ttl()).await
    }
}

/// Cosigns the leader's checkpoints on this node (src/cluster/cosign.rs).
pub trait Cosigner: Send + Sync {
    /// This node's cosignature line over `note`, or why not.
    fn cosign(&self, note: &str) -> Result<String, super::cosign::CosignError>;
}

/// Why a member gave no cosignature.
#[derive(Debug, thiserror::Error)]
pub enum CosignRequestError {
    /// The member's Raft address could not be reached (or its endpoint or
    /// TLS settings were refused).
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
    /// The member answered with an error (e.g. its audit service is
    /// starting, or its cosigner refused the note).
    #[error("{:?}: {}", .0.code(), .0.message())]
    Refused(Status),
    /// The member's answer is not UTF-8 text.
    #[error(transparent)]
    NotUtf8(#[from] std::string::FromUtf8Error),
}

/// Where the Raft service finds this node's cosigner once audit runs.
pub type CosignerSlot = std::sync::Arc<std::sync::OnceLock<std::sync::Arc<dyn Cosigner>>>;

/// The Raft service a node serves to its peers.
pub struct RaftService {
    /// This node's Raft, which answers the peers' Raft requests.
    pub raft: Raft,
    /// This node's cosigner, set once its audit part runs (until then
    /// cosignature requests are answered UNAVAILABLE).
    pub cosigner: CosignerSlot,
}

fn body<T: serde::de::DeserializeOwned>(request: Request<RaftMessage>) -> Result<T, Status> {
    decode(&request.into_inner().body)
        .map_err(|e| Status::invalid_argument(format!("undecodable Raft message: {e}")))
}

fn reply<T: serde::Serialize>(value: &T) -> Result<Response<RaftMessage>, Status> {
    encode(value)
        .map(|body| Response::new(RaftMessage { body }))
        .map_err(|e| Status::internal(format!("encoding a Raft reply: {e}")))
}

#[tonic::async_trait]
impl pb::raft_server::Raft for RaftService {
    async fn append_entries(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let req: AppendEntriesRequest<TypeConfig> = body(request)?;
        reply(&self.raft.append_entries(req).await)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let req: VoteRequest<NodeId> = body(request)?;
        reply(&self.raft.vote(req).await)
    }

    async fn install_snapshot(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let req: InstallSnapshotRequest<TypeConfig> = body(request)?;
        reply(&self.raft.install_snapshot(req).await)
    }

    async fn cosign(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let note = String::from_utf8(request.into_inner().body)
            .map_err(|_| Status::invalid_argument("the checkpoint note is not UTF-8"))?;
        if note.len() > crate::limits::AUDIT_NOTE_BYTES_MAX {
            return Err(Status::invalid_argument("the checkpoint note is too large"));
        }
        let Some(cosigner) = self.cosigner.get().cloned() else {
            return Err(Status::unavailable("this node's audit service is starting"));
        };
        let line = tokio::task::spawn_blocking(move || cosigner.cosign(&note))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::failed_precondition(e.to_string()))?;
        Ok(Response::new(RaftMessage {
            body: line.into_bytes(),
        }))
    }
}

/// Asks `member` to cosign `note`; its cosignature line.
pub async fn request_cosignature(
    member: &Member,
    tls: Option<tonic::transport::ClientTlsConfig>,
    note: &str,
) -> Result<String, CosignRequestError> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = tonic::transport::Endpoint::from_shared(format!("{scheme}://{}", member.raft))?
        .connect_timeout(std::time::Duration::from_millis(500))
        .timeout(std::time::Duration::from_secs(5));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls)?;
    }
    let channel = endpoint.connect().await?;
    let answer = RaftClient::new(channel)
        .cosign(RaftMessage {
            body: note.as_bytes().to_vec(),
        })
        .await
        .map_err(CosignRequestError::Refused)?;
    Ok(String::from_utf8(answer.into_inner().body)?)
}

/// The tonic server of [`RaftService`], with the message limit.
pub fn server(raft: Raft, cosigner: CosignerSlot) -> pb::raft_server::RaftServer<RaftService> {
    pb::raft_server::RaftServer::new(RaftService { raft, cosigner })
        .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX)
}
