//! Client side of the gRPC API, shared by the tools that talk to a running
//! server (`registry simulate --target`, `registry load-test`, the import
//! client) and by the tests: one way to connect and to present credentials.
//!
//! Credentials: a bearer token sent as `authorization: Bearer <token>` on
//! every call, and/or a client certificate (mutual TLS) for `https://` targets.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

/// Environment variable a tool reads its bearer token from when no token file is named.
pub const TOKEN_ENV: &str = "REGISTRY_TOKEN";

/// Why a client could not be set up or connect.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The token file could not be read.
    #[error("cannot read token file {}: {source}", path.display())]
    TokenFile {
        /// The token file named by the tool's flag.
        path: PathBuf,
        /// The error reading it.
        source: std::io::Error,
    },
    /// The token file's first line is empty (after trimming).
    #[error("token file {} is empty", .0.display())]
    EmptyTokenFile(PathBuf),
    /// The target names no node (empty, or only commas and spaces).
    #[error("target: no address given")]
    NoTarget,
    /// A node of the target is not a valid URI.
    #[error("target {target}: {source}")]
    Target {
        /// The node, as written in the target list.
        target: String,
        /// tonic's reason.
        source: tonic::transport::Error,
    },
    /// A TLS file (CA, client certificate or key) could not be read.
    #[error(transparent)]
    Tls(#[from] crate::auth::tls::TlsError),
    /// tonic refused the TLS settings for an endpoint.
    #[error("TLS configuration: {0}")]
    TlsConfig(#[source] tonic::transport::Error),
    /// An `https://` target (given) without `--tls-ca`: this build trusts
    /// no system roots.
    #[error("{0} is an https target: name the CA that signs its certificate with --tls-ca")]
    HttpsWithoutCa(String),
    /// No node of the target could be reached within the wait.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// The first node of the target list.
        target: String,
        /// The error of the last attempt.
        source: tonic::transport::Error,
    },
    /// The token cannot be sent as `authorization` metadata (it holds
    /// characters metadata does not allow).
    #[error("the token holds characters not allowed in metadata")]
    TokenMetadata(#[source] tonic::metadata::errors::InvalidMetadataValue),
    /// The legacy actor's `user` or `office` (named) is not valid metadata.
    #[error("actor {0}: not valid metadata")]
    ActorMetadata(
        &'static str,
        #[source] tonic::metadata::errors::InvalidMetadataValue,
    ),
}

/// Where and how to connect.
#[derive(Clone, Debug, Default)]
pub struct ClientOptions {
    /// `http://host:port` or `https://host:port`; a cluster's nodes as a
    /// comma-separated list (see [`LeaderChannel`]).
    pub target: String,
    /// The bearer token (never logged).
    pub token: Option<String>,
    /// Legacy actor metadata (user id, office code); ignored by the server,
    /// which writes the authenticated principal as the actor.
    pub actor: Option<(String, String)>,
    /// TLS (required for an `https://` target): CA, optional client identity.
    pub tls: Option<crate::auth::tls::ClientTls>,
}

impl ClientOptions {
    /// Options for `target`, with the token from `token_file`, else `$REGISTRY_TOKEN`.
    pub fn new(target: &str, token_file: Option<&Path>) -> Result<ClientOptions, ClientError> {
        let token = match token_file {
            Some(path) => Some(read_token_file(path)?),
            None => std::env::var(TOKEN_ENV).ok().filter(|t| !t.trim().is_empty()),
        };
        Ok(ClientOptions {
            target: target.to_string(),
            token: token.map(|t| t.trim().to_string()),
            actor: None,
            tls: None,
        })
    }
}

/// Reads a token file (the token on its first line).
pub fn read_token_file(path: &Path) -> Result<String, ClientError> {
    let text = std::fs::read_to_string(path).map_err(|source| ClientError::TokenFile {
        path: path.to_path_buf(),
        source,
    })?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(ClientError::EmptyTokenFile(path.to_path_buf()));
    }
    Ok(token)
}

/// Adds the credentials to every call.
#[derive(Clone)]
pub struct Credentials {
    authorization: Option<MetadataValue<tonic::metadata::Ascii>>,
    actor: Option<(
        MetadataValue<tonic::metadata::Ascii>,
        MetadataValue<tonic::metadata::Ascii>,
    )>,
}

impl tonic::service::Interceptor for Credentials {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.authorization {
            request.metadata_mut().insert("authorization", value.clone());
        }
        if let Some((user, office)) = &self.actor {
            request
                .metadata_mut()
                .insert(crate::api::ACTOR_USER_HEADER, user.clone());
            request
                .metadata_mut()
                .insert(crate::api::ACTOR_OFFICE_HEADER, office.clone());
        }
        Ok(request)
    }
}

/// A channel that presents credentials on every call and follows a
/// cluster's leader.
pub type AuthChannel = InterceptedService<LeaderChannel, Credentials>;

/// A channel to one node that moves to the cluster's leader when a node
/// answers a call with the `x-registry-leader` metadata (a write sent to a
/// follower, refused with UNAVAILABLE `NOT_LEADER`, docs/CLUSTER.md): that
/// call's answer is returned as it is, and the caller's retry (with the same
/// request id) goes to the leader. When the node cannot be reached (a
/// leader that died), calls move on to the next node of the target list
/// (`--target http://a:1,http://b:2,http://c:3`), whose answer then names the
/// new leader. A single node never sends the metadata.
#[derive(Clone)]
pub struct LeaderChannel {
    current: Arc<Mutex<(String, Channel)>>,
    options: Arc<ClientOptions>,
}

