//! The Admin service: tokens and master-key rotation (admin role only; the
//! auth layer enforces it).

use std::path::PathBuf;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::pb;
use super::status::invalid_argument;
use crate::auth::access_file::{self, AccessError, Grant};
use crate::auth::{AccessControl, Role};
use crate::cases::Cases;

/// The admin service.
#[derive(Clone)]
pub struct AdminService {
    access: Arc<AccessControl>,
    cases: Cases,
    backup: crate::backup::service::BackupSource,
    /// This node's Raft, on a cluster node.
    cluster: Option<crate::cluster::types::Raft>,
    /// This node's cosigner verifier key, on a cluster node.
    cosigner_vkey: Option<String>,
}

impl AdminService {
    /// An admin service on a single node: `access` is the server's view of
    /// the access file whose tokens it manages; `checkpointer` signs the
    /// checkpoint a backup is taken at.
    /// [`AdminService::with_cluster`] adds a cluster node's Raft.
    pub fn new(
        access: Arc<AccessControl>,
        cases: Cases,
        checkpointer: crate::audit::checkpoint::Checkpointer,
    ) -> AdminService {
        let backup = crate::backup::service::BackupSource::new(
            cases.clone(),
            checkpointer,
            access.path().to_path_buf(),
        );
        AdminService {
            access,
            cases,
            backup,
            cluster: None,
            cosigner_vkey: None,
        }
    }

    /// On a cluster node: answers ClusterStatus from this node's Raft.
    pub fn with_cluster(
        mut self,
        raft: Option<crate::cluster::types::Raft>,
        cosigner_vkey: Option<String>,
    ) -> AdminService {
        self.cluster = raft;
        self.cosigner_vkey = cosigner_vkey;
        self
    }

    /// Wraps the service for tonic (messages at most
    /// [`crate::limits::GRPC_MESSAGE_BYTES_MAX`] in,
    /// [`crate::limits::GRPC_RESPONSE_BYTES_MAX`] out).
    pub fn into_server(self) -> pb::admin_server::AdminServer<Self> {
        pb::admin_server::AdminServer::new(self)
            .max_decoding_message_size(crate::limits::GRPC_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(crate::limits::GRPC_RESPONSE_BYTES_MAX)
    }

    /// This node's Raft, or FAILED_PRECONDITION NOT_A_CLUSTER on a single node.
    fn raft(&self) -> Result<&crate::cluster::types::Raft, Status> {
        self.cluster.as_ref().ok_or_else(|| {
            super::status::failed_precondition(
                "NOT_A_CLUSTER",
                "cluster",
                "this server is a single node (started without --cluster)",
            )
        })
    }

    fn path(&self) -> PathBuf {
        self.access.path().to_path_buf()
    }
}

fn membership_status(e: crate::cluster::MembershipError) -> Status {
    match e {
        crate::cluster::MembershipError::NotLeader { leader } => super::status::not_leader(leader.as_deref()),
        crate::cluster::MembershipError::Refused(m) => {
            super::status::failed_precondition("MEMBERSHIP", "cluster", &m)
        }
    }
}

fn access_status(e: AccessError) -> Status {
    match e {
        // The fields were validated one by one before; what the file still
        // refuses concerns the grant as a whole.
        AccessError::Rejected(m) => invalid_argument("grant", &m),
        e @ AccessError::Full { .. } => super::status::limit_exceeded("tokens", &e.to_string()),
        other => {
            tracing::error!(error = %other, "access file change failed");
            Status::internal("internal error")
        }
    }
}

/// Parses department codes ("05", "11").
pub fn departments(codes: &[String], field: &str) -> Result<Vec<u8>, Status> {
    if codes.len() > 40 {
        return Err(invalid_argument(field, "at most 40 departments"));
    }
    codes
        .iter()
        .map(|c| {
            crate::domain::Department::parse(c)
                .map(|d| d.code())
                .ok_or_else(|| invalid_argument(field, "not a two-digit DIVIPOLA department code"))
        })
        .collect()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Status::internal("internal error"))?
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn add_token(
        &self,
        r: Request<pb::AddTokenRequest>,
    ) -> Result<Response<pb::AddTokenResponse>, Status> {
        let admin = crate::auth::principal(&r)?;
        let m = r.into_inner();
        let role = Role::parse(&m.role).ok_or_else(|| {
            invalid_argument(
                "role",
                "one of caseworker, supervisor, statistician, auditor, admin",
            )
        })?;
        if !crate::auth::valid_code(&m.principal) {
            return Err(invalid_argument(
                "principal",
                "1..64 printable characters without spaces",
            ));
        }
        if !crate::auth::valid_code(&m.office) {
            return Err(invalid_argument(
                "office",
                "1..64 printable characters without spaces",
            ));
        }
        let departments = departments(&m.departments, "departments")?;
        if m.expires_at != 0 && m.expires_at <= access_file::now_s() {
            return Err(invalid_argument(
                "expires_at",
                "must be in the future (or 0 for no expiry)",
            ));
        }
        let grant = Grant {
            principal: m.principal,
            role,
            office: m.office,
            departments,
            expires_at: (m.expires_at != 0).then_some(m.expires_at),
        };
        let path = self.path();
        let new = blocking(move || access_file::add_token(&path, &grant).map_err(access_status)).await?;
        self.access.refresh(true);
        tracing::info!(admin = %admin.id, token_id = %new.id, role = %role, "token added");
        Ok(Response::new(pb::AddTokenResponse {
            token_id: new.id,
            token: new.token,
        }))
    }

