//! Who may do what, over a real server on 127.0.0.1: every method of every
//! service (read from the descriptor sets the server publishes) called as
//! every role, with no credentials, an expired token and a revoked token.
//! The expected access is written out here independently of the server's
//! policy table. Refused calls change nothing: the log stays empty and the
//! access file unchanged.

mod common;

use std::time::Duration;

use common::*;
use prost::Message;
use registry::auth::access_file::{self, Grant};
use registry::auth::Role;
use tonic::transport::Channel;
use tonic::{Code, Request};

/// A method and how it streams.
#[derive(Clone, Debug)]
struct Method {
    service: String,
    name: String,
    client_streaming: bool,
    server_streaming: bool,
}

impl Method {
    fn path(&self) -> String {
        format!("/{}/{}", self.service, self.name)
    }
}

fn methods() -> Vec<Method> {
    let mut out = Vec::new();
    for bytes in [
        registry::api::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
    ] {
        let set = prost_types::FileDescriptorSet::decode(bytes).unwrap();
        for file in set.file {
            let package = file.package().to_string();
            if package == "regularization.events.v1" {
                continue;
            }
            for service in file.service {
                let service_name = format!("{package}.{}", service.name());
                for m in service.method {
                    out.push(Method {
                        service: service_name.clone(),
                        name: m.name().to_string(),
                        client_streaming: m.client_streaming(),
                        server_streaming: m.server_streaming(),
                    });
                }
            }
        }
    }
    out
}

const SUPERVISOR_ONLY: &[&str] = &[
    "Approve",
    "Deny",
    "DecideAppeal",
    "CancelPermit",
    "AbandonCard",
    "AwardCertification",
    "DenyCertification",
    "ErasePerson",
    "ExtendSubjectRequest",
    "AnswerSubjectRequest",
    "GetSubjectReport",
];

/// The roles that may call a method (None: public).
fn expected(m: &Method) -> Option<Vec<&'static str>> {
    let roles = match m.service.as_str() {
        "grpc.health.v1.Health" => return None,
        "regularization.v1.Caseworker" if SUPERVISOR_ONLY.contains(&m.name.as_str()) => vec!["supervisor"],
        "regularization.v1.Caseworker" => vec!["caseworker", "supervisor"],
        "regularization.v1.Import" => vec!["supervisor"],
        "regularization.v1.Statistics" => vec!["statistician"],
        "regularization.v1.Worklists" => vec!["caseworker", "supervisor"],
        "regularization.v1.Audit" if m.name == "GetCheckpoint" => vec!["auditor", "admin"],
        "regularization.v1.Audit" => vec!["auditor"],
        "regularization.v1.Admin" => vec!["admin"],
        "regularization.v1.Policy" if m.name == "RecordPolicy" || m.name == "PreviewPolicy" => vec!["admin"],
        "regularization.v1.Policy" => ROLES.to_vec(),
        other => panic!("service {other} has no expected access in this test: add it"),
    };
    Some(roles)
}

