//! TLS with rustls (through tonic): the server's identity and optional
//! client CA (mutual TLS), the client side for the tools, and the identities
//! (subject CN, DNS SANs) of a verified client certificate.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use x509_parser::prelude::*;

use crate::limits::{CERT_IDENTITY_BYTES_MAX, CERT_SANS_MAX};

/// Server TLS files.
#[derive(Clone, Debug, Default)]
pub struct ServerTls {
    /// PEM certificate chain of the server.
    pub cert: PathBuf,
    /// PEM private key of the server.
    pub key: PathBuf,
    /// PEM CA certificate(s) that sign client certificates; enables mutual TLS.
    pub client_ca: Option<PathBuf>,
    /// With a client CA: whether a client certificate is required (true) or
    /// optional (callers may use bearer tokens instead).
    pub client_cert_required: bool,
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("{what} {}: {source}", path.display())]
    Read {
        /// Which file it was: "TLS certificate", "TLS key", "client CA",
        /// "CA certificate", "client certificate" or "client key".
        what: &'static str,
        /// The path configured for it.
        path: PathBuf,
        /// The error reading it.
        source: std::io::Error,
    },
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

impl ServerTls {
    /// The tonic server TLS configuration.
    pub fn config(&self) -> Result<ServerTlsConfig, TlsError> {
        let identity = Identity::from_pem(read(&self.cert, "TLS certificate")?, read(&self.key, "TLS key")?);
        let mut config = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.client_ca {
            config = config
                .client_ca_root(Certificate::from_pem(read(ca, "client CA")?))
                .client_auth_optional(!self.client_cert_required);
        }
        Ok(config)
    }
}

/// Client TLS files (tools and tests).
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// PEM CA certificate that signs the server's certificate.
    pub ca: Option<PathBuf>,
    /// PEM client certificate and key, for mutual TLS.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Server name to verify (default: the target's host).
    pub domain: Option<String>,
}

impl ClientTls {
    /// The tonic client TLS configuration.
    pub fn config(&self) -> Result<ClientTlsConfig, TlsError> {
        let mut config = ClientTlsConfig::new();
        if let Some(ca) = &self.ca {
            config = config.ca_certificate(Certificate::from_pem(read(ca, "CA certificate")?));
        }
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(
                read(cert, "client certificate")?,
                read(key, "client key")?,
            ));
        }
        if let Some(domain) = &self.domain {
            config = config.domain_name(domain.clone());
        }
        Ok(config)
    }
}

/// The identities of a (rustls-verified) client certificate in DER: its
/// subject common name(s), then its DNS subject alternative names. Values
/// that are not short printable ASCII are ignored.
pub fn certificate_identities(der: &[u8]) -> Vec<String> {
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let ok = |s: &str| s.len() <= CERT_IDENTITY_BYTES_MAX && super::valid_code(s);
    let mut out: Vec<String> = cert
        .subject()
        .iter_common_name()
        .filter_map(|cn| cn.as_str().ok())
        .filter(|s| ok(s))
        .map(str::to_string)
        .collect();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in san.value.general_names.iter().take(CERT_SANS_MAX) {
            if let GeneralName::DNSName(d) = name {
                if ok(d) {
                    out.push(d.to_string());
                }
            }
        }
    }
    out
}

/// Whether `addr` is a loopback address (plaintext is allowed only there).
pub fn is_loopback(addr: &std::net::SocketAddr) -> bool {
    addr.ip().is_loopback()
}
