//! The statistics service end to end: a real server on 127.0.0.1, cases
//! recorded through the caseworker API, counts read back through gRPC.

mod common;

use std::time::{Duration, Instant};

use common::*;
use registry::api::pb;
use registry::api::pb::statistics_client::StatisticsClient;
use tonic::Code;

async fn caseload(
    s: &mut StatisticsClient<registry::client::AuthChannel>,
    by: &[&str],
    published: bool,
) -> pb::CaseloadResponse {
    s.caseload(pb::CaseloadRequest {
        by: by.iter().map(|b| b.to_string()).collect(),
        published,
        ..Default::default()
    })
    .await
    .expect("caseload")
    .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caseload_by_status_counts_the_recorded_cases_and_states_its_log_position() {
    let server = TestServer::start().await;
    let mut c = server.client().await;
    let mut last_seq = 0;
    for (i, name) in ["ANA", "BEA"].iter().enumerate() {
        let mut t = register(&mut c, name, &format!("V5100000{i}"), "2022-03-01").await;
        t.pre_register(&mut c, "2022-03-02").await;
        t.schedule(&mut c, "2022-03-03", "2022-03-10").await;
        t.capture(&mut c, "2022-03-10").await;
        t.approve(&mut c, "2022-04-01").await;
        last_seq = t
            .issue_permit(&mut c, "2022-04-02", &format!("PPT51{i}"))
            .await
            .last_seq;
    }
    let irregular = register(&mut c, "CARLA", "V52000000", "2022-03-01").await;
    assert!(irregular.last_seq > last_seq);
    last_seq = irregular.last_seq;

    let channel = registry::client::connect(&server.options("statistician"), Duration::from_secs(10))
        .await
        .unwrap();
    let mut s = StatisticsClient::new(channel);
    // The projection follows the log: wait until it reflects the last command.
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let a = caseload(&mut s, &["status"], false).await;
        if a.position.as_ref().is_some_and(|p| p.seq >= last_seq) || Instant::now() > deadline {
            break a;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let position = answer
        .position
        .clone()
        .expect("every answer states its log position");
    assert_eq!(position.seq, last_seq);
    assert_eq!(position.hash.len(), 64, "hex of the chain hash");
    let count = |label: &str| {
        answer
            .cells
            .iter()
            .filter(|c| c.values.iter().any(|v| v == label))
            .map(|c| c.count)
            .sum::<u64>()
    };
    assert_eq!(answer.total, 3);
    assert_eq!(count("REGULAR_PPT"), 2, "{answer:?}");
    assert_eq!(count("IRREGULAR"), 1, "{answer:?}");
    // Nothing personal in a statistics answer.
    let text = format!("{answer:?}");
    for secret in ["ANA", "BEA", "CARLA", "51000000", "52000000"] {
        assert!(!text.contains(secret), "statistics leaked {secret}");
    }

    // Published mode hides these small cells.
    let published = caseload(&mut s, &["status"], true).await;
    assert!(
        published.cells.iter().all(|c| c.suppressed && c.count == 0),
        "{published:?}"
    );

    // An unknown dimension names the field.
    let bad = s
        .caseload(pb::CaseloadRequest {
            by: vec!["shoe_size".into()],
            ..Default::default()
        })
        .await
        .expect_err("unknown dimension");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("by"), "{}", bad.message());
    drop(s);
    drop(c);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_projection_loads_statistics_answer_unavailable() {
    use pb::statistics_server::Statistics;
    let svc = registry::api::statistics::StatisticsService::with_slot(
        std::sync::Arc::new(registry::projection::ProjectionSlot::default()),
        registry::projection::SuppressionRules::default(),
    );
    let e = svc
        .caseload(tonic::Request::new(pb::CaseloadRequest {
            by: vec!["status".into()],
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(e.message().contains("still loading"), "{}", e.message());
    let e = svc
        .funnel(tonic::Request::new(pb::FunnelRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
}

/// A projection that cannot be loaded no longer keeps the registry from
/// serving cases: Statistics answers INTERNAL naming the remedy and its
/// health says NOT_SERVING; a rebuilt projection serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unloadable_projection_leaves_cases_served_and_statistics_unavailable() {
    use tonic_health::pb::health_check_response::ServingStatus;

    let server = TestServer::start().await;
    let mut c = server.client().await;
    let t = register(&mut c, "ANA", "V53000000", "2022-03-01").await;
    drop(c);
    let tmp = server.stop().await;
    let data_dir = tmp.path().join("data");
    {
        let store = open_store(&data_dir);
        let tree = store.db().open_tree(registry::projection::TREE).unwrap();
        tree.insert(b"m:version", &[99u8][..]).unwrap();
        store.db().flush().unwrap();
    }

    let server = TestServer::start_on(&data_dir).await;
    let mut c = server.client().await;
    assert_eq!(get_case(&mut c, &t.case_id).await.version, t.version);
    let channel = registry::client::connect(&server.options("statistician"), Duration::from_secs(10))
        .await
        .unwrap();
    let mut s = StatisticsClient::new(channel);
    let e = s
        .caseload(pb::CaseloadRequest {
            by: vec!["status".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Internal);
    assert!(e.message().contains("rebuild-projections"), "{}", e.message());
    assert_eq!(
        server.health("regularization.v1.Statistics").await,
        ServingStatus::NotServing
    );
    assert_eq!(
        server.health("regularization.v1.Caseworker").await,
        ServingStatus::Serving
    );
    drop((c, s));
    server.stop().await;

    // The remedy the message names: drop and rebuild (here at the next start).
    {
        let store = open_store(&data_dir);
        registry::projection::Engine::drop_tree(&store, registry::projection::TREE).unwrap();
        store.db().flush().unwrap();
    }
    let server = TestServer::start_on(&data_dir).await;
    let channel = registry::client::connect(&server.options("statistician"), Duration::from_secs(10))
        .await
        .unwrap();
    let mut s = StatisticsClient::new(channel);
    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        match s
            .caseload(pb::CaseloadRequest {
                by: vec!["status".into()],
                ..Default::default()
            })
            .await
        {
            Ok(a) => break a.into_inner(),
            Err(e) if e.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(answer.total, 1);
    drop(s);
    server.stop().await;
    drop(tmp);
}
