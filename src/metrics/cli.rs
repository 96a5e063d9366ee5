//! The `registry serve` flags of the metrics endpoint.

use std::net::SocketAddr;

use clap::Args;

/// The default address of the metrics endpoint (loopback).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

/// `--metrics-listen ADDR|off`, `--metrics-on-network`.
#[derive(Args, Debug, Clone)]
pub struct ServeMetricsArgs {
    /// Address of the Prometheus endpoint (`GET /metrics`, plain HTTP), or
    /// `off`. A non-loopback address needs --metrics-on-network.
    #[arg(long, default_value = DEFAULT_LISTEN, value_parser = parse_listen)]
    pub metrics_listen: Listen,
    /// Serve the metrics endpoint on a non-loopback address (plain HTTP: put
    /// it on a private network; metrics carry no personal data).
    #[arg(long)]
    pub metrics_on_network: bool,
}

/// An address, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listen {
    Off,
    On(SocketAddr),
}

fn parse_listen(s: &str) -> Result<Listen, String> {
    if s.eq_ignore_ascii_case("off") {
        return Ok(Listen::Off);
    }
    s.parse()
        .map(Listen::On)
        .map_err(|e| format!("expected an address (host:port) or `off`: {e}"))
}

impl ServeMetricsArgs {
    /// Applies the flags to a serve configuration.
    pub fn apply(self, config: &mut crate::server::ServeConfig) {
        config.metrics_listen = match self.metrics_listen {
            Listen::Off => None,
            Listen::On(addr) => Some(addr),
        };
        config.metrics_on_network = self.metrics_on_network;
    }
}

/// Refuses a non-loopback metrics address unless `on_network` is set.
pub fn check_listen(addr: SocketAddr, on_network: bool) -> Result<(), String> {
    if crate::auth::tls::is_loopback(&addr) || on_network {
        return Ok(());
    }
    Err(format!(
        "refusing to serve metrics on {addr}, which is not a loopback address: \
         give --metrics-on-network to serve them there (plain HTTP), or --metrics-listen off"
    ))
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
