//! The access file: who can authenticate, and as what.
//!
//! JSON, version 1:
//!
//! ```json
//! {"version": 1,
//!  "tokens": [{"id": "tok-3f9a0c1b2d4e", "hash": "<64 hex>", "principal": "u-0042",
//!              "role": "caseworker", "office": "BOG-CENTRO", "departments": [11, 25],
//!              "created_at": 1795000000, "expires_at": 1800000000, "revoked_at": null}],
//!  "certificates": [{"identity": "frontend-bog", "principal": "svc-frontend-bog",
//!                    "role": "caseworker", "office": "BOG-CENTRO", "departments": []}]}
//! ```
//!
//! - A token is `rgt_` + 64 hex digits (256 random bits), shown once when
//!   created; the file keeps only `hash` = BLAKE3 derive-key("migreg access
//!   token v1", token). Revoked tokens stay listed (with `revoked_at`) so the
//!   file records who had access when.
//! - A certificate principal matches a client certificate (signed by the
//!   configured client CA) whose subject CN or one of whose DNS SANs equals
//!   `identity`.
//! - `departments`: DIVIPOLA department codes the principal may act in; empty = all.
//!
//! Changes go through [`modify`]: an exclusive `flock` on `<file>.lock`,
//! read, change, write to a temporary file, fsync, rename, fsync the
//! directory. The server notices a changed file within
//! [`RELOAD_CHECK_MS`](crate::limits::ACCESS_RELOAD_CHECK_MS) and reloads it, so
//! `registry access token revoke` takes effect without a restart.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{valid_code, Credential, Principal, Role};
use crate::limits::{ACCESS_FILE_BYTES_MAX, ACCESS_RELOAD_CHECK_MS, ACCESS_TOKENS_MAX};

const TOKEN_PREFIX: &str = "rgt_";
const TOKEN_HASH_CONTEXT: &str = "migreg access token v1";

/// Errors of the access file.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// A file could not be read or written: the access file, its `.lock`
    /// file, or (at bootstrap) the file the first admin token goes to.
    #[error("access file {path}: {source}")]
    Io {
        /// The file's path (the access file's for its lock file too).
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The access file does not load: larger than
    /// [`ACCESS_FILE_BYTES_MAX`], not JSON of the expected shape, or an
    /// entry fails [`AccessFile::validate`].
    #[error("access file {path}: {reason}")]
    Invalid {
        /// The access file's path.
        path: String,
        /// What is wrong: the size limit, the JSON error or the first bad entry.
        reason: String,
    },
    /// A requested change was refused (a bad grant or certificate identity,
    /// or the changed file would not validate); the text says why. The file
    /// is left as it was.
    #[error("{0}")]
    Rejected(String),
    /// Adding a token would take the file past [`ACCESS_TOKENS_MAX`] tokens
    /// (revoked ones count).
    #[error("the access file already holds {limit} tokens")]
    Full {
        /// The most tokens the file may hold ([`ACCESS_TOKENS_MAX`]).
        limit: usize,
    },
}

/// Why a grant (principal, office, departments) is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// The principal id is not 1..64 printable ASCII characters without spaces.
    #[error("principal: 1..64 printable characters without spaces")]
    Principal,
    /// The office code is not 1..64 printable ASCII characters without spaces.
    #[error("office: 1..64 printable characters without spaces")]
    Office,
    /// This department number is not a DIVIPOLA department code.
    #[error("departments: {0:02} is not a DIVIPOLA department code")]
    Department(u8),
}

/// Why [`AccessFile::validate`] refuses a file: the first bad entry.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// The file's `version` (given) is not 1.
    #[error("version {0} is not supported (expected 1)")]
    Version(u32),
    /// More than [`ACCESS_TOKENS_MAX`] tokens, or more than that many
    /// certificate principals.
    #[error("more than {ACCESS_TOKENS_MAX} tokens or certificates")]
    TooMany,
    /// An entry's principal, office or departments are refused.
    /// `entry` names it: `tokens[i]` or `certificates[i]`.
    #[error("{entry}: {source}")]
    Grant {
        /// The entry: `tokens[i]` or `certificates[i]`.
        entry: String,
        /// What is wrong with its grant.
        source: GrantError,
    },
    /// The hash of `tokens[i]` (index given) is not 64 hex digits.
    #[error("tokens[{0}].hash: expected 64 hex digits")]
    TokenHash(usize),
    /// The id of `tokens[i]` (index given) is not 1..64 printable ASCII
    /// characters without spaces.
    #[error("tokens[{0}].id: not a code")]
    TokenId(usize),
    /// The identity of `certificates[i]` (index given) is not 1..64
    /// printable ASCII characters without spaces.
    #[error("certificates[{0}].identity: 1..64 printable characters")]
    CertificateIdentity(usize),
}

