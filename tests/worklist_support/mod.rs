//! Helpers of the worklist tests (`tests/worklist_*.rs`): a Worklists
//! client on the test server, whole lists read page by page, and waiting
//! until the projection reflects a log position.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use registry::api::pb;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::common::{as_role, TestServer};

pub use pb::worklists_client::WorklistsClient;
pub use pb::WorklistKind as Kind;

pub type Worklists = WorklistsClient<Channel>;

/// A Worklists client on `server`.
pub async fn worklists(server: &TestServer) -> Worklists {
    let channel = Channel::from_shared(server.target())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    WorklistsClient::new(channel)
}

/// A request for `kind` relative to `reference` ("" for today), page size 1000.
pub fn request(kind: Kind, reference: &str) -> pb::ListWorklistRequest {
    pb::ListWorklistRequest {
        kind: kind as i32,
        reference_date: reference.to_string(),
        page_size: 1000,
        ..Default::default()
    }
}

/// One call as `role`, retrying while the projection catches up after a start.
pub async fn call(
    c: &mut Worklists,
    role: &str,
    r: &pb::ListWorklistRequest,
) -> Result<pb::ListWorklistResponse, Status> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match c.list_worklist(as_role(role, r.clone())).await {
            Err(s) if s.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other.map(|r| r.into_inner()),
        }
    }
}

/// Every item of a list, following the page tokens; and the position of
/// the last page.
pub async fn list_all(
    c: &mut Worklists,
    role: &str,
    r: &pb::ListWorklistRequest,
) -> (Vec<pb::WorklistItem>, u64) {
    let mut r = r.clone();
    let mut items = Vec::new();
    for _ in 0..10_000 {
        let page = call(c, role, &r).await.expect("list page");
        items.extend(page.items);
        if page.next_page_token.is_empty() {
            return (items, page.position.expect("position").seq);
        }
        r.page_token = page.next_page_token;
    }
    panic!("a list that never ends");
}

/// Waits until the worklists reflect at least `seq` (the follower applies
/// the log a few milliseconds behind it).
pub async fn wait_for(c: &mut Worklists, seq: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = call(c, "supervisor", &request(Kind::Appointments, ""))
            .await
            .expect("list");
        if r.position.expect("position").seq >= seq {
            return;
        }
        assert!(Instant::now() < deadline, "worklists did not reach seq {seq}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The items of case `case_id` in list `kind` on `reference`, once the
/// worklists reflect `seq`.
pub async fn items_of(
    c: &mut Worklists,
    kind: Kind,
    reference: &str,
    case_id: &str,
    seq: u64,
) -> Vec<pb::WorklistItem> {
    wait_for(c, seq).await;
    let (items, _) = list_all(c, "supervisor", &request(kind, reference)).await;
    items.into_iter().filter(|i| i.case_id == case_id).collect()
}

/// Every list on `reference`, in kind order (for comparing whole states).
pub async fn all_lists(c: &mut Worklists, reference: &str) -> Vec<(i32, Vec<pb::WorklistItem>)> {
    let mut out = Vec::new();
    for kind in 1..=12 {
        let kind = Kind::try_from(kind).expect("kind");
        let (items, _) = list_all(c, "supervisor", &request(kind, reference)).await;
        out.push((kind as i32, items));
    }
    out
}
