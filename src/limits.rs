//! Every limit the registry enforces, in one place.
//!
//! TigerBeetle's rule: put a limit on everything. A request that exceeds one of
//! these is refused with an error naming the limit, and nothing is written.

/// Largest payload of a single event, in bytes (the prost-encoded body, sealed
/// personal fields included).
pub const EVENT_PAYLOAD_BYTES_MAX: usize = 64 * 1024;
/// Events one append request may carry (one command may produce several).
pub const REQUEST_EVENTS_MAX: usize = 16;
/// Total payload bytes of one append request.
pub const REQUEST_PAYLOAD_BYTES_MAX: usize = 256 * 1024;
/// Append requests the writer takes into one group commit.
pub const BATCH_REQUESTS_MAX: usize = 512;
/// Streams one append may cover atomically (a family link: its two cases).
pub const APPEND_STREAMS_MAX: usize = 2;
/// Family links one case may record, ended ones included (each is an event
/// on both cases; a PEP-Tutor decision reads the linked cases).
pub const FAMILY_LINKS_MAX: usize = 64;
/// Events the writer puts into one group commit.
pub const BATCH_EVENTS_MAX: usize = 2048;
/// Append requests waiting for the writer; senders wait (back-pressure) when full.
pub const QUEUE_REQUESTS_MAX: usize = 4096;

/// Stream (case) identifiers: 1..=128 bytes of `[A-Za-z0-9._:-]`.
pub const STREAM_ID_BYTES_MAX: usize = 128;
/// Event type names: 1..=64 bytes of printable ASCII without spaces.
pub const EVENT_TYPE_BYTES_MAX: usize = 64;
/// Request (idempotency) ids: 1..=64 bytes of printable ASCII without spaces.
pub const REQUEST_ID_BYTES_MAX: usize = 64;
/// Actor user id and office: 1..=64 bytes of printable ASCII without spaces.
pub const ACTOR_FIELD_BYTES_MAX: usize = 64;

// --- Caseworker requests (src/api/convert.rs, src/api/mod.rs) ---

/// A code field of a request (a reason, a ground, a site): 1..=32 bytes of
/// `[A-Z0-9_-]`.
pub const CODE_BYTES_MAX: usize = 32;
/// The purpose of a personal-data read (recorded in its access event): a
/// code of 1..=64 bytes of `[A-Za-z0-9_.:-]`.
pub const ACCESS_PURPOSE_BYTES_MAX: usize = 64;
/// Identity documents one person may present.
pub const PERSON_DOCUMENTS_MAX: usize = 8;
/// Most side writes one append carries: a new person key and a reservation
/// per document.
pub const APPEND_SIDE_WRITES_MAX: usize = 1 + PERSON_DOCUMENTS_MAX;
/// Given names, and separately family names, in characters (after trimming).
pub const PERSON_NAMES_CHARS_MAX: usize = 100;
/// A phone number, in characters (after trimming).
pub const PERSON_PHONE_CHARS_MAX: usize = 32;
/// An e-mail address, in characters (after trimming; RFC 5321's 254).
pub const PERSON_EMAIL_CHARS_MAX: usize = 254;
/// A postal address, in characters (after trimming).
pub const PERSON_ADDRESS_CHARS_MAX: usize = 200;
/// A birth date lies at most this many years before the business date.
pub const BIRTH_DATE_YEARS_AGO_MAX: i64 = 120;
/// Largest household a survey may record (at least 1).
pub const HOUSEHOLD_SIZE_MAX: u32 = 30;
/// A normalized identity document number, in ASCII letters and digits
/// (`pii::normalize`; the blind index is computed over it).
pub const DOCUMENT_NUMBER_CHARS_MAX: usize = 32;
/// A document type code, in ASCII characters (`pii::normalize_doc_type`).
pub const DOCUMENT_TYPE_CHARS_MAX: usize = 32;
/// The most recent events a `GetCase` answer lists as the case's history
/// (`ListCaseEvents` pages through all of them).
pub const CASE_HISTORY_EVENTS_MAX: usize = 1000;
/// Events per `ListCaseEvents` page when the request gives no limit.
pub const CASE_EVENTS_PAGE_DEFAULT: usize = 100;
/// Largest `ListCaseEvents` page.
pub const CASE_EVENTS_PAGE_MAX: u32 = 1000;
/// Characters of an unknown code or value an error message repeats back (an
/// unknown dimension, metric, code or month).
pub const ECHOED_VALUE_CHARS_MAX: usize = 40;
/// Characters of an unparsable date an error message repeats back.
pub const ECHOED_DATE_CHARS_MAX: usize = 32;

