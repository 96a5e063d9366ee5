//! The Prometheus endpoint (`--metrics-listen`): a real server on
//! 127.0.0.1, scraped over HTTP/1.1 before and after a few calls; and the
//! log's own counters for refusals that only the writer decides.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use registry::api::pb;
use registry::log::{
    Actor, AppendError, AppendRequest, ExpectedVersion, Log, NewEvent, SyncMode, WriterConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::{Code, Request};

use pb::DocumentType as Doc;

/// A free port on 127.0.0.1 (bound, then released for the server to take).
fn free_loopback_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

/// `GET path` over a raw HTTP/1.1 connection: (status line, content type, body).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<(String, String, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("headers end");
    let status = head.lines().next().unwrap_or("").to_string();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    Ok((status, content_type, body.to_string()))
}

/// Scrapes `/metrics` (waiting for the endpoint while the server starts).
async fn scrape(addr: std::net::SocketAddr) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match http_get(addr, "/metrics").await {
            Ok((status, content_type, body)) => {
                assert!(status.contains(" 200 "), "{status}");
                assert!(
                    content_type.starts_with("text/plain; version=0.0.4"),
                    "{content_type}"
                );
                return body;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("metrics endpoint unreachable: {e}"),
        }
    }
}

/// Samples by `name{labels}` (as written by the encoder).
fn samples(body: &str) -> HashMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').expect("sample line");
            (
                k.to_string(),
                v.parse::<f64>().unwrap_or_else(|_| panic!("value of {l}")),
            )
        })
        .collect()
}

fn get(s: &HashMap<String, f64>, key: &str) -> f64 {
    s.get(key).copied().unwrap_or(0.0)
}

fn rpc(method: &str, code: &str) -> String {
    format!("registry_rpc_calls_total{{service=\"regularization.v1.Caseworker\",method=\"{method}\",code=\"{code}\"}}")
}

fn auth(reason: &str) -> String {
    format!("registry_auth_failures_total{{reason=\"{reason}\"}}")
}

fn lag(follower: &str) -> String {
    format!("registry_follower_lag_events{{follower=\"{follower}\"}}")
}

