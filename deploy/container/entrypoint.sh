#!/usr/bin/env bash
# Entrypoint of the registry container image (deploy/container/Containerfile).
#
# With no arguments, or only flags, it runs `registry serve` followed by the
# arguments given (so `docker run IMAGE --sync flush` adds a flag). With a
# first argument that is not a flag, it runs that registry command instead,
# in the same environment (`docker run IMAGE config check` checks the
# settings serve would run with; `docker run IMAGE verify --data-dir
# /var/lib/registry`, with the service stopped).
#
# `healthcheck [SERVICE]` is the container's HEALTHCHECK (see below).
#
# It `exec`s the binary: the registry is the container's main process and
# receives SIGTERM itself (graceful drain, exit 0).
#
# Settings. `registry serve` reads them itself, lowest to highest: built-in
# defaults < the config file REGISTRY_CONFIG < REGISTRY_* variables < flags
# (README.md, "Configuration"; every key in deploy/registry.toml). A key's
# variable is REGISTRY_ and its path in upper case, `.` written `_`:
#   REGISTRY_DATA_DIR, REGISTRY_LISTEN, REGISTRY_SYNC, REGISTRY_DISK_RESERVE_MIB,
#   REGISTRY_SLED_CACHE_MIB, REGISTRY_LOG_FORMAT, REGISTRY_MASTER_KEY_FILE,
#   REGISTRY_ALLOW_DEVELOPMENT_MASTER_KEY, REGISTRY_CHANNELS_FILE,
#   REGISTRY_ACCESS_FILE, REGISTRY_INSECURE_PLAINTEXT_ON_NETWORK,
#   REGISTRY_TLS_CERT, REGISTRY_TLS_KEY, REGISTRY_TLS_CLIENT_CA,
#   REGISTRY_TLS_CLIENT_CERT_REQUIRED, REGISTRY_METRICS_LISTEN,
#   REGISTRY_METRICS_ON_NETWORK, REGISTRY_AUDIT_KEY_FILE, REGISTRY_AUDIT_ORIGIN,
#   REGISTRY_AUDIT_CHECKPOINT_INTERVAL_SECS
# (booleans are `true` or `false`; an empty variable counts as unset), and
# REGISTRY_MASTER_KEY, the master key itself (64 hex digits), read only when
# no master key file is set; a file is preferred.
#
# What this script adds, only when REGISTRY_CONFIG is NOT set (a mounted
# config file is complete: then nothing is added), to variables left unset:
#   REGISTRY_DATA_DIR=/var/lib/registry (the volume)
#   REGISTRY_LISTEN=0.0.0.0:50051
#   REGISTRY_LOG_FORMAT=json
#   REGISTRY_ALLOW_DEVELOPMENT_MASTER_KEY=false: without a master key the
#       server refuses to start (true: it creates a development key in the
#       data directory, next to the data it protects)
#   secret files found in REGISTRY_SECRETS_DIR (default /run/secrets/registry)
#   by their default names: master.key -> REGISTRY_MASTER_KEY_FILE,
#   audit-signing.key -> REGISTRY_AUDIT_KEY_FILE (else the server creates one
#   in DATA_DIR/audit-signing.key on first start), tls.crt and tls.key ->
#   REGISTRY_TLS_CERT and REGISTRY_TLS_KEY, and with them client-ca.crt ->
#   REGISTRY_TLS_CLIENT_CA (mutual TLS).
# Without TLS the server refuses plaintext on a non-loopback REGISTRY_LISTEN
# (unless REGISTRY_INSECURE_PLAINTEXT_ON_NETWORK=true, never in production).
#
# The healthcheck's own variables:
#   REGISTRY_BIN                  the binary (default: `registry` on PATH)
#   REGISTRY_LISTEN               where to ask (default 0.0.0.0:50051, asked
#                                 on 127.0.0.1): set it when a config file
#                                 puts `listen` elsewhere
#   REGISTRY_TLS_CERT             TLS is on when set, or when
#                                 SECRETS_DIR/tls.crt exists
#   REGISTRY_HEALTH_TLS_CA (default SECRETS_DIR/ca.crt: the CA of tls.crt),
#   REGISTRY_HEALTH_TLS_DOMAIN (default localhost),
#   REGISTRY_HEALTH_CLIENT_CERT, REGISTRY_HEALTH_CLIENT_KEY (default
#   SECRETS_DIR/health-client.crt and .key, for mutual TLS),
#   REGISTRY_HEALTH_TIMEOUT_SECS (default 5)
# RUST_LOG filters the log lines.
set -euo pipefail

