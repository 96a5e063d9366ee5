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

/// Largest page a global or per-stream read returns.
pub const READ_PAGE_EVENTS_MAX: usize = 10_000;

/// Streams whose current version the writer keeps in memory (cleared when full).
pub const STREAM_VERSION_CACHE_MAX: usize = 262_144;

/// Largest gRPC request message the server decodes.
pub const GRPC_MESSAGE_BYTES_MAX: usize = 256 * 1024;
/// Largest gRPC response message the server encodes.
pub const GRPC_RESPONSE_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Concurrent requests the server handles per connection.
pub const GRPC_CONCURRENCY_PER_CONNECTION: usize = 256;
/// Deadline applied to requests that carry none.
pub const GRPC_DEFAULT_TIMEOUT_MS: u64 = 30_000;
