//! The system of record for migrant regularization cases.
//!
//! Every change is an event in an append-only, BLAKE3 hash-chained log stored
//! in sled; the current state of a case is derived from its events.
//!
//! Modules:
//! - [`limits`]: every size, batch and queue limit, in one place.
//! - [`domain`]: the pure rules: commands -> events, the case state machine,
//!   derived person status, channels as data. No I/O.
//! - [`log`]: the record format, the single writer (group commit with durable
//!   acknowledgement), reads, and chain verification.
//! - [`pii`]: sealing personal data with per-person keys (crypto-shredding),
//!   master-key wrapping and blind indexes for document look-ups.
//! - [`codec`]: domain events <-> stored prost payloads.
//! - [`cases`]: the case service: load, decide, seal, append; document index.
//! - [`client`]: connecting to a running server with credentials (tools, tests).
//! - [`clock`]: business dates: today in Colombia (America/Bogota).
//! - [`api`]: tonic services; the one place errors become gRPC statuses.
//! - [`auth`]: principals, roles, department scopes, TLS; the access file.
//! - [`audit`]: Merkle tree, signed checkpoints, proofs, receipts, exports (docs/AUDIT.md).
//! - [`bench`](mod@bench): the `registry bench` measurements.
//! - [`cli`]: the `registry` command: arguments and handlers, one file per command family.
//! - [`server`]: the gRPC service (`registry serve`).
//! - [`config`]: the settings of `registry serve`: defaults < TOML file <
//!   `REGISTRY_*` variables < flags (figment); `registry config check`.
//! - [`metrics`]: the Prometheus endpoint (`--metrics-listen`) and what it counts.
//! - [`simulate`]: the deterministic synthetic caseload (`registry simulate`).
//! - [`loadtest`]: `registry load-test`, a mixed workload against a running server.
//! - [`progress`]: progress bars, and plain progress lines when stderr is not a terminal.
//! - [`projection`]: statistics projections (caseload, series, funnel; disclosure control).
//! - [`worklist`]: caseworker worklists, a projection of the log (docs/WORKLISTS.md).

// Every public item says what it is (CI's clippy -D warnings refuses one
// that does not).
#![warn(missing_docs)]

pub mod api;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod bench;
pub mod bench_layouts;
pub mod case_cache;
pub mod cases;
pub mod cli;
pub mod client;
pub mod clock;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod domain;
pub mod hex;
pub mod limits;
pub mod loadtest;
pub mod log;
pub mod metrics;
pub mod middleware;
pub mod pii;
pub mod progress;
pub mod projection;
pub mod release;
pub mod server;
pub mod simulate;
pub mod worklist;