/// Calls `m` with an empty message (and, for client streams, an empty
/// stream) and the given authorization; returns the status code (Ok for success).
async fn call(channel: &Channel, m: &Method, authorization: Option<&str>) -> Code {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("channel ready");
    let path: http::uri::PathAndQuery = m.path().parse().unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    fn with_auth<T>(authorization: Option<&str>, mut r: Request<T>) -> Request<T> {
        if let Some(a) = authorization {
            r.metadata_mut().insert("authorization", a.parse().unwrap());
        }
        r
    }
    let result = match (m.client_streaming, m.server_streaming) {
        (false, false) => grpc
            .unary(with_auth(authorization, Request::new(())), path, codec)
            .await
            .map(|_| ()),
        (false, true) => grpc
            .server_streaming(with_auth(authorization, Request::new(())), path, codec)
            .await
            .map(|_| ()),
        (true, false) => grpc
            .client_streaming(
                with_auth(
                    authorization,
                    Request::new(tonic::codegen::tokio_stream::empty::<()>()),
                ),
                path,
                codec,
            )
            .await
            .map(|_| ()),
        (true, true) => grpc
            .streaming(
                with_auth(
                    authorization,
                    Request::new(tonic::codegen::tokio_stream::empty::<()>()),
                ),
                path,
                codec,
            )
            .await
            .map(|_| ()),
    };
    match result {
        Ok(()) => Code::Ok,
        Err(s) => s.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_of_every_service_answers_each_role_as_the_policy_says() {
    let server = TestServer::start().await;
    drop(server.client().await);
    let access = server.access_file();
    // An expired token and a revoked one, both of the most powerful case role.
    let grant = |expires_at| Grant {
        principal: "u-matrix".into(),
        role: Role::Supervisor,
        office: "BOG".into(),
        departments: vec![],
        expires_at,
    };
    let expired = access_file::add_token(&access, &grant(Some(access_file::now_s() - 1))).unwrap();
    let revoked = access_file::add_token(&access, &grant(None)).unwrap();
    assert!(access_file::revoke_token(&access, &revoked.id).unwrap());
    // The server reloads a changed access file within a quarter second.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let access_before = std::fs::read(&access).unwrap();

    let channel = Channel::from_shared(server.target())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let methods = methods();
    let services: std::collections::BTreeSet<&str> = methods.iter().map(|m| m.service.as_str()).collect();
    for s in [
        "regularization.v1.Caseworker",
        "regularization.v1.Statistics",
        "regularization.v1.Worklists",
        "regularization.v1.Audit",
        "regularization.v1.Admin",
        "grpc.health.v1.Health",
    ] {
        assert!(services.contains(s), "{s} is in the descriptor set");
    }
    let mut refused = 0;
    let mut failures = Vec::new();
    // Phase 1: every refused call (nothing may change).
    for m in &methods {
        let Some(allowed) = expected(m) else { continue };
        let bad_credentials = [
            ("no credentials", None),
            ("expired token", Some(format!("Bearer {}", expired.token))),
            ("revoked token", Some(format!("Bearer {}", revoked.token))),
            ("unknown token", Some("Bearer rgt_0000".to_string())),
        ];
        for (what, auth) in &bad_credentials {
            let code = call(&channel, m, auth.as_deref()).await;
            refused += 1;
            if code != Code::Unauthenticated {
                failures.push(format!(
                    "{} with {what}: {code:?}, expected Unauthenticated",
                    m.path()
                ));
            }
        }
        for role in ROLES.iter().filter(|r| !allowed.contains(r)) {
            let code = call(&channel, m, Some(&format!("Bearer {}", test_token(role)))).await;
            refused += 1;
            if code != Code::PermissionDenied {
                failures.push(format!(
                    "{} as {role}: {code:?}, expected PermissionDenied",
                    m.path()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {refused} refusals wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(refused > 200, "the matrix covered {refused} refused calls");

    // Phase 2: every allowed call gets past authentication and authorization
    // (empty messages are then refused as invalid, or served).
    for m in &methods {
        let allowed = expected(m).unwrap_or_else(|| ROLES.to_vec());
        for role in allowed {
            let code = call(&channel, m, Some(&format!("Bearer {}", test_token(role)))).await;
            if matches!(code, Code::Unauthenticated | Code::PermissionDenied) {
                failures.push(format!(
                    "{} as {role}: {code:?}, expected to be let through",
                    m.path()
                ));
            }
        }
        if expected(m).is_none() {
            let code = call(&channel, m, None).await;
            assert_ne!(code, Code::Unauthenticated, "{} is public", m.path());
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    drop(channel);
    assert_eq!(
        std::fs::read(&access).unwrap(),
        access_before,
        "the access file is unchanged"
    );
    let tmp = server.stop().await;
    let store = open_store(&tmp.path().join("data"));
    assert_eq!(
        store.head().unwrap().seq,
        genesis_events(),
        "no call with empty messages recorded anything (the store holds its genesis policy)"
    );
}

/// An auditor may read checkpoints but not sign one on demand; an admin may.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_admin_signs_a_checkpoint_on_demand() {
    let server = TestServer::start().await;
    let ask = |role: &str| {
        as_role(
            role,
            registry::api::pb::GetCheckpointRequest {
                tree_size: None,
                sign_now: true,
            },
        )
    };
    drop(server.client().await);
    let channel = Channel::from_shared(server.target())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut audit = registry::api::pb::audit_client::AuditClient::new(channel);
    let s = audit.get_checkpoint(ask("auditor")).await.unwrap_err();
    assert_eq!(s.code(), Code::PermissionDenied, "{s:?}");
    assert!(audit.get_checkpoint(ask("admin")).await.is_ok());
    server.stop().await;
}