/// One bearer token (its hash, never the token).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenEntry {
    /// The token's public id (not secret): access events name it, revocation takes it.
    pub id: String,
    /// BLAKE3 derive-key of the token, hex (the token itself is never stored).
    pub hash: String,
    /// The principal the token authenticates (a code, never a name).
    pub principal: String,
    /// The principal's role.
    pub role: Role,
    /// The principal's office code.
    pub office: String,
    /// DIVIPOLA department codes the principal may act in; empty = all.
    #[serde(default)]
    pub departments: Vec<u8>,
    /// When the token was created (Unix seconds).
    pub created_at: u64,
    /// When the token expires (Unix seconds); `None`: never.
    #[serde(default)]
    pub expires_at: Option<u64>,
    /// When the token was revoked (Unix seconds); a revoked token stays listed.
    #[serde(default)]
    pub revoked_at: Option<u64>,
}

/// One client-certificate principal.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CertEntry {
    /// The client certificate's subject CN or DNS SAN this principal matches.
    pub identity: String,
    /// The principal the certificate authenticates.
    pub principal: String,
    /// The principal's role.
    pub role: Role,
    /// The principal's office code.
    pub office: String,
    /// DIVIPOLA department codes the principal may act in; empty = all.
    #[serde(default)]
    pub departments: Vec<u8>,
}

/// The whole file.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessFile {
    /// The file format version (1).
    pub version: u32,
    /// Bearer tokens, revoked ones included.
    #[serde(default)]
    pub tokens: Vec<TokenEntry>,
    /// Client-certificate principals.
    #[serde(default)]
    pub certificates: Vec<CertEntry>,
}

impl Default for AccessFile {
    fn default() -> Self {
        AccessFile {
            version: 1,
            tokens: Vec::new(),
            certificates: Vec::new(),
        }
    }
}

/// A token just created: the secret is here and nowhere else.
#[derive(Clone, Debug)]
pub struct NewToken {
    /// The token's public id.
    pub id: String,
    /// The token itself (`rgt_` + 64 hex digits), shown once.
    pub token: String,
}

/// What a new token or certificate principal is.
#[derive(Clone, Debug)]
pub struct Grant {
    /// The principal's id (a code, never a name).
    pub principal: String,
    /// The principal's role.
    pub role: Role,
    /// The principal's office code.
    pub office: String,
    /// DIVIPOLA department codes the principal may act in; empty = all.
    pub departments: Vec<u8>,
    /// Unix seconds; None: no expiry.
    pub expires_at: Option<u64>,
}

/// Seconds since the Unix epoch (from [`crate::clock::now_us`]).
pub fn now_s() -> u64 {
    u64::try_from(crate::clock::now_us() / 1_000_000).unwrap_or(0)
}

/// The stored hash of a token.
pub fn token_hash(token: &str) -> [u8; 32] {
    *blake3::Hasher::new_derive_key(TOKEN_HASH_CONTEXT)
        .update(token.as_bytes())
        .finalize()
        .as_bytes()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).expect("operating system random source failed");
    b
}

