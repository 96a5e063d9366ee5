//! Shared by the log tests (`#[path = "support/requests.rs"] mod requests;`).

use registry::log::{Actor, AppendRequest, ExpectedVersion, NewEvent};

/// Request `i` of a synthetic log: stream `case-<i mod streams>`, request id
/// `req-<i>`, 1 to 3 `CaseNoted` events whose payloads name the request and part.
pub fn noted(i: usize, streams: usize) -> AppendRequest {
    AppendRequest {
        stream_id: format!("case-{}", i % streams),
        expected: ExpectedVersion::Any,
        request_id: format!("req-{i}"),
        actor: Actor {
            user_id: "u-17".into(),
            office: "BOG".into(),
        },
        events: (0..1 + i % 3)
            .map(|p| NewEvent {
                event_type: "CaseNoted".into(),
                payload: format!("request {i} part {p}: sealed body").into_bytes(),
            })
            .collect(),
    }
}
