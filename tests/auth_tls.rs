//! TLS and mutual TLS end to end, with certificates generated here (rcgen):
//! a registered client certificate authenticates its principal, a bearer
//! token works over TLS without one, a certificate from an unknown CA or an
//! unregistered identity is refused, and plaintext is refused off loopback.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use registry::api::pb;
use registry::auth::access_file::{self, Grant};
use registry::auth::tls::{ClientTls, ServerTls};
use registry::auth::Role;
use registry::client::{connect, ClientOptions};
use tonic::Code;

struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Pki {
            ca: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// Issues a certificate with CN `cn` and DNS SANs; writes `<stem>.pem` and `<stem>.key`.
    fn issue(
        &self,
        dir: &Path,
        stem: &str,
        cn: &str,
        sans: &[&str],
    ) -> (std::path::PathBuf, std::path::PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let (c, k) = (dir.join(format!("{stem}.pem")), dir.join(format!("{stem}.key")));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    fn write_ca(&self, path: &Path) {
        std::fs::write(path, self.ca.pem()).unwrap();
    }
}

fn options(
    server: &TestServer,
    ca: &Path,
    identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
    token: Option<String>,
) -> ClientOptions {
    ClientOptions {
        target: format!("https://{}", server.address()),
        token,
        tls: Some(ClientTls {
            ca: Some(ca.to_path_buf()),
            identity,
            domain: Some("localhost".into()),
        }),
        ..Default::default()
    }
}

fn registration(given: &str, cedula: &str) -> pb::RegisterPersonRequest {
    register_request(
        person(
            given,
            "PRUEBA",
            "1990-01-01",
            &[(pb::DocumentType::VenezuelanCedula, cedula)],
        ),
        "2022-03-01",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_authenticates_registered_certificates_and_refuses_the_rest() {
    let pki_dir = tempfile::tempdir().unwrap();
    let dir = pki_dir.path();
    let pki = Pki::new("Registry Test CA");
    let rogue = Pki::new("Rogue CA");
    let (server_cert, server_key) = pki.issue(dir, "server", "registry", &["localhost"]);
    let front = pki.issue(dir, "frontend", "frontend-bog", &["frontend-bog.registry.test"]);
    let stranger = pki.issue(dir, "stranger", "stranger", &[]);
    let impostor = rogue.issue(dir, "impostor", "frontend-bog", &["frontend-bog.registry.test"]);
    let ca = dir.join("ca.pem");
    pki.write_ca(&ca);

    let (sc, sk, client_ca) = (server_cert.clone(), server_key.clone(), ca.clone());
    let server = TestServer::start_configured(registry::log::SyncMode::Flush, move |config, _| {
        config.tls = Some(ServerTls {
            cert: sc,
            key: sk,
            client_ca: Some(client_ca),
            client_cert_required: false,
        });
    })
    .await;
    access_file::add_certificate(
        &server.access_file(),
        "frontend-bog.registry.test",
        &Grant {
            principal: "svc-frontend-bog".into(),
            role: Role::Caseworker,
            office: "BOG-CENTRO".into(),
            departments: vec![],
            expires_at: None,
        },
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;

    // A registered client certificate is its principal's credential.
    let channel = connect(&options(&server, &ca, Some(front), None), Duration::from_secs(20))
        .await
        .expect("mTLS connection");
    let mut c = pb::caseworker_client::CaseworkerClient::new(channel);
    let first = c
        .register_person(registration("FRIDA", "V84000001"))
        .await
        .expect("registered")
        .into_inner();
    let events = c
        .list_case_events(pb::ListCaseEventsRequest {
            case_id: first.case_id.clone(),
            from_version: 0,
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        events.events[0].actor_user, "svc-frontend-bog",
        "the certificate's principal is the actor"
    );

    // A bearer token over TLS, without a client certificate.
    let channel = connect(
        &options(&server, &ca, None, Some(server.token("supervisor"))),
        Duration::from_secs(5),
    )
    .await
    .expect("TLS connection");
    let mut c = pb::caseworker_client::CaseworkerClient::new(channel);
    c.register_person(registration("GALA", "V84000002"))
        .await
        .expect("registered with a token");

    // A certificate signed by the right CA but registered for no principal.
    let channel = connect(
        &options(&server, &ca, Some(stranger), None),
        Duration::from_secs(5),
    )
    .await
    .expect("TLS connection");
    let mut c = pb::caseworker_client::CaseworkerClient::new(channel);
    let s = c
        .register_person(registration("HILDA", "V84000003"))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");

    // A certificate from an unknown CA (same subject as the real front-end): the handshake fails.
    let refused = match connect(&options(&server, &ca, Some(impostor), None), Duration::ZERO).await {
        Err(_) => true,
        Ok(channel) => {
            let mut c = pb::caseworker_client::CaseworkerClient::new(channel);
            match c.register_person(registration("IRMA", "V84000004")).await {
                Ok(_) => false,
                Err(s) => {
                    assert_ne!(s.code(), Code::Ok);
                    true
                }
            }
        }
    };
    assert!(refused, "a client certificate from an unknown CA must be refused");

    // Plaintext against the TLS listener does not get through.
    let plain = ClientOptions {
        target: server.target(),
        token: Some(server.token("supervisor")),
        ..Default::default()
    };
    if let Ok(channel) = connect(&plain, Duration::ZERO).await {
        let mut c = pb::caseworker_client::CaseworkerClient::new(channel);
        assert!(c
            .register_person(registration("JUANA", "V84000005"))
            .await
            .is_err());
    }

    let tmp = server.stop().await;
    let store = open_store(&tmp.path().join("data"));
    assert_eq!(
        store.head().unwrap().seq,
        genesis_events() + 2,
        "only the two authenticated registrations were recorded (after the genesis policy)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_is_refused_off_loopback_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let config = registry::server::ServeConfig::new(tmp.path().join("data"), listener.local_addr().unwrap());
    let err = registry::server::serve_on(config.clone(), listener, async {})
        .await
        .expect_err("plaintext on 0.0.0.0 is refused");
    assert!(
        err.to_string().contains("--insecure-plaintext-on-network"),
        "{err}"
    );
    assert!(!tmp.path().join("data").exists(), "nothing was created");
    // Forced, the same configuration passes the transport check.
    let mut forced = config;
    forced.insecure_plaintext = true;
    assert!(registry::server::check_transport(&forced, forced.listen).is_ok());
    // Loopback is allowed.
    let local = registry::server::ServeConfig::new(tmp.path().join("data"), "127.0.0.1:0".parse().unwrap());
    assert!(registry::server::check_transport(&local, local.listen).is_ok());
}
