//! Command-line administration: `registry access ...` (tokens and
//! certificate principals in the access file) and `registry keys ...`
//! (master keys). The TLS and access settings of `registry serve` are in
//! [`crate::config`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::auth::access_file::{self, AccessFile, Grant};
use crate::auth::Role;

/// Where the access file is: `--access-file`, else `DATA_DIR/access.json`.
#[derive(Args, Debug, Clone)]
pub struct AccessFileArgs {
    /// The server's data directory (holds access.json by default).
    #[arg(long, default_value = "./registry-data")]
    pub data_dir: PathBuf,
    /// The access file to edit (default: DATA_DIR/access.json).
    #[arg(long)]
    pub access_file: Option<PathBuf>,
}

impl AccessFileArgs {
    fn path(&self) -> PathBuf {
        self.access_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("access.json"))
    }
}

/// What a new principal may do.
#[derive(Args, Debug, Clone)]
pub struct GrantArgs {
    /// The principal's id (a code, never a name).
    #[arg(long)]
    pub principal: String,
    /// caseworker, supervisor, statistician, auditor or admin.
    #[arg(long)]
    pub role: String,
    /// Office code written with the principal's events.
    #[arg(long)]
    pub office: String,
    /// Department (two-digit DIVIPOLA code) the principal may act in; repeat for
    /// several. None: every department.
    #[arg(long = "department")]
    pub departments: Vec<String>,
}

/// A `--role` or `--department` (shown) that is not known.
#[derive(Debug, thiserror::Error)]
enum GrantError {
    /// Not a role.
    #[error("--role {0}: expected caseworker, supervisor, statistician, auditor or admin")]
    Role(String),
    /// Not a department code.
    #[error("--department {0}: not a two-digit DIVIPOLA department code")]
    Department(String),
}

