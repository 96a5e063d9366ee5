//! The master key: wraps every person's data key and the blind-index key.

use std::fmt;
use std::io::Write;
use std::path::Path;

use zeroize::{Zeroize, Zeroizing};

use super::error::{PiiError, Result};
use super::hex;

/// BLAKE3 derive-key context of the master key id.
const KEY_ID_CONTEXT: &str = "migreg master key id v1";

/// Length of a master key id in bytes.
pub const KEY_ID_LEN: usize = 8;

/// A 32-byte master key. Wiped from memory on drop; `Debug` shows only its id.
///
/// It is deliberately not `Clone`: every copy of a secret is one more place
/// to wipe.
pub struct MasterKey {
    bytes: [u8; 32],
}

impl MasterKey {
    /// Builds a master key from raw bytes (the caller should wipe its copy).
    pub fn from_bytes(bytes: [u8; 32]) -> MasterKey {
        MasterKey { bytes }
    }

    /// A fresh random master key from the operating system's CSPRNG.
    ///
    /// # Panics
    /// If the operating system's random source fails.
    pub fn generate() -> MasterKey {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes).expect("operating system random source failed");
        MasterKey { bytes }
    }

    /// Parses 64 hex digits, optionally followed by one `\n` or `\r\n`.
    fn parse(text: &[u8]) -> Result<MasterKey> {
        let text = text
            .strip_suffix(b"\n")
            .map(|t| t.strip_suffix(b"\r").unwrap_or(t))
            .unwrap_or(text);
        if text.len() != 64 {
            return Err(PiiError::BadKeyFile {
                reason: "expected exactly 64 hex digits",
            });
        }
        let mut key = MasterKey { bytes: [0u8; 32] };
        if !hex::decode_32(text, &mut key.bytes) {
            // `key` is dropped (and wiped) here.
            return Err(PiiError::BadKeyFile {
                reason: "not a hex string",
            });
        }
        Ok(key)
    }

    /// Loads a master key from a file holding 64 hex digits (plus an optional
    /// newline). Logs a warning if the file is readable by group or others.
    pub fn load(path: impl AsRef<Path>) -> Result<MasterKey> {
        let path = path.as_ref();
        let text = Zeroizing::new(std::fs::read(path)?);
        warn_if_loose_permissions(path);
        MasterKey::parse(&text)
    }

    /// Loads a master key from an environment variable holding 64 hex digits.
    /// The variable is left in place; clear it after start-up if the process
    /// spawns children.
    pub fn from_env(var: &str) -> Result<MasterKey> {
        match std::env::var_os(var) {
            None => Err(PiiError::BadKeyFile {
                reason: "environment variable is not set",
            }),
            Some(value) => {
                let value = Zeroizing::new(value.into_encoded_bytes());
                MasterKey::parse(&value)
            }
        }
    }

    /// Generates a new master key and writes it to `path` as 64 hex digits and
    /// a newline, with mode 0600 (on Unix). Fails if the file already exists.
    /// The parent directory is created if missing.
    pub fn create_file(path: impl AsRef<Path>) -> Result<MasterKey> {
        let path = path.as_ref();
        if let Some(parent) = path.parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)?;
            }
        }
        let key = MasterKey::generate();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut file = opts.open(path)?;
        let mut text = hex::encode_secret(&key.bytes);
        text.push(b'\n');
        file.write_all(&text)?;
        file.sync_all()?;
        Ok(key)
    }

    /// Development convenience: loads the key at `path`, or creates a random
    /// one there (mode 0600) when the file is absent. Returns `created = true`
    /// in the latter case: the caller must then log a loud warning, since a
    /// key created on the fly is a development key, and losing it loses all
    /// personal data.
    pub fn load_or_create_dev(path: impl AsRef<Path>) -> Result<(MasterKey, bool)> {
        let path = path.as_ref();
        match MasterKey::create_file(path) {
            Ok(key) => Ok((key, true)),
            Err(PiiError::Io(e)) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Ok((MasterKey::load(path)?, false))
            }
            Err(e) => Err(e),
        }
    }

    /// The 8-byte key id: the first 8 bytes of
    /// `blake3::derive_key("migreg master key id v1", key)`. Not secret.
    pub fn key_id(&self) -> [u8; KEY_ID_LEN] {
        let mut derived = blake3::derive_key(KEY_ID_CONTEXT, &self.bytes);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&derived[..KEY_ID_LEN]);
        derived.zeroize();
        id
    }

    /// The key id as 16 lower-case hex digits, for logs and error messages.
    pub fn key_id_hex(&self) -> String {
        hex::encode(&self.key_id())
    }

    /// Raw key bytes, for the wrapping code of this module only.
    pub(super) fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for MasterKey {}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.key_id_hex())
            .finish_non_exhaustive()
    }
}

#[cfg(unix)]
fn warn_if_loose_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{:o}", mode & 0o777),
                "master key file is readable or writable by group or others; use mode 0600"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_loose_permissions(_path: &Path) {}