    async fn revoke_token(
        &self,
        r: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let admin = crate::auth::principal(&r)?;
        let id = r.into_inner().token_id;
        if !crate::auth::valid_code(&id) {
            return Err(invalid_argument("token_id", "not a token id"));
        }
        let path = self.path();
        let id2 = id.clone();
        let found = blocking(move || access_file::revoke_token(&path, &id2).map_err(access_status)).await?;
        if !found {
            return Err(Status::not_found("no token with this id"));
        }
        self.access.refresh(true);
        let file = access_file::AccessFile::load(self.access.path()).map_err(access_status)?;
        let revoked_at = file
            .tokens
            .iter()
            .find(|t| t.id == id)
            .and_then(|t| t.revoked_at)
            .unwrap_or(0);
        tracing::info!(admin = %admin.id, token_id = %id, "token revoked");
        Ok(Response::new(pb::RevokeTokenResponse { revoked_at }))
    }

    async fn list_tokens(
        &self,
        _r: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let path = self.path();
        let file = blocking(move || access_file::AccessFile::load(&path).map_err(access_status)).await?;
        Ok(Response::new(pb::ListTokensResponse {
            tokens: file
                .tokens
                .into_iter()
                .map(|t| pb::TokenInfo {
                    token_id: t.id,
                    principal: t.principal,
                    role: t.role.to_string(),
                    office: t.office,
                    departments: t.departments.iter().map(|d| format!("{d:02}")).collect(),
                    created_at: t.created_at,
                    expires_at: t.expires_at.unwrap_or(0),
                    revoked_at: t.revoked_at.unwrap_or(0),
                })
                .collect(),
        }))
    }