impl GrantArgs {
    fn grant(&self, expires_at: Option<u64>) -> Result<Grant, GrantError> {
        let role = Role::parse(&self.role).ok_or_else(|| GrantError::Role(self.role.clone()))?;
        let departments = self
            .departments
            .iter()
            .map(|d| {
                crate::domain::Department::parse(d)
                    .map(|d| d.code())
                    .ok_or_else(|| GrantError::Department(d.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Grant {
            principal: self.principal.clone(),
            role,
            office: self.office.clone(),
            departments,
            expires_at,
        })
    }
}

/// `registry access ...`
#[derive(Subcommand, Debug)]
pub enum AccessCommand {
    /// Bearer tokens.
    Token {
        /// The token operation.
        #[command(subcommand)]
        what: TokenCommand,
    },
    /// Client-certificate principals (mutual TLS).
    Cert {
        /// The certificate principal operation.
        #[command(subcommand)]
        what: CertCommand,
    },
}

/// `registry access token ...`: bearer tokens in the access file.
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token; prints it once (or writes it to --out, mode 0600).
    Add {
        /// Where the access file is.
        #[command(flatten)]
        file: AccessFileArgs,
        /// Who the token's principal is and what it may do.
        #[command(flatten)]
        grant: GrantArgs,
        /// Days until the token expires (default: no expiry).
        #[arg(long)]
        expires_in_days: Option<u64>,
        /// Write the token to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Revoke a token by id; a running server refuses it within a second.
    Revoke {
        /// Where the access file is.
        #[command(flatten)]
        file: AccessFileArgs,
        /// The token's id, as `registry access token list` shows it.
        #[arg(long)]
        id: String,
    },
    /// List tokens (ids, principals, roles, state; never the tokens).
    List {
        /// Where the access file is.
        #[command(flatten)]
        file: AccessFileArgs,
    },
}

/// `registry access cert ...`: client-certificate principals in the access file.
#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// Map a client certificate identity (subject CN or DNS SAN) to a principal.
    Add {
        /// Where the access file is.
        #[command(flatten)]
        file: AccessFileArgs,
        /// The certificate's subject CN or one of its DNS SANs.
        #[arg(long)]
        identity: String,
        /// Who the principal is and what it may do.
        #[command(flatten)]
        grant: GrantArgs,
    },
    /// Remove a certificate principal.
    Remove {
        /// Where the access file is.
        #[command(flatten)]
        file: AccessFileArgs,
        /// The certificate identity (subject CN or DNS SAN) to remove.
        #[arg(long)]
        identity: String,
    },
}

/// Runs `registry access ...`.
pub fn run_access(command: AccessCommand) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match command {
        AccessCommand::Token {
            what:
                TokenCommand::Add {
                    file,
                    grant,
                    expires_in_days,
                    out,
                },
        } => {
            let expires_at = expires_in_days.map(|d| access_file::now_s() + d.min(36_500) * 86_400);
            let new = access_file::add_token(&file.path(), &grant.grant(expires_at)?)?;
            match out {
                Some(path) => {
                    access_file::write_atomically(&path, format!("{}\n", new.token).as_bytes())?;
                    eprintln!("token {} written to {}", new.id, path.display());
                }
                None => {
                    eprintln!("token {} (shown once; only its hash is stored):", new.id);
                    println!("{}", new.token);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AccessCommand::Token {
            what: TokenCommand::Revoke { file, id },
        } => {
            if access_file::revoke_token(&file.path(), &id)? {
                eprintln!("token {id} revoked");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("no token with id {id}");
                Ok(ExitCode::FAILURE)
            }
        }
        AccessCommand::Token {
            what: TokenCommand::List { file },
        } => {
            list(&file.path())?;
            Ok(ExitCode::SUCCESS)
        }
        AccessCommand::Cert {
            what:
                CertCommand::Add {
                    file,
                    identity,
                    grant,
                },
        } => {
            access_file::add_certificate(&file.path(), &identity, &grant.grant(None)?)?;
            eprintln!(
                "certificate identity {identity} mapped to principal {}",
                grant.principal
            );
            Ok(ExitCode::SUCCESS)
        }
        AccessCommand::Cert {
            what: CertCommand::Remove { file, identity },
        } => {
            if access_file::remove_certificate(&file.path(), &identity)? {
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("no certificate principal {identity}");
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

fn list(path: &Path) -> Result<(), access_file::AccessError> {
    let file = AccessFile::load(path)?;
    let now = access_file::now_s();
    println!(
        "{:<18} {:<20} {:<12} {:<12} {:<10} departments",
        "id", "principal", "role", "office", "state"
    );
    for t in &file.tokens {
        let state = if t.revoked_at.is_some() {
            "revoked"
        } else if t.expires_at.is_some_and(|e| now >= e) {
            "expired"
        } else {
            "active"
        };
        let deps: Vec<String> = t.departments.iter().map(|d| format!("{d:02}")).collect();
        println!(
            "{:<18} {:<20} {:<12} {:<12} {:<10} {}",
            t.id,
            t.principal,
            t.role,
            t.office,
            state,
            if deps.is_empty() {
                "all".to_string()
            } else {
                deps.join(",")
            }
        );
    }
    for c in &file.certificates {
        println!(
            "cert:{:<13} {:<20} {:<12} {:<12} {:<10}",
            c.identity, c.principal, c.role, c.office, "active"
        );
    }
    Ok(())
}

/// `registry keys ...`
#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Create a new random master key file (mode 0600; refuses to overwrite).
    Generate {
        /// The master key file to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Re-wrap every person key under a new master key, on a stopped store.
    /// Events are not touched. Afterwards start the server with the new key
    /// file and destroy the old one.
    Rotate {
        /// The data directory of the stopped store.
        #[arg(long, default_value = "./registry-data")]
        data_dir: PathBuf,
        /// The key in use (default as for `serve`: $REGISTRY_MASTER_KEY, else DATA_DIR/master.key).
        #[arg(long)]
        master_key_file: Option<PathBuf>,
        /// The new master key file.
        #[arg(long)]
        new_key_file: PathBuf,
    },
}

/// Runs `registry keys ...`.
pub fn run_keys(command: KeysCommand) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match command {
        KeysCommand::Generate { out } => {
            let key = crate::pii::MasterKey::create_file(&out)?;
            eprintln!("master key {} written to {}", key.key_id_hex(), out.display());
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Rotate {
            data_dir,
            master_key_file,
            new_key_file,
        } => {
            let current = crate::server::load_master_key(master_key_file.as_ref(), &data_dir)?;
            let new = crate::pii::MasterKey::load(&new_key_file)?;
            let new_id = new.key_id_hex();
            let store = crate::log::Store::open(&data_dir)?;
            let keys = crate::pii::KeyStore::open(store.db(), current)?;
            let n = keys.rewrap_all(new)?;
            keys.flush()?;
            store.db().flush()?;
            eprintln!(
                "{n} keys re-wrapped under master key {new_id}; start the server with --master-key-file {} and destroy the old key",
                new_key_file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
