//! Who may do what: authenticated principals, roles, department scopes.
//!
//! - [`access_file`]: the access file (JSON): bearer tokens stored only as
//!   hashes, client-certificate principals; add/revoke without editing by hand.
//! - [`layer`]: a tower layer in front of every gRPC service: authenticates
//!   the caller (client certificate or bearer token), checks the method
//!   against [`policy`], and puts the [`Principal`] into the request's
//!   extensions. Services read it with [`principal`].
//! - [`policy`]: the table of which role may call which method (deny by default).
//! - [`tls`]: server and client TLS (rustls) from PEM files; certificate identities.
//!
//! Errors: no or bad credentials -> UNAUTHENTICATED; a known principal
//! outside its role or department scope -> PERMISSION_DENIED. Both are
//! decided before a case is looked at (role) or answered identically for an
//! existing and a missing case (scope), so neither reveals whether a case exists.

pub mod access_file;
pub mod layer;
pub mod policy;
pub mod tls;

use std::fmt;

use serde::{Deserialize, Serialize};
use tonic::Status;

pub use access_file::{AccessControl, AccessFile, NewToken};
pub use layer::AuthLayer;

/// What a principal is allowed to do (docs: ARCHITECTURE.md "Access").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Case commands (no decisions) and case reads.
    Caseworker,
    /// A caseworker who also decides: approvals, denials, appeals,
    /// cancellations, certification awards, erasure; and bulk import.
    Supervisor,
    /// Statistics only: no personal data, no events.
    Statistician,
    /// The audit service only: checkpoints, proofs, sealed events.
    Auditor,
    /// Tokens, master-key rotation, checkpoints on demand. No case data.
    Admin,
}

impl Role {
    /// Every role, in declaration order (the order [`Role::parse`] tries them).
    pub const ALL: [Role; 5] = [
        Role::Caseworker,
        Role::Supervisor,
        Role::Statistician,
        Role::Auditor,
        Role::Admin,
    ];

    /// The role's lower-case name, as the access file, the command line and
    /// log lines write it (`"caseworker"`, `"supervisor"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Caseworker => "caseworker",
            Role::Supervisor => "supervisor",
            Role::Statistician => "statistician",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    /// The role named `s`, spelled exactly as [`Role::as_str`] writes it;
    /// `None` for any other text.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a principal proved who it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// A bearer token (its id, not the secret).
    Token {
        /// The token's public id ([`access_file::TokenEntry::id`]), never the secret.
        token_id: String,
    },
    /// A client certificate whose subject CN or a DNS SAN matched.
    Certificate {
        /// The subject CN or DNS SAN that matched a certificate principal of
        /// the access file.
        identity: String,
    },
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// User or service id (a code, never a name): written as the actor of every event.
    pub id: String,
    /// The principal's role (what it may call).
    pub role: Role,
    /// Office code, written as the actor's office.
    pub office: String,
    /// Department codes (DIVIPOLA, two digits) the principal may act in;
    /// empty = every department.
    pub departments: Vec<u8>,
    /// How the caller authenticated (recorded in access events).
    pub credential: Credential,
}

impl Principal {
    /// The actor written into events.
    pub fn actor(&self) -> crate::log::Actor {
        crate::log::Actor {
            user_id: self.id.clone(),
            office: self.office.clone(),
        }
    }
}

/// The principal the auth layer put into a request (services behind the
/// layer only; a missing principal means the layer was not installed, which
/// is refused rather than served anonymously).
pub fn principal<T>(request: &tonic::Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("credentials required"))
}

/// The authenticated caller of `request` (as [`principal`]) and its message.
pub fn caller<T>(request: tonic::Request<T>) -> Result<(Principal, T), Status> {
    let principal = principal(&request)?;
    Ok((principal, request.into_inner()))
}

/// The PERMISSION_DENIED answer for a case outside the caller's scope; the
/// same for a case that does not exist, so existence is not revealed.
pub fn out_of_scope() -> Status {
    Status::permission_denied("the case is not within the departments of your scope (or does not exist)")
}

/// Validates a principal id or office code: 1..64 printable ASCII, no spaces.
pub fn valid_code(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= crate::limits::ACTOR_FIELD_BYTES_MAX
        && s.bytes().all(|b| b.is_ascii_graphic())
}