/// Records one chunk (one sled value of the store's `log` tree) holds at most.
pub const CHUNK_EVENTS_MAX: usize = 256;
/// A chunk is closed before a record would take it past this many bytes
/// (a chunk always holds at least one record, so one large record may exceed it).
pub const CHUNK_BYTES_TARGET: usize = 128 * 1024;
/// Events one stream (case) may hold; the writer refuses an append past it.
/// Bounds a case file and makes every case readable in one page.
pub const STREAM_EVENTS_MAX: usize = 10_000;
/// The case-file follower writes its changed case files at most this long
/// after they changed (a restart replays the log after what it wrote).
pub const CASE_FILES_FLUSH_INTERVAL_MS: u64 = 1_000;
/// ...or sooner, once this many case files are waiting.
pub const CASE_FILES_FLUSH_FILES_MAX: usize = 65_536;
/// Group commits queued for the case-file follower; the writer waits when full.
pub const CASE_FILES_QUEUE_MAX: usize = 256;

/// How long a retry racing its original waits for the original's commit
/// (durable, its case files visible) to be published before it is answered
/// UNAVAILABLE. Publishing follows the commit within microseconds.
pub const PUBLISH_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How many times the case service prepares a command whose side writes
/// conflict (a copy of a registration racing its original needs two).
pub const PREPARE_ATTEMPTS_MAX: usize = 3;
/// A document reservation older than this (µs) whose case never got an
/// event is stale (its registration failed or crashed) and may be taken over.
pub const RESERVATION_STALE_US: i64 = 60_000_000;

/// Largest page a global or per-stream read returns.
pub const READ_PAGE_EVENTS_MAX: usize = 10_000;
// Every case is readable in one page (a case is folded from one read).
const _: () = assert!(STREAM_EVENTS_MAX <= READ_PAGE_EVENTS_MAX);

/// Entries `copy_store` writes to the target per sled batch.
pub const COPY_STORE_BATCH_ENTRIES: u64 = 10_000;
/// Times opening a store retries while another process (or a closing
/// handle) holds sled's lock, [`STORE_LOCK_RETRY_MS`] apart.
pub const STORE_LOCK_RETRIES: u32 = 50;
/// Pause between two attempts to take a store's lock.
pub const STORE_LOCK_RETRY_MS: u64 = 100;

/// Streams whose current version the writer keeps in memory (cleared when full).
pub const STREAM_VERSION_CACHE_MAX: usize = 262_144;
/// Folded case states the case service keeps (the cases being worked on).
pub const CASE_STATE_CACHE_MAX: usize = 65_536;

/// Largest gRPC request message the server decodes.
pub const GRPC_MESSAGE_BYTES_MAX: usize = 256 * 1024;
/// Largest gRPC response message the server encodes.
pub const GRPC_RESPONSE_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Concurrent requests the server handles per connection.
pub const GRPC_CONCURRENCY_PER_CONNECTION: usize = 256;
/// Deadline applied to requests that carry none.
pub const GRPC_DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Threads of the server's blocking pool (sled reads, sealing).
pub const BLOCKING_THREADS_MAX: usize = 64;

// --- Audit (src/audit) ---