impl AccessFile {
    /// Checks every entry; names the first bad one.
    pub fn validate(&self) -> Result<(), EntryError> {
        if self.version != 1 {
            return Err(EntryError::Version(self.version));
        }
        if self.tokens.len() > ACCESS_TOKENS_MAX || self.certificates.len() > ACCESS_TOKENS_MAX {
            return Err(EntryError::TooMany);
        }
        let check = |entry: String, principal: &str, office: &str, departments: &[u8]| {
            validate_grant(principal, office, departments)
                .map_err(|source| EntryError::Grant { entry, source })
        };
        for (i, t) in self.tokens.iter().enumerate() {
            check(format!("tokens[{i}]"), &t.principal, &t.office, &t.departments)?;
            if crate::hex::decode_32_owned(&t.hash).is_none() {
                return Err(EntryError::TokenHash(i));
            }
            if !valid_code(&t.id) {
                return Err(EntryError::TokenId(i));
            }
        }
        for (i, c) in self.certificates.iter().enumerate() {
            check(
                format!("certificates[{i}]"),
                &c.principal,
                &c.office,
                &c.departments,
            )?;
            if !valid_code(&c.identity) {
                return Err(EntryError::CertificateIdentity(i));
            }
        }
        Ok(())
    }

    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<AccessFile, AccessError> {
        let io = |source| AccessError::Io {
            path: path.display().to_string(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.len() > ACCESS_FILE_BYTES_MAX {
            return Err(AccessError::Invalid {
                path: path.display().to_string(),
                reason: format!("larger than {ACCESS_FILE_BYTES_MAX} bytes"),
            });
        }
        let text = std::fs::read(path).map_err(io)?;
        let file: AccessFile = serde_json::from_slice(&text).map_err(|e| AccessError::Invalid {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        file.validate().map_err(|e| AccessError::Invalid {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(file)
    }
}

/// Checks a principal id, office and department list.
pub fn validate_grant(principal: &str, office: &str, departments: &[u8]) -> Result<(), GrantError> {
    if !valid_code(principal) {
        return Err(GrantError::Principal);
    }
    if !valid_code(office) {
        return Err(GrantError::Office);
    }
    for d in departments {
        if crate::domain::Department::new(*d).is_none() {
            return Err(GrantError::Department(*d));
        }
    }
    Ok(())
}

/// Reads, changes and atomically rewrites the access file under an
/// exclusive lock (a missing file starts empty).
pub fn modify<R>(
    path: &Path,
    change: impl FnOnce(&mut AccessFile) -> Result<R, AccessError>,
) -> Result<R, AccessError> {
    let io = |source| AccessError::Io {
        path: path.display().to_string(),
        source,
    };
    let lock_path = lock_path(path);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io)?;
    flock_exclusive(&lock).map_err(io)?;
    let mut file = if path.exists() {
        AccessFile::load(path)?
    } else {
        AccessFile::default()
    };
    let out = change(&mut file)?;
    file.validate()
        .map_err(|e| AccessError::Rejected(e.to_string()))?;
    write_atomically(path, &serde_json::to_vec_pretty(&file).expect("serializable")).map_err(io)?;
    drop(lock);
    Ok(out)
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".lock");
    path.with_file_name(name)
}

fn flock_exclusive(file: &std::fs::File) -> std::io::Result<()> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a file descriptor we own; released when the file is closed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Writes `bytes` to `path` (mode 0600) via a temporary file, fsync and rename.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Adds a token; returns it (the only time it is shown).
pub fn add_token(path: &Path, grant: &Grant) -> Result<NewToken, AccessError> {
    validate_grant(&grant.principal, &grant.office, &grant.departments)
        .map_err(|e| AccessError::Rejected(e.to_string()))?;
    let token = format!("{TOKEN_PREFIX}{}", crate::hex::encode(&random_bytes::<32>()));
    let id = format!("tok-{}", crate::hex::encode(&random_bytes::<6>()));
    let entry = TokenEntry {
        id: id.clone(),
        hash: crate::hex::encode(&token_hash(&token)),
        principal: grant.principal.clone(),
        role: grant.role,
        office: grant.office.clone(),
        departments: grant.departments.clone(),
        created_at: now_s(),
        expires_at: grant.expires_at,
        revoked_at: None,
    };
    modify(path, |file| {
        if file.tokens.len() >= ACCESS_TOKENS_MAX {
            return Err(AccessError::Full {
                limit: ACCESS_TOKENS_MAX,
            });
        }
        file.tokens.push(entry);
        Ok(())
    })?;
    Ok(NewToken { id, token })
}

/// Revokes a token by id. Returns false when no such token exists; revoking
/// twice keeps the first revocation time.
pub fn revoke_token(path: &Path, id: &str) -> Result<bool, AccessError> {
    modify(path, |file| {
        let Some(t) = file.tokens.iter_mut().find(|t| t.id == id) else {
            return Ok(false);
        };
        t.revoked_at.get_or_insert(now_s());
        Ok(true)
    })
}

/// Adds (or replaces) the principal of a certificate identity.
pub fn add_certificate(path: &Path, identity: &str, grant: &Grant) -> Result<(), AccessError> {
    validate_grant(&grant.principal, &grant.office, &grant.departments)
        .map_err(|e| AccessError::Rejected(e.to_string()))?;
    if !valid_code(identity) {
        return Err(AccessError::Rejected(
            "identity: 1..64 printable characters".into(),
        ));
    }
    let entry = CertEntry {
        identity: identity.to_string(),
        principal: grant.principal.clone(),
        role: grant.role,
        office: grant.office.clone(),
        departments: grant.departments.clone(),
    };
    modify(path, |file| {
        file.certificates.retain(|c| c.identity != entry.identity);
        file.certificates.push(entry);
        Ok(())
    })
}

/// Removes a certificate principal. Returns false when none matched.
pub fn remove_certificate(path: &Path, identity: &str) -> Result<bool, AccessError> {
    modify(path, |file| {
        let before = file.certificates.len();
        file.certificates.retain(|c| c.identity != identity);
        Ok(file.certificates.len() != before)
    })
}

/// On a first start without an access file: creates one holding a single
/// admin token, written to `token_out` (mode 0600). Returns whether it did.
pub fn bootstrap(path: &Path, token_out: &Path) -> Result<bool, AccessError> {
    if path.exists() {
        return Ok(false);
    }
    let new = add_token(
        path,
        &Grant {
            principal: "bootstrap-admin".into(),
            role: Role::Admin,
            office: "ADMIN".into(),
            departments: Vec::new(),
            expires_at: None,
        },
    )?;
    write_atomically(token_out, format!("{}\n", new.token).as_bytes()).map_err(|source| AccessError::Io {
        path: token_out.display().to_string(),
        source,
    })?;
    Ok(true)
}

/// The loaded file, indexed for authentication.
struct Loaded {
    stamp: Option<(SystemTime, u64, u64)>,
    by_hash: HashMap<[u8; 32], TokenEntry>,
    certificates: HashMap<String, CertEntry>,
}

impl Loaded {
    fn from(file: AccessFile, stamp: Option<(SystemTime, u64, u64)>) -> Loaded {
        let by_hash = file
            .tokens
            .into_iter()
            .filter_map(|t| crate::hex::decode_32_owned(&t.hash).map(|h| (h, t)))
            .collect();
        let certificates = file
            .certificates
            .into_iter()
            .map(|c| (c.identity.clone(), c))
            .collect();
        Loaded {
            stamp,
            by_hash,
            certificates,
        }
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

/// Why a token was not accepted (all answered UNAUTHENTICATED; the reason
/// goes to the server log, not to the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    /// No token of the file has this token's hash.
    Unknown,
    /// The token's `expires_at` has passed (and it is not revoked).
    Expired,
    /// The token was revoked (`revoked_at` is set); checked before expiry.
    Revoked,
}

/// The server's view of the access file, reloaded when the file changes.
pub struct AccessControl {
    path: PathBuf,
    loaded: RwLock<Loaded>,
    last_check_ms: AtomicU64,
    /// Refused calls by reason (metrics; the reason is a fixed word).
    refusals: crate::metrics::ReasonCounter,
}

impl AccessControl {
    /// Loads the file (it must exist and be valid).
    pub fn open(path: &Path) -> Result<AccessControl, AccessError> {
        let stamp = stamp(path);
        let file = AccessFile::load(path)?;
        Ok(AccessControl {
            path: path.to_path_buf(),
            loaded: RwLock::new(Loaded::from(file, stamp)),
            last_check_ms: AtomicU64::new(now_ms()),
            refusals: Default::default(),
        })
    }

    /// Counts a refused call (`reason`: a fixed word, never a credential).
    pub fn refused(&self, reason: &'static str) {
        self.refusals.get_or_create(&[("reason", reason)]).inc();
    }

    /// The refusal counter, shared with the metrics registry.
    pub fn refusals(&self) -> crate::metrics::ReasonCounter {
        self.refusals.clone()
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reloads if the file changed (checked at most every few hundred ms).
    /// A file that no longer loads is reported and the last good one kept.
    pub fn refresh(&self, force: bool) {
        let now = now_ms();
        let last = self.last_check_ms.load(Ordering::Relaxed);
        if !force && now.saturating_sub(last) < ACCESS_RELOAD_CHECK_MS {
            return;
        }
        self.last_check_ms.store(now, Ordering::Relaxed);
        let current = stamp(&self.path);
        if !force && current == self.loaded.read().unwrap_or_else(|p| p.into_inner()).stamp {
            return;
        }
        match AccessFile::load(&self.path) {
            Ok(file) => {
                let tokens = file.tokens.len();
                *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = Loaded::from(file, current);
                tracing::info!(tokens, "access file reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "access file changed but cannot be loaded; keeping the previous one")
            }
        }
    }

    /// The principal of a bearer token.
    pub fn authenticate_token(&self, token: &str) -> Result<Principal, TokenRefusal> {
        self.refresh(false);
        let hash = token_hash(token);
        let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        let t = loaded.by_hash.get(&hash).ok_or(TokenRefusal::Unknown)?;
        if t.revoked_at.is_some() {
            return Err(TokenRefusal::Revoked);
        }
        if t.expires_at.is_some_and(|e| now_s() >= e) {
            return Err(TokenRefusal::Expired);
        }
        Ok(Principal {
            id: t.principal.clone(),
            role: t.role,
            office: t.office.clone(),
            departments: t.departments.clone(),
            credential: Credential::Token {
                token_id: t.id.clone(),
            },
        })
    }

    /// The principal of the first certificate identity that is listed.
    pub fn authenticate_certificate(&self, identities: &[String]) -> Option<Principal> {
        self.refresh(false);
        let loaded = self.loaded.read().unwrap_or_else(|p| p.into_inner());
        identities.iter().find_map(|id| {
            loaded.certificates.get(id).map(|c| Principal {
                id: c.principal.clone(),
                role: c.role,
                office: c.office.clone(),
                departments: c.departments.clone(),
                credential: Credential::Certificate { identity: id.clone() },
            })
        })
    }
}

/// Milliseconds since the Unix epoch (from [`crate::clock::now_us`]).
fn now_ms() -> u64 {
    u64::try_from(crate::clock::now_us() / 1_000).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(role: Role) -> Grant {
        Grant {
            principal: "u-1".into(),
            role,
            office: "BOG".into(),
            departments: vec![11],
            expires_at: None,
        }
    }

    #[test]
    fn tokens_are_stored_as_hashes_and_revocation_is_seen_after_reload() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.json");
        let new = add_token(&path, &grant(Role::Caseworker)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&new.token), "the token itself is never stored");
        assert!(text.contains(&crate::hex::encode(&token_hash(&new.token))));
        let ac = AccessControl::open(&path).unwrap();
        let p = ac.authenticate_token(&new.token).unwrap();
        assert_eq!(
            (p.id.as_str(), p.role, p.departments.as_slice()),
            ("u-1", Role::Caseworker, &[11u8][..])
        );
        assert_eq!(ac.authenticate_token("rgt_00"), Err(TokenRefusal::Unknown));
        assert!(revoke_token(&path, &new.id).unwrap());
        assert!(!revoke_token(&path, "tok-nope").unwrap());
        ac.refresh(true);
        assert_eq!(ac.authenticate_token(&new.token), Err(TokenRefusal::Revoked));
    }

    #[test]
    fn expired_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.json");
        let mut g = grant(Role::Admin);
        g.expires_at = Some(now_s() - 1);
        let new = add_token(&path, &g).unwrap();
        let ac = AccessControl::open(&path).unwrap();
        assert_eq!(ac.authenticate_token(&new.token), Err(TokenRefusal::Expired));
    }

    #[test]
    fn bad_grants_and_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.json");
        let mut g = grant(Role::Caseworker);
        g.departments = vec![12];
        assert!(matches!(add_token(&path, &g), Err(AccessError::Rejected(m)) if m.contains("departments")));
        g.departments = vec![];
        g.principal = "has space".into();
        assert!(matches!(add_token(&path, &g), Err(AccessError::Rejected(m)) if m.contains("principal")));
        assert!(!path.exists(), "a refused change writes nothing");
        std::fs::write(&path, r#"{"version": 2}"#).unwrap();
        assert!(matches!(
            AccessControl::open(&path),
            Err(AccessError::Invalid { .. })
        ));
    }
}