bin="${REGISTRY_BIN:-registry}"

die() {
    echo "entrypoint: $*" >&2
    exit 64
}

# (healthcheck) A file named by a variable must exist; a file found by its default name is used if present.
file_from() {
    local name="$1" default="$2" value="${!1:-}"
    if [[ -n "$value" ]]; then
        [[ -r "$value" ]] || die "$name=$value: no such readable file"
        printf '%s' "$value"
    elif [[ -r "$default" ]]; then
        printf '%s' "$default"
    fi
}

secrets="${REGISTRY_SECRETS_DIR:-/run/secrets/registry}"
listen="${REGISTRY_LISTEN:-0.0.0.0:50051}"

# `healthcheck [SERVICE]`: the container HEALTHCHECK. Asks the server this
# container runs, from inside it, over the transport the same environment
# configures: exit 0 only when SERVICE ("" = liveness by default) is SERVING.
if [[ "${1:-}" == healthcheck ]]; then
    port="${listen##*:}"
    host="${listen%:*}"
    case "$host" in
        0.0.0.0 | "" | "[::]") host=127.0.0.1 ;;
    esac
    health=(health --service "${2:-}" --timeout "${REGISTRY_HEALTH_TIMEOUT_SECS:-5}")
    tls_cert="$(file_from REGISTRY_TLS_CERT "$secrets/tls.crt")"
    if [[ -n "$tls_cert" ]]; then
        # The server's certificate must name REGISTRY_HEALTH_TLS_DOMAIN
        # (default localhost), and be signed by the CA in ca.crt.
        ca="$(file_from REGISTRY_HEALTH_TLS_CA "$secrets/ca.crt")"
        [[ -n "$ca" ]] || die "healthcheck over TLS needs the CA of the server's certificate: $secrets/ca.crt or REGISTRY_HEALTH_TLS_CA"
        health+=(--target "https://$host:$port" --tls-ca "$ca" --tls-domain "${REGISTRY_HEALTH_TLS_DOMAIN:-localhost}")
        # A server that requires client certificates needs one for the handshake too.
        client_cert="$(file_from REGISTRY_HEALTH_CLIENT_CERT "$secrets/health-client.crt")"
        client_key="$(file_from REGISTRY_HEALTH_CLIENT_KEY "$secrets/health-client.key")"
        if [[ -n "$client_cert" && -n "$client_key" ]]; then
            health+=(--tls-client-cert "$client_cert" --tls-client-key "$client_key")
        fi
    else
        health+=(--target "http://$host:$port")
    fi
    exec "$bin" "${health[@]}"
fi

if [[ -z "${REGISTRY_CONFIG:-}" ]]; then
    export REGISTRY_DATA_DIR="${REGISTRY_DATA_DIR:-/var/lib/registry}"
    export REGISTRY_LISTEN="$listen"
    export REGISTRY_LOG_FORMAT="${REGISTRY_LOG_FORMAT:-json}"
    export REGISTRY_ALLOW_DEVELOPMENT_MASTER_KEY="${REGISTRY_ALLOW_DEVELOPMENT_MASTER_KEY:-false}"
    # A secret file by its default name, for a variable left unset.
    default_file() {
        local name="$1" file="$secrets/$2"
        if [[ -z "${!name:-}" && -r "$file" ]]; then
            export "$name=$file"
        fi
    }
    default_file REGISTRY_MASTER_KEY_FILE master.key
    default_file REGISTRY_AUDIT_KEY_FILE audit-signing.key
    default_file REGISTRY_TLS_CERT tls.crt
    default_file REGISTRY_TLS_KEY tls.key
    if [[ -n "${REGISTRY_TLS_CERT:-}" && -n "${REGISTRY_TLS_KEY:-}" ]]; then
        default_file REGISTRY_TLS_CLIENT_CA client-ca.crt
    fi
fi

# Any other command runs with the same environment, so that
# `registry-entrypoint config check` checks what serve would run with.
if [[ $# -gt 0 && "$1" != -* ]]; then
    exec "$bin" "$@"
fi

# The server checks every setting before it starts (as `registry config
# check` does) and names the key of anything wrong.
exec "$bin" serve "$@"
