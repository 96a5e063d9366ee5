//! `registry policy list|record|preview`: the Policy service from the
//! command line (docs/POLICY.md). An instrument is given as a JSON file:
//!
//! ```json
//! {"request_id": "res-3100-2026", "action": "AMEND",
//!  "instrument": {"id": "RES-3100-2026", "kind": "RESOLUCION", "number": "3100",
//!                 "issuer": "MIGRACION_COLOMBIA", "signed_on": "2026-05-15",
//!                 "effective_on": "2026-05-15", "title": "..."},
//!  "legal_basis": "", "target": "RES-2451-2025",
//!  "rules": {"channels": [...], "measures": [...]}}
//! ```
//!
//! `rules` is sent as the request's `rules_json`; a channel catalogue's
//! channels (either form) can be pasted into it, which is how a catalogue
//! file is imported.

use super::BoxError;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde::Deserialize;

use crate::api::pb;
use crate::api::pb::policy_client::PolicyClient;

/// Largest instrument file read.
const INSTRUMENT_FILE_BYTES_MAX: u64 = 256 * 1024;

/// `registry policy ...`.
#[derive(Clone, Debug, clap::Args)]
pub struct PolicyArgs {
    /// A running server, `http://host:port` or `https://host:port`.
    #[arg(long)]
    pub target: String,
    /// The token and TLS settings for `target`.
    #[command(flatten)]
    pub remote: super::stats::RemoteArgs,
    /// List, record or preview.
    #[command(subcommand)]
    pub what: PolicyCommand,
}

/// What to do.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Every recorded instrument, in log order, and the policy version.
    List,
    /// Record the instrument of a JSON file (admin token); a retry of the
    /// same file gets the original's answer.
    #[command(alias = "import")]
    Record {
        /// The instrument file (JSON, at most 256 KiB).
        file: PathBuf,
    },
    /// What recording the instrument of a JSON file would change (admin
    /// token); records nothing.
    Preview {
        /// The instrument file (JSON, at most 256 KiB).
        file: PathBuf,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InstrumentFile {
    request_id: String,
    action: String,
    instrument: InstrumentJson,
    #[serde(default)]
    legal_basis: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    rules: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InstrumentJson {
    id: String,
    kind: String,
    number: String,
    issuer: String,
    signed_on: String,
    effective_on: String,
    title: String,
}

fn request(file: &PathBuf) -> Result<pb::RecordPolicyRequest, BoxError> {
    let len = std::fs::metadata(file)
        .map_err(|e| format!("{}: {e}", file.display()))?
        .len();
    if len > INSTRUMENT_FILE_BYTES_MAX {
        return Err(format!(
            "{}: larger than {INSTRUMENT_FILE_BYTES_MAX} bytes",
            file.display()
        )
        .into());
    }
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let f: InstrumentFile = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
    let action = match f.action.as_str() {
        "ADOPT" => pb::PolicyAction::Adopt,
        "AMEND" => pb::PolicyAction::Amend,
        "REPEAL" => pb::PolicyAction::Repeal,
        other => {
            return Err(format!(
                "{}: action {other:?}: one of ADOPT, AMEND, REPEAL",
                file.display()
            )
            .into())
        }
    };
    let i = f.instrument;
    Ok(pb::RecordPolicyRequest {
        request_id: f.request_id,
        action: action as i32,
        instrument: Some(pb::PolicyInstrument {
            id: i.id,
            kind: i.kind,
            number: i.number,
            issuer: i.issuer,
            signed_on: i.signed_on,
            effective_on: i.effective_on,
            title: i.title,
        }),
        legal_basis: f.legal_basis,
        target: f.target,
        rules_json: f.rules.map(|r| r.to_string()).unwrap_or_default(),
    })
}

fn status(s: tonic::Status) -> BoxError {
    format!("{:?}: {}", s.code(), s.message()).into()
}

/// Runs `registry policy`.
pub fn run(args: &PolicyArgs) -> Result<ExitCode, BoxError> {
    let options = args.remote.options(&args.target)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let channel = crate::client::connect(&options, Duration::from_secs(5)).await?;
        let mut client = PolicyClient::new(channel);
        match &args.what {
            PolicyCommand::List => {
                let r = client.list_policies(pb::ListPoliciesRequest {}).await.map_err(status)?.into_inner();
                println!("policy version {}", r.policy_version);
                for e in r.entries {
                    let i = e.instrument.unwrap_or_default();
                    let action = pb::PolicyAction::try_from(e.action)
                        .map(|a| a.as_str_name().trim_start_matches("POLICY_ACTION_").to_string())
                        .unwrap_or_default();
                    println!(
                        "seq {} {action} {} ({} {} of {}, effective {}){}{}{}",
                        e.seq,
                        i.id,
                        i.kind,
                        i.number,
                        i.issuer,
                        i.effective_on,
                        if e.target.is_empty() { String::new() } else { format!(" target {}", e.target) },
                        if e.rules_blake3.is_empty() { String::new() } else { format!(" rules {}", e.rules_blake3) },
                        if e.repealed_by.is_empty() { String::new() } else { format!(" repealed by {}", e.repealed_by) },
                    );
                }
            }
            PolicyCommand::Record { file } => {
                let r = client.record_policy(request(file)?).await.map_err(status)?.into_inner();
                println!(
                    "recorded at seq {}{}{}",
                    r.seq,
                    if r.rules_blake3.is_empty() { String::new() } else { format!(", rules {}", r.rules_blake3) },
                    if r.deduplicated { " (a retry: the original's answer)" } else { "" }
                );
            }
            PolicyCommand::Preview { file } => {
                let r = client.preview_policy(request(file)?).await.map_err(status)?.into_inner();
                println!(
                    "as of seq {}: {} open cases ({} without an application); {} interim certificates extended; \
                     {} decision deadlines moved; channels opening today: [{}]; closing: [{}]",
                    r.position_seq,
                    r.cases,
                    r.without_application,
                    r.interim_certificates_extended,
                    r.decision_deadlines_moved,
                    r.channels_opening.join(", "),
                    r.channels_closing.join(", ")
                );
            }
        }
        Ok::<_, BoxError>(ExitCode::SUCCESS)
    })
}