/// Log records the Merkle follower reads and appends as one sled transaction.
pub const AUDIT_FOLLOW_BATCH_EVENTS: usize = 4096;
/// Pause of the Merkle follower between catch-ups (lets group commits gather).
pub const AUDIT_FOLLOW_PAUSE_MS: u64 = 20;
/// Largest page of events the audit service's `GetEvents` returns.
pub const AUDIT_GET_EVENTS_MAX: usize = 1000;
/// Events a `TailLog` stream buffers for a slow reader before it waits.
pub const AUDIT_TAIL_BUFFER_EVENTS: usize = 256;
/// Concurrent `TailLog` streams the audit service serves.
pub const AUDIT_TAIL_STREAMS_MAX: usize = 64;
/// Concurrent `VerifyLog` runs (each walks the whole log).
pub const AUDIT_VERIFY_RUNS_MAX: usize = 2;
/// Progress messages a `VerifyLog` stream buffers for a slow reader before
/// the walk waits.
pub const AUDIT_VERIFY_PROGRESS_BUFFER: usize = 16;
/// A `VerifyLog` progress message every this many events.
pub const AUDIT_VERIFY_PROGRESS_EVERY: u64 = 65_536;
/// Default interval between periodic checkpoints, in seconds.
pub const AUDIT_CHECKPOINT_INTERVAL_SECS_DEFAULT: u64 = 60;
/// Largest signed note (checkpoint) accepted, in bytes.
pub const AUDIT_NOTE_BYTES_MAX: usize = 16 * 1024;
/// Signature lines a note may carry (the C2SP / Go `note` cap).
pub const AUDIT_NOTE_SIGNATURES_MAX: usize = 100;
/// Largest receipt file accepted, in bytes (a record plus proof plus checkpoint).
pub const AUDIT_RECEIPT_BYTES_MAX: usize = 512 * 1024;
/// Largest record an export may carry (a v1 record with a full payload fits).
pub const AUDIT_EXPORT_RECORD_BYTES_MAX: usize = 128 * 1024;

/// Events the statistics projection applies per persisted batch (one sled
/// batch holds the changed facts and the checkpoint).
pub const PROJECTION_BATCH_EVENTS: usize = 100_000;
/// The statistics follower persists its facts at most this often (a restart
/// re-applies the events after the persisted checkpoint).
pub const PROJECTION_PERSIST_INTERVAL_MS: u64 = 500;
/// Pause of the statistics follower after each wake-up (lets group commits gather).
pub const PROJECTION_FOLLOW_PAUSE_MS: u64 = 10;
/// How long `serve` waits at start-up for the statistics projection to load
/// before serving anyway (Statistics answers UNAVAILABLE until it is loaded;
/// a small store is loaded well within this, a large one takes seconds).
pub const PROJECTION_LOAD_WAIT_AT_START_MS: u64 = 250;

/// Threads that read the statistics projection's per-case facts at start-up,
/// each over one slice of the (uniformly hashed) case-key space. On a store
/// larger than memory the facts lie scattered across sled's file and the
/// load is bound by the latency of one-node reads; several in flight
/// shorten it (BENCHMARKS.md, cold start at full scale).
pub const PROJECTION_LOAD_THREADS: usize = 8;

/// Facts per message from a loading thread to the one that builds the
/// state, and messages in flight per thread (bounds the load's extra memory).
pub const PROJECTION_LOAD_CHUNK: usize = 4_096;
/// At a stop, the statistics follower applies what was appended since its
/// last step for at most this long before persisting (the rest is
/// re-applied at the next start).
pub const PROJECTION_STOP_CATCH_UP_MS: u64 = 5_000;
/// Dimensions one statistics breakdown may combine.
pub const STATS_BREAKDOWN_DIMS_MAX: usize = 3;
/// Filters one statistics query may carry.
pub const STATS_FILTERS_MAX: usize = 16;
/// Smallest published cell (primary suppression below it).
pub const STATS_MIN_CELL: u64 = 5;
/// Smallest published cell when the cell involves minors or a municipality.
pub const STATS_MIN_CELL_SENSITIVE: u64 = 10;
/// Bytes of records one `GetEvents` page (or `TailLog` read) carries at most
/// (a page stops early, at least one event, to stay under the response limit).
pub const AUDIT_GET_EVENTS_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Largest access file (tokens and certificate principals) accepted, in bytes.
pub const ACCESS_FILE_BYTES_MAX: u64 = 8 * 1024 * 1024;
/// Most tokens (and, separately, certificate principals) in the access file.
pub const ACCESS_TOKENS_MAX: usize = 20_000;
/// How often (at most) the server checks whether the access file changed, in ms.
pub const ACCESS_RELOAD_CHECK_MS: u64 = 250;
/// Longest `authorization` metadata value accepted, in bytes.
pub const AUTHORIZATION_BYTES_MAX: usize = 256;
/// Longest certificate identity (CN or DNS SAN) considered, in bytes.
pub const CERT_IDENTITY_BYTES_MAX: usize = 64;
/// Most DNS SANs of a client certificate considered.
pub const CERT_SANS_MAX: usize = 16;
// --- Bulk import (src/api/import.rs, proto/regularization/v1/import.proto) ---

