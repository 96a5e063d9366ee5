//! The tower layer in front of every gRPC service: authenticate, authorize
//! by method, hand the principal to the service, and bound the time a call
//! may take.
//!
//! Time limit: a unary or server-streaming call must produce its response
//! (for a server stream: its headers) within [`GRPC_DEFAULT_TIMEOUT_MS`],
//! or it is answered `DEADLINE_EXCEEDED`. A client-streaming call (bulk
//! import) answers only after its client closes the stream, so the limit
//! would cut long imports: those methods are exempt, and their own message
//! and concurrency limits bound them instead. (tonic's `Server::timeout`
//! applies one limit to every call, which is why it is not used.)

use std::sync::Arc;

use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::Status;

use super::access_file::TokenRefusal;
use super::policy::{access, Access};
use super::{AccessControl, Principal};
use crate::limits::{AUTHORIZATION_BYTES_MAX, GRPC_DEFAULT_TIMEOUT_MS};
use crate::middleware::{BoxFuture, GrpcResponse, Inner, Middleware};

/// Client-streaming methods: not bound by the per-call time limit.
const CLIENT_STREAMING_METHODS: &[&str] = &["/regularization.v1.Import/ImportCases"];

/// Installs authentication and authorization in front of the services.
pub type AuthLayer = crate::middleware::Layer<Auth>;

impl AuthLayer {
    /// The layer that authenticates and authorizes every call against
    /// `access`, the server's (reloading) view of the access file.
    pub fn access(access: Arc<AccessControl>) -> AuthLayer {
        AuthLayer::new(Auth { access })
    }
}

/// The middleware of [`AuthLayer`].
#[derive(Clone)]
pub struct Auth {
    access: Arc<AccessControl>,
}

impl Middleware for Auth {
    fn call<S: Inner<B>, B: Send + 'static>(
        &self,
        inner: &mut S,
        mut request: http::Request<B>,
    ) -> BoxFuture<Result<GrpcResponse, S::Error>> {
        match check(&self.access, &request) {
            Ok(principal) => {
                if let Some(p) = principal {
                    request.extensions_mut().insert(p);
                }
                // The ready service is the one to call; keep a fresh clone for the next call.
                let clone = inner.clone();
                let mut inner = std::mem::replace(inner, clone);
                if CLIENT_STREAMING_METHODS.contains(&request.uri().path()) {
                    return Box::pin(inner.call(request));
                }
                let call = inner.call(request);
                Box::pin(async move {
                    let limit = std::time::Duration::from_millis(GRPC_DEFAULT_TIMEOUT_MS);
                    match tokio::time::timeout(limit, call).await {
                        Ok(answer) => answer,
                        Err(_) => Ok(Status::deadline_exceeded(format!(
                            "the call took longer than the server's limit of {} s",
                            GRPC_DEFAULT_TIMEOUT_MS / 1000
                        ))
                        .into_http()),
                    }
                })
            }
            Err(status) => Box::pin(async move { Ok(status.into_http()) }),
        }
    }
}

/// Authenticates and authorizes one call; `Ok(None)` for public methods.
pub fn check<B>(ac: &AccessControl, request: &http::Request<B>) -> Result<Option<Principal>, Status> {
    let path = request.uri().path();
    let rule = access(path);
    if rule == Access::Public {
        return Ok(None);
    }
    let principal = authenticate(ac, request)?;
    let method = path.rsplit('/').next().unwrap_or("");
    match rule {
        Access::Public | Access::Authenticated => {}
        Access::Roles(roles) if roles.contains(&principal.role) => {}
        Access::Roles(_) => {
            ac.refused("role");
            tracing::info!(principal = %principal.id, role = %principal.role, path, "permission denied");
            return Err(Status::permission_denied(format!(
                "role {} may not call {method}",
                principal.role
            )));
        }
        Access::Unknown => {
            ac.refused("unknown_method");
            return Err(Status::permission_denied(format!(
                "{path} is not a method of this server"
            )));
        }
    }
    tracing::debug!(principal = %principal.id, role = %principal.role, path, "authorized");
    Ok(Some(principal))
}

fn authenticate<B>(ac: &AccessControl, request: &http::Request<B>) -> Result<Principal, Status> {
    if let Some(value) = request.headers().get(http::header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .filter(|v| v.len() <= AUTHORIZATION_BYTES_MAX)
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ac.refused("malformed");
                Status::unauthenticated("authorization: expected \"Bearer <token>\"")
            })?;
        return ac.authenticate_token(token).map_err(|refusal| {
            let (reason, counted) = match refusal {
                TokenRefusal::Unknown => ("unknown", "token_unknown"),
                TokenRefusal::Expired => ("expired", "token_expired"),
                TokenRefusal::Revoked => ("revoked", "token_revoked"),
            };
            ac.refused(counted);
            tracing::info!(reason, "bearer token refused");
            Status::unauthenticated(format!("the bearer token is {reason}"))
        });
    }
    let certs = request
        .extensions()
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.peer_certs());
    if let Some(leaf) = certs.as_ref().and_then(|c| c.first()) {
        let identities = super::tls::certificate_identities(leaf.as_ref());
        return ac.authenticate_certificate(&identities).ok_or_else(|| {
            ac.refused("certificate_unregistered");
            tracing::info!(?identities, "client certificate not registered");
            Status::unauthenticated("the client certificate is not registered for any principal")
        });
    }
    ac.refused("missing");
    Err(Status::unauthenticated(
        "credentials required: a bearer token (authorization metadata) or a client certificate",
    ))
}