/// The nodes of a target: `http://a:1` or a comma-separated list of a cluster's nodes.
pub fn targets(target: &str) -> Vec<String> {
    target
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

impl LeaderChannel {
    /// The node calls go to now (`http(s)://host:port`).
    pub fn target(&self) -> String {
        self.current.lock().unwrap_or_else(|p| p.into_inner()).0.clone()
    }

    /// Moves on from an unreachable node to the next node of the target list.
    fn next_node(&self, failed: &str) {
        let nodes = targets(&self.options.target);
        if nodes.len() < 2 {
            return;
        }
        let at = nodes.iter().position(|n| n == failed).unwrap_or(nodes.len() - 1);
        self.move_to(&nodes[(at + 1) % nodes.len()], failed);
    }

    fn follow(&self, leader: &str) {
        let scheme = if self.options.target.starts_with("https://") {
            "https"
        } else {
            "http"
        };
        let target = format!("{scheme}://{leader}");
        let from = self.target();
        self.move_to(&target, &from);
    }

    /// Switches to `target` if calls still go to `from`.
    fn move_to(&self, target: &str, from: &str) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.0 != from {
            return; // another call moved it already
        }
        if current.0 == target {
            return;
        }
        match endpoint(&self.options, target) {
            Ok(e) => {
                tracing::info!(from = %current.0, to = %target, "moving to another cluster node");
                *current = (target.to_string(), e.connect_lazy());
            }
            Err(e) => tracing::warn!(node = %target, error = %e, "cannot move to another cluster node"),
        }
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for LeaderChannel {
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        // Each call clones the current channel and waits for it to be ready.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let (node, channel) = self.current.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let this = self.clone();
        Box::pin(async move {
            use tower::ServiceExt;
            let response = match channel.oneshot(request).await {
                Ok(r) => r,
                Err(e) => {
                    this.next_node(&node);
                    return Err(e);
                }
            };
            if let Some(leader) = response
                .headers()
                .get(crate::api::status::LEADER_METADATA)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
            {
                this.follow(leader);
            }
            Ok(response)
        })
    }
}

fn endpoint(options: &ClientOptions, target: &str) -> Result<Endpoint, ClientError> {
    let endpoint = Endpoint::from_shared(target.to_string())
        .map_err(|source| ClientError::Target {
            target: target.to_string(),
            source,
        })?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    match &options.tls {
        Some(tls) => endpoint.tls_config(tls.config()?).map_err(ClientError::TlsConfig),
        None => Ok(endpoint),
    }
}

/// Connects (retrying for up to `wait` while the server starts) and returns
/// a channel that adds the credentials to every call and follows a
/// cluster's leader ([`LeaderChannel`]).
pub async fn connect(options: &ClientOptions, wait: Duration) -> Result<AuthChannel, ClientError> {
    let nodes = targets(&options.target);
    let first = nodes.first().ok_or(ClientError::NoTarget)?.clone();
    let endpoints: Vec<(String, Endpoint)> = nodes
        .iter()
        .map(|n| endpoint(options, n).map(|e| (n.clone(), e)))
        .collect::<Result<_, _>>()?;
    let deadline = std::time::Instant::now() + wait;
    let mut attempt = 0usize;
    let (node, channel) = loop {
        let (node, endpoint) = &endpoints[attempt % endpoints.len()];
        attempt += 1;
        match endpoint.connect().await {
            Ok(channel) => break (node.clone(), channel),
            Err(_) if attempt < endpoints.len() || std::time::Instant::now() < deadline => {
                if attempt % endpoints.len() == 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
            }
            Err(source) => {
                return Err(ClientError::Connect {
                    target: first,
                    source,
                })
            }
        }
    };
    let leader = LeaderChannel {
        current: Arc::new(Mutex::new((node, channel))),
        options: Arc::new(options.clone()),
    };
    Ok(InterceptedService::new(leader, credentials(options)?))
}

/// The interceptor for `options`.
pub fn credentials(options: &ClientOptions) -> Result<Credentials, ClientError> {
    let authorization = match &options.token {
        Some(token) => Some(
            format!("Bearer {token}")
                .parse()
                .map_err(ClientError::TokenMetadata)?,
        ),
        None => None,
    };
    let actor = match &options.actor {
        Some((user, office)) => Some((
            user.parse().map_err(|e| ClientError::ActorMetadata("user", e))?,
            office
                .parse()
                .map_err(|e| ClientError::ActorMetadata("office", e))?,
        )),
        None => None,
    };
    Ok(Credentials { authorization, actor })
}

/// The TLS flags of a tool that connects to a server (`registry health`,
/// `registry backup`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// PEM CA certificate that signs the server's certificate (https targets:
    /// this build trusts no system roots).
    #[arg(long)]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Server name to verify in its certificate (default: the target's host).
    #[arg(long, requires = "tls_ca")]
    pub tls_domain: Option<String>,
    /// PEM client certificate, for a server run with --tls-client-cert-required.
    #[arg(long, requires_all = ["tls_ca", "tls_client_key"])]
    pub tls_client_cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls-client-cert.
    #[arg(long, requires = "tls_client_cert")]
    pub tls_client_key: Option<std::path::PathBuf>,
}

impl TlsArgs {
    /// The client TLS settings for `target`: none for `http://`; an
    /// `https://` target needs --tls-ca.
    pub fn for_target(&self, target: &str) -> Result<Option<crate::auth::tls::ClientTls>, ClientError> {
        if target.starts_with("https://") && self.tls_ca.is_none() {
            return Err(ClientError::HttpsWithoutCa(target.to_string()));
        }
        Ok(self.tls_ca.as_ref().map(|ca| crate::auth::tls::ClientTls {
            ca: Some(ca.clone()),
            identity: self.tls_client_cert.clone().zip(self.tls_client_key.clone()),
            domain: self.tls_domain.clone(),
        }))
    }
}