/// Commands one imported case history may carry.
pub const IMPORT_HISTORY_COMMANDS_MAX: usize = 256;
/// Histories of one `ImportCases` stream processed concurrently (order
/// within a history is kept; the stream is read on when one finishes).
pub const IMPORT_HISTORIES_IN_FLIGHT_MAX: usize = 32;
/// Rejections an `ImportSummary` lists (those of the lowest history indexes;
/// the total is always counted).
pub const IMPORT_REJECTIONS_REPORTED_MAX: usize = 100;
/// A history's legacy reference: empty, or 1..=64 bytes of `[A-Za-z0-9._:/-]`.
pub const IMPORT_LEGACY_REF_BYTES_MAX: usize = 64;

/// How often the tail verifier re-reads what was committed since the verified
/// position and advances it (src/log/mod.rs). A crash leaves at most about
/// this much (plus one flush) for the next start-up to verify.
pub const TAIL_VERIFY_INTERVAL_MS: u64 = 1_000;

/// Events the worklist follower applies per sled batch when it catches up
/// (one batch holds the changed index entries, per-case facts and the
/// checkpoint; while following the head a batch holds what arrived).
pub const WORKLIST_BATCH_EVENTS: usize = 50_000;
/// Items per worklist page when the request gives no page size.
pub const WORKLIST_PAGE_SIZE_DEFAULT: u32 = 100;
/// Largest worklist page.
pub const WORKLIST_PAGE_SIZE_MAX: u32 = 1_000;
/// Index entries one worklist page examines at most (filters on
/// municipality, office, stage and site are checked per entry): a page may
/// come back short, with a token to continue, so every call stays fast.
pub const WORKLIST_SCAN_ENTRIES_MAX: usize = 5_000;
/// Default reach, in days after the reference date, of the "expiring" and
/// "near abandonment" worklists ("permits expiring in a month").
pub const WORKLIST_HORIZON_DAYS_DEFAULT: u32 = 30;
/// Longest reach a request may ask for.
pub const WORKLIST_HORIZON_DAYS_MAX: u32 = 366;
/// Months the authority has to decide an appeal (recurso de reposición)
/// before the worklist shows it as due. DOMAIN.md names the appeal
/// ("recurso de reposición (to confirm)") but no period, and channels.json
/// has none; this is the general rule of Colombian administrative procedure
/// (Ley 1437 de 2011, art. 86: an appeal not decided within two months is
/// deemed rejected), to confirm. Used for `due_on` only, never enforced.
pub const APPEAL_DECISION_MONTHS: i64 = 2;

/// Free disk space kept in reserve by default (`registry serve --disk-reserve-mib`).
pub const DISK_RESERVE_MIB_DEFAULT: u64 = 1024;
/// How often the disk guard measures free space.
pub const DISK_CHECK_INTERVAL_MS: u64 = 500;
/// How often the server re-derives the health of its services.
pub const HEALTH_CHECK_INTERVAL_MS: u64 = 250;

/// Longest rules JSON one policy instrument may carry (RecordPolicy); well
/// under the request limit, and ~100 channels in full.
pub const POLICY_RULES_JSON_BYTES_MAX: usize = 128 * 1024;
