//! Side writes (a registration's person key, document reservations) travel
//! with an append: the writer checks each condition against the trees and
//! the appends staged before it, writes them with the events or refuses the
//! append with nothing written, and ignores them on a retry. (That they
//! survive `kill -9` with the records: tests/log_crash.rs.)

use std::path::Path;
use std::sync::Arc;

use registry::log::{
    Actor, AppendError, AppendRequest, ExpectedVersion, Log, NewEvent, Side, SideWrite, SyncMode,
    WriterConfig,
};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

#[path = "support/retry.rs"]
mod retry;
use retry::retry_while_locked;

fn open(dir: &Path) -> Log {
    retry_while_locked(|| {
        Log::open(
            dir,
            WriterConfig {
                sync: SyncMode::Fdatasync,
            },
        )
    })
    .expect("open log")
}

fn registration(case: &str) -> AppendRequest {
    AppendRequest {
        stream_id: case.into(),
        expected: ExpectedVersion::NoStream,
        request_id: format!("req-{case}"),
        actor: Actor {
            user_id: "u-1".into(),
            office: "BOG".into(),
        },
        events: vec![NewEvent {
            event_type: "CaseNoted".into(),
            payload: format!("registration of {case}").into_bytes(),
        }],
    }
}

fn reserve(doc: &[u8], case: &str, expect: Option<Vec<u8>>) -> SideWrite {
    SideWrite {
        tree: Side::Documents,
        key: doc.to_vec(),
        expect,
        value: case.as_bytes().to_vec(),
    }
}

fn documents(log: &Log) -> sled::Tree {
    log.store().db().open_tree(Side::Documents.tree_name()).unwrap()
}

#[tokio::test]
async fn a_side_write_lands_with_its_events_and_a_failed_condition_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let appender = log.appender();
    let first = appender
        .append_with(registration("case-a"), vec![reserve(b"doc-1", "case-a", None)])
        .await
        .unwrap();
    assert_eq!(
        documents(&log).get(b"doc-1").unwrap().as_deref(),
        Some(&b"case-a"[..])
    );

    // Another case reserving the same document: refused, nothing written.
    let head = log.store().head().unwrap();
    let refused = appender
        .append_with(
            registration("case-b"),
            vec![
                reserve(b"doc-2", "case-b", None),
                reserve(b"doc-1", "case-b", None),
            ],
        )
        .await;
    assert_eq!(refused, Err(AppendError::SideConflict { index: 1 }));
    assert_eq!(log.store().head().unwrap(), head);
    assert_eq!(log.store().stream_version("case-b").unwrap(), 0);
    assert_eq!(documents(&log).get(b"doc-2").unwrap(), None);
    assert_eq!(
        documents(&log).get(b"doc-1").unwrap().as_deref(),
        Some(&b"case-a"[..])
    );

    // A condition on the value held: taking over a known holder's entry.
    appender
        .append_with(
            registration("case-c"),
            vec![reserve(b"doc-1", "case-c", Some(b"case-a".to_vec()))],
        )
        .await
        .unwrap();
    assert_eq!(
        documents(&log).get(b"doc-1").unwrap().as_deref(),
        Some(&b"case-c"[..])
    );

    // A retry of the first request gets its answer; its side writes are not
    // checked or written again.
    let retry = appender
        .append_with(registration("case-a"), vec![reserve(b"doc-1", "case-a", None)])
        .await
        .unwrap();
    assert!(retry.deduplicated);
    assert_eq!(retry.first_seq, first.first_seq);
    assert_eq!(
        documents(&log).get(b"doc-1").unwrap().as_deref(),
        Some(&b"case-c"[..])
    );
    drop(appender);
    log.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_appends_on_one_document_one_wins_the_others_write_nothing() {
    const RACERS: usize = 32;
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let barrier = Arc::new(Barrier::new(RACERS));
    let mut tasks = JoinSet::new();
    for i in 0..RACERS {
        let appender = log.appender();
        let barrier = barrier.clone();
        tasks.spawn(async move {
            let case = format!("case-{i}");
            barrier.wait().await;
            let result = appender
                .append_with(registration(&case), vec![reserve(b"shared-doc", &case, None)])
                .await;
            (case, result)
        });
    }
    let mut winners = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (case, result) = joined.unwrap();
        match result {
            Ok(_) => winners.push(case),
            Err(AppendError::SideConflict { index: 0 }) => {
                assert_eq!(
                    log.store().stream_version(&case).unwrap(),
                    0,
                    "{case} refused but written"
                );
            }
            Err(e) => panic!("{case}: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one racer reserves the document");
    let held = documents(&log).get(b"shared-doc").unwrap().unwrap();
    assert_eq!(held.as_ref(), winners[0].as_bytes());
    assert_eq!(log.store().head().unwrap().seq, 1);
    log.shutdown().unwrap();
}

#[tokio::test]
async fn an_append_with_more_side_writes_than_the_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let side = (0..=registry::limits::APPEND_SIDE_WRITES_MAX)
        .map(|i| reserve(format!("doc-{i}").as_bytes(), "case-x", None))
        .collect();
    let refused = log.appender().append_with(registration("case-x"), side).await;
    assert!(matches!(
        refused,
        Err(AppendError::TooLarge {
            field: "side writes",
            ..
        })
    ));
    assert_eq!(log.store().head().unwrap().seq, 0);
    log.shutdown().unwrap();
}