#[tokio::test]
async fn scrape_counts_calls_refusals_and_appends_and_carries_no_personal_data() {
    let metrics_addr = free_loopback_addr();
    let server = TestServer::start_configured(SyncMode::Flush, |config, _| {
        config.metrics_listen = Some(metrics_addr);
    })
    .await;
    let mut c = server.client().await;
    let before = samples(&scrape(metrics_addr).await);

    // A lifecycle: three accepted commands, two reads of personal data.
    let given = "ZULEIMA METRICSQX";
    let cedula = "V-55.443.322";
    let p = person(
        given,
        "TESTNAMEQX",
        "1987-11-23",
        &[(Doc::VenezuelanCedula, cedula)],
    );
    let registration = register_request(p, "2022-03-01");
    let registration_rid = registration.header.as_ref().unwrap().request_id.clone();
    let mut t = Tracker::registered(&ok(c.register_person(req(registration)).await));
    get_case(&mut c, &t.case_id).await;
    let found = ok(c
        .find_cases_by_document(req(pb::FindCasesByDocumentRequest {
            document: Some(pb::IdentityDocument {
                r#type: Doc::VenezuelanCedula as i32,
                number: cedula.into(),
            }),
            purpose: "REVIEW".into(),
        }))
        .await);
    assert_eq!(found.case_ids, vec![t.case_id.clone()]);
    t.pre_register(&mut c, "2022-03-02").await;
    t.schedule(&mut c, "2022-03-03", "2022-03-10").await;

    // Refused: a step the stage does not allow; a decision by a caseworker.
    fails(
        c.approve(req(simple(&t.case_id, t.version, "2022-03-04"))).await,
        Code::FailedPrecondition,
    );
    fails(
        c.approve(as_role("caseworker", simple(&t.case_id, t.version, "2022-03-04")))
            .await,
        Code::PermissionDenied,
    );
    // Unauthenticated: no credentials; an unknown token.
    fails(
        c.get_case(Request::new(get_case_request(&t.case_id))).await,
        Code::Unauthenticated,
    );
    let mut unknown = Request::new(get_case_request(&t.case_id));
    unknown
        .metadata_mut()
        .insert("authorization", "Bearer rgt_not-a-known-token".parse().unwrap());
    fails(c.get_case(unknown).await, Code::Unauthenticated);

    let body = scrape(metrics_addr).await;
    let after = samples(&body);
    let delta = |key: &str| get(&after, key) - get(&before, key);

    // RPCs by service, method and code.
    assert_eq!(delta(&rpc("RegisterPerson", "OK")), 1.0, "{body}");
    assert_eq!(delta(&rpc("PreRegister", "OK")), 1.0);
    assert_eq!(delta(&rpc("ScheduleBiometrics", "OK")), 1.0);
    assert_eq!(delta(&rpc("GetCase", "OK")), 1.0);
    assert_eq!(delta(&rpc("FindCasesByDocument", "OK")), 1.0);
    assert_eq!(delta(&rpc("Approve", "FAILED_PRECONDITION")), 1.0);
    assert_eq!(delta(&rpc("Approve", "PERMISSION_DENIED")), 1.0);
    assert_eq!(delta(&rpc("GetCase", "UNAUTHENTICATED")), 2.0);
    // The latency histogram has the same labels, and one observation per call.
    let hist = "registry_rpc_duration_seconds_count{service=\"regularization.v1.Caseworker\",method=\"GetCase\",code=\"UNAUTHENTICATED\"}";
    assert_eq!(delta(hist), 2.0, "{body}");
    assert!(
        body.contains("registry_rpc_duration_seconds_bucket{service=\"regularization.v1.Caseworker\",method=\"RegisterPerson\",code=\"OK\",le=\"+Inf\"}"),
        "{body}"
    );

    // Authentication and authorization refusals by reason.
    assert_eq!(delta(&auth("missing")), 1.0, "{body}");
    assert_eq!(delta(&auth("token_unknown")), 1.0);
    assert_eq!(delta(&auth("role")), 1.0);

    // Appends: three commands and two access events, each one event; the
    // refusals were decided before the log and appended nothing.
    assert_eq!(
        delta("registry_log_appends_total{result=\"accepted\"}"),
        5.0,
        "{body}"
    );
    assert_eq!(delta("registry_log_events_appended_total"), 5.0);
    for result in ["version_conflict", "invalid", "unavailable", "deduplicated"] {
        assert_eq!(
            delta(&format!("registry_log_appends_total{{result=\"{result}\"}}")),
            0.0,
            "{result}"
        );
    }
    assert!(delta("registry_log_group_commit_seconds_count") >= 1.0);
    assert_eq!(delta("registry_log_group_commit_events_sum"), 5.0);
    assert!(get(&after, "registry_log_flush_seconds_count") >= 1.0);
    // Access events by operation.
    assert_eq!(delta("registry_access_events_total{operation=\"GetCase\"}"), 1.0);
    assert_eq!(
        delta("registry_access_events_total{operation=\"FindCasesByDocument\"}"),
        1.0
    );
    // The commands after the registration found the case in the cache.
    assert!(delta("registry_case_cache_hits_total") >= 1.0, "{body}");

    // The head is the last event appended (the schedule step came last).
    assert_eq!(get(&after, "registry_log_head_seq"), t.last_seq as f64, "{body}");
    assert_eq!(get(&after, "registry_writer_up"), 1.0);
    assert_eq!(get(&after, "registry_log_verification_broken"), 0.0);
    assert!(get(&after, "registry_checkpoints_signed_total") >= 1.0, "{body}");
    assert!(get(&after, "registry_store_size_bytes") > 0.0);
    assert!(get(&after, "registry_disk_free_bytes") > 0.0);
    assert!(get(&after, "registry_disk_total_bytes") >= get(&after, "registry_disk_free_bytes"));

    // Every follower's lag is reported, in events and seconds, and reaches 0.
    for f in registry::metrics::FOLLOWERS {
        assert!(after.contains_key(&lag(f)), "no lag for {f}: {body}");
        assert!(
            after.contains_key(&format!("registry_follower_lag_seconds{{follower=\"{f}\"}}")),
            "no lag seconds for {f}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = samples(&scrape(metrics_addr).await);
        let behind: Vec<_> = registry::metrics::FOLLOWERS
            .iter()
            .filter(|f| get(&now, &lag(f)) != 0.0 || !now.contains_key(&lag(f)))
            .collect();
        if behind.is_empty() {
            for f in registry::metrics::FOLLOWERS {
                let key = format!("registry_follower_lag_seconds{{follower=\"{f}\"}}");
                assert_eq!(get(&now, &key), 0.0, "{key}");
            }
            assert_eq!(get(&now, "registry_follower_up{follower=\"statistics\"}"), 1.0);
            assert_eq!(get(&now, "registry_follower_up{follower=\"worklists\"}"), 1.0);
            break;
        }
        assert!(Instant::now() < deadline, "followers still behind: {behind:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Nothing from a request is a label or a value.
    for needle in [
        t.case_id.as_str(),
        &t.case_id[2..],
        given,
        "ZULEIMA",
        "METRICSQX",
        "TESTNAMEQX",
        cedula,
        "55.443.322",
        "55443322",
        "1987-11-23",
        registration_rid.as_str(),
        "REVIEW",
        "rgt_",
        &server.token("supervisor"),
        &test_principal("supervisor"),
        &test_principal("caseworker"),
    ] {
        assert!(!body.contains(needle), "the metrics carry {needle:?}");
    }

    // Other paths are not served.
    let (status, _, _) = http_get(metrics_addr, "/").await.unwrap();
    assert!(status.contains(" 404 "), "{status}");
    server.stop().await;
}

#[tokio::test]
async fn log_refusals_are_counted_by_reason_and_group_commits_are_measured() {
    let tmp = tempfile::tempdir().unwrap();
    let config = WriterConfig {
        sync: SyncMode::Fdatasync,
    };
    let log = Log::open(tmp.path(), config).expect("open log");
    let appender = log.appender();
    let request = |expected, request_id: &str, payload: &[u8]| AppendRequest {
        stream_id: "metrics-test".into(),
        expected,
        request_id: request_id.into(),
        actor: Actor {
            user_id: "u-1".into(),
            office: "BOG".into(),
        },
        events: vec![NewEvent {
            event_type: "Tested".into(),
            payload: payload.to_vec(),
        }],
    };
    appender
        .append(request(ExpectedVersion::NoStream, "r-1", b"a"))
        .await
        .expect("first");
    let retry = appender
        .append(request(ExpectedVersion::NoStream, "r-1", b"a"))
        .await
        .expect("retry");
    assert!(retry.deduplicated);
    assert!(matches!(
        appender
            .append(request(ExpectedVersion::Exact(5), "r-2", b"b"))
            .await,
        Err(AppendError::VersionConflict { .. })
    ));
    assert!(matches!(
        appender
            .append(request(ExpectedVersion::Any, "r-1", b"other"))
            .await,
        Err(AppendError::IdempotencyMismatch { .. })
    ));
    assert!(matches!(
        appender.append(request(ExpectedVersion::Any, "", b"c")).await,
        Err(AppendError::Invalid { .. })
    ));

    let (_, broken) = tokio::sync::watch::channel(None);
    let metrics = registry::metrics::Metrics::new(registry::metrics::Sources {
        store: log.store().clone(),
        writer_failed: log.writer_failed(),
        broken,
        audit: None,
        statistics: None,
        worklists: None,
    });
    let body = tokio::task::spawn_blocking(move || metrics.render())
        .await
        .unwrap();
    let s = samples(&body);
    for (result, n) in [
        ("accepted", 1.0),
        ("deduplicated", 1.0),
        ("version_conflict", 1.0),
        ("idempotency_mismatch", 1.0),
        ("invalid", 1.0),
    ] {
        assert_eq!(
            get(&s, &format!("registry_log_appends_total{{result=\"{result}\"}}")),
            n,
            "{result}: {body}"
        );
    }
    assert_eq!(get(&s, "registry_log_group_commit_events_count"), 1.0, "{body}");
    assert_eq!(get(&s, "registry_log_group_commit_requests_sum"), 1.0);
    assert_eq!(get(&s, "registry_log_fdatasync_seconds_count"), 1.0);
    assert_eq!(get(&s, "registry_log_head_seq"), 1.0);
    assert_eq!(get(&s, "registry_writer_up"), 1.0);
    assert!(s.contains_key(&lag("tail_verifier")) && s.contains_key(&lag("case_files")));
    drop(appender);
    log.shutdown().unwrap();
}