    async fn rotate_master_key(
        &self,
        r: Request<pb::RotateMasterKeyRequest>,
    ) -> Result<Response<pb::RotateMasterKeyResponse>, Status> {
        let admin = crate::auth::principal(&r)?;
        if self.cluster.is_some() {
            // Re-wrapping here would change this node's wrapped keys only.
            return Err(super::status::failed_precondition(
                "CLUSTER",
                "cluster",
                "online master-key rotation is not supported on a cluster node: stop every node and run `registry keys rotate` on each store with the same new key (docs/CLUSTER.md)",
            ));
        }
        let m = r.into_inner();
        if m.new_key_file.is_empty() || m.new_key_file.len() > 4096 {
            return Err(invalid_argument("new_key_file", "required: a path on the server"));
        }
        let new_master = crate::pii::MasterKey::load(&m.new_key_file)
            .map_err(|e| invalid_argument("new_key_file", &e.to_string()))?;
        let cases = self.cases.clone();
        let (rewrapped, id) = blocking(move || {
            let n = cases.rotate_master_key(new_master).map_err(Status::from)?;
            Ok((n, cases.master_key_id()))
        })
        .await?;
        tracing::warn!(admin = %admin.id, rewrapped, master_key_id = %id,
            "master key rotated: configure the new key file for the next start, then destroy the old key");
        Ok(Response::new(pb::RotateMasterKeyResponse {
            rewrapped: rewrapped as u64,
            master_key_id: id,
        }))
    }

    type BackupStream = std::pin::Pin<
        Box<dyn tonic::codegen::tokio_stream::Stream<Item = Result<pb::BackupPart, Status>> + Send + 'static>,
    >;

    async fn cluster_add_member(
        &self,
        r: Request<pb::ClusterAddMemberRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let raft = self.raft()?;
        let m = r.into_inner();
        if m.id == 0 {
            return Err(invalid_argument("id", "node ids start at 1"));
        }
        crate::cluster::file::check_host_port("raft_address", &m.raft_address)
            .map_err(|e| invalid_argument("raft_address", &e.to_string()))?;
        crate::cluster::file::check_host_port("api_address", &m.api_address)
            .map_err(|e| invalid_argument("api_address", &e.to_string()))?;
        let member = crate::cluster::types::Member {
            raft: m.raft_address,
            api: m.api_address,
        };
        crate::cluster::add_member(raft, m.id, member)
            .await
            .map_err(membership_status)?;
        self.cluster_status(Request::new(pb::ClusterStatusRequest {}))
            .await
    }

    async fn cluster_remove_member(
        &self,
        r: Request<pb::ClusterRemoveMemberRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let raft = self.raft()?;
        let id = r.into_inner().id;
        if id == 0 {
            return Err(invalid_argument("id", "node ids start at 1"));
        }
        crate::cluster::remove_member(raft, id)
            .await
            .map_err(membership_status)?;
        self.cluster_status(Request::new(pb::ClusterStatusRequest {}))
            .await
    }

    async fn cluster_status(
        &self,
        _r: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        let raft = self.raft()?;
        let s = crate::cluster::status_of(raft);
        let head = self
            .cases
            .store()
            .head()
            .map_err(|e| Status::internal(format!("reading the head: {e}")))?;
        Ok(Response::new(pb::ClusterStatusResponse {
            node_id: s.node_id,
            state: s.state.to_uppercase(),
            term: s.term,
            leader_id: s.leader.unwrap_or(0),
            leader_api_address: s.leader_api.unwrap_or_default(),
            last_log_index: s.last_log_index.unwrap_or(0),
            last_applied_index: s.last_applied_index.unwrap_or(0),
            members: s
                .members
                .into_iter()
                .map(|(id, m)| pb::ClusterMember {
                    id,
                    raft_address: m.raft,
                    api_address: m.api,
                })
                .collect(),
            head_seq: head.seq,
            head_hash: head.hash.to_vec(),
            cosigner_vkey: self.cosigner_vkey.clone().unwrap_or_default(),
            snapshot_index: s.snapshot_index.unwrap_or(0),
            purged_index: s.purged_index.unwrap_or(0),
        }))
    }

    async fn backup(&self, r: Request<pb::BackupRequest>) -> Result<Response<Self::BackupStream>, Status> {
        let admin = crate::auth::principal(&r)?;
        let rx = self.backup.start(&admin.id, r.into_inner()).await?;
        Ok(Response::new(Box::pin(
            tonic::codegen::tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
