//! The metrics endpoint's address (`metrics.listen`, `--metrics-listen`)
//! and its policy (loopback unless `metrics.on_network`).

use std::net::SocketAddr;

/// The default address of the metrics endpoint (loopback).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

/// An address, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listen {
    /// `off`: no metrics endpoint.
    Off,
    /// Serve the endpoint on this address (plain HTTP; refused off loopback
    /// unless `metrics.on_network`, see [`check_listen`]).
    On(SocketAddr),
}

/// Why a metrics address was refused by [`parse_listen`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected an address (host:port) or `off`: {0}")]
pub struct ListenError(#[from] std::net::AddrParseError);

/// Parses `off` or `host:port`.
pub fn parse_listen(s: &str) -> Result<Listen, ListenError> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(Listen::Off);
    }
    Ok(Listen::On(s.parse()?))
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Off => f.write_str("off"),
            Listen::On(addr) => addr.fmt(f),
        }
    }
}

impl serde::Serialize for Listen {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Listen {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Listen, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Listen;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an address (host:port) or `off`")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Listen, E> {
                parse_listen(s).map_err(|_| E::invalid_value(serde::de::Unexpected::Str(s), &self))
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// Refuses a non-loopback metrics address unless `on_network` is set.
pub fn check_listen(addr: SocketAddr, on_network: bool) -> Result<(), super::MetricsError> {
    if crate::auth::tls::is_loopback(&addr) || on_network {
        return Ok(());
    }
    Err(super::MetricsError::NotLoopback(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_is_an_address_or_off() {
        assert_eq!(parse_listen("off"), Ok(Listen::Off));
        assert_eq!(
            parse_listen("127.0.0.1:9464"),
            Ok(Listen::On("127.0.0.1:9464".parse().unwrap()))
        );
        assert!(parse_listen("9464").is_err());
    }

    #[test]
    fn network_address_needs_the_flag() {
        let net: SocketAddr = "0.0.0.0:9464".parse().unwrap();
        assert!(check_listen(net, false).is_err());
        assert!(check_listen(net, true).is_ok());
        assert!(check_listen("[::1]:9464".parse().unwrap(), false).is_ok());
    }
}
