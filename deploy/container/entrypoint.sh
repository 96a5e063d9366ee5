#!/usr/bin/env bash
# Entrypoint of the registry container image (deploy/container/Containerfile).
#
# With no arguments, or only flags, it runs `registry serve` with flags built
# from environment variables and mounted secret files, followed by the
# arguments given (so `docker run IMAGE --sync flush` adds a flag). With a
# first argument that is not a flag, it runs that registry command instead
# (`docker run IMAGE verify --data-dir /var/lib/registry`, with the service
# stopped).
#
# `healthcheck [SERVICE]` is the container's HEALTHCHECK (see below).
#
# It `exec`s the binary: the registry is the container's main process and
# receives SIGTERM itself (graceful drain, exit 0).
#
# Environment (every variable optional):
#   REGISTRY_BIN                  the binary (default: `registry` on PATH)
#   REGISTRY_DATA_DIR             store directory, the volume (default /var/lib/registry)
#   REGISTRY_LISTEN               gRPC address (default 0.0.0.0:50051)
#   REGISTRY_SECRETS_DIR          where secret files are looked for by their
#                                 default names (default /run/secrets/registry):
#                                 master.key, audit-signing.key, tls.crt,
#                                 tls.key, client-ca.crt; for the
#                                 healthcheck: ca.crt (the CA of tls.crt),
#                                 health-client.crt and .key (mutual TLS)
#   REGISTRY_MASTER_KEY_FILE      master key file (default SECRETS_DIR/master.key if present)
#   REGISTRY_MASTER_KEY           the master key as 64 hex digits, read by the
#                                 server itself; a file is preferred
#   REGISTRY_ALLOW_DEVELOPMENT_MASTER_KEY=true
#                                 start without a master key: the server then
#                                 creates a development key in the data
#                                 directory, next to the data it protects.
#                                 Refused otherwise.
#   REGISTRY_AUDIT_KEY_FILE       audit signing key (default SECRETS_DIR/audit-signing.key
#                                 if present; else the server creates one in
#                                 DATA_DIR/audit-signing.key on first start)
#   REGISTRY_AUDIT_ORIGIN         log origin of a new audit key (--audit-origin)
#   REGISTRY_TLS_CERT, REGISTRY_TLS_KEY
#                                 PEM certificate chain and key (default
#                                 SECRETS_DIR/tls.crt and tls.key if both present)
#   REGISTRY_TLS_CLIENT_CA        PEM CA of client certificates: mutual TLS
#                                 (default SECRETS_DIR/client-ca.crt if present)
#   REGISTRY_TLS_CLIENT_CERT_REQUIRED=true
#                                 refuse connections without a client certificate
#   REGISTRY_INSECURE_PLAINTEXT_ON_NETWORK=true
#                                 plaintext on a non-loopback address (never in
#                                 production). Without TLS and without this, the
#                                 server refuses a non-loopback REGISTRY_LISTEN.
#   REGISTRY_ACCESS_FILE          access file (default DATA_DIR/access.json)
#   REGISTRY_CHANNELS_FILE        channel catalogue JSON (default: built in)
#   REGISTRY_SYNC                 fdatasync (default) | flush
#   REGISTRY_DISK_RESERVE_MIB     free-disk reserve (server default 1024)
#   REGISTRY_SLED_CACHE_MIB       sled page cache (server default 256)
#   REGISTRY_METRICS_LISTEN       metrics address, or `off` (server default 127.0.0.1:9464)
#   REGISTRY_METRICS_ON_NETWORK=true
#                                 allow a non-loopback REGISTRY_METRICS_LISTEN
#   REGISTRY_LOG_FORMAT           json (default) | text
#   REGISTRY_HEALTH_TLS_CA, REGISTRY_HEALTH_TLS_DOMAIN (default localhost),
#   REGISTRY_HEALTH_CLIENT_CERT, REGISTRY_HEALTH_CLIENT_KEY,
#   REGISTRY_HEALTH_TIMEOUT_SECS (default 5)
#                                 how `healthcheck` reaches a TLS server
# The server reads REGISTRY_AUDIT_CHECKPOINT_INTERVAL_SECS and RUST_LOG
# directly.
set -euo pipefail

bin="${REGISTRY_BIN:-registry}"

die() {
    echo "entrypoint: $*" >&2
    exit 64
}

# true/1/yes (any case) is true; empty or false/0/no is false; anything else is an error.
truthy() {
    local name="$1" value="${!1:-}"
    case "${value,,}" in
        "" | false | 0 | no) return 1 ;;
        true | 1 | yes) return 0 ;;
        *) die "$name must be true or false, not '$value'" ;;
    esac
}

# A file named by a variable must exist; a file found by its default name is used if present.
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

if [[ $# -gt 0 && "$1" != -* ]]; then
    exec "$bin" "$@"
fi

data_dir="${REGISTRY_DATA_DIR:-/var/lib/registry}"

args=(--log-format "${REGISTRY_LOG_FORMAT:-json}")
if [[ -n "${REGISTRY_SLED_CACHE_MIB:-}" ]]; then
    args+=(--sled-cache-mib "$REGISTRY_SLED_CACHE_MIB")
fi
args+=(serve --data-dir "$data_dir" --listen "$listen")

master_key_file="$(file_from REGISTRY_MASTER_KEY_FILE "$secrets/master.key")"
if [[ -n "$master_key_file" ]]; then
    args+=(--master-key-file "$master_key_file")
elif [[ -z "${REGISTRY_MASTER_KEY:-}" ]] && ! truthy REGISTRY_ALLOW_DEVELOPMENT_MASTER_KEY; then
    die "no master key: mount it as $secrets/master.key or set REGISTRY_MASTER_KEY_FILE" \
        "(create one with: registry keys generate --out master.key);" \
        "REGISTRY_ALLOW_DEVELOPMENT_MASTER_KEY=true starts with a development key kept in the data directory"
fi

audit_key_file="$(file_from REGISTRY_AUDIT_KEY_FILE "$secrets/audit-signing.key")"
if [[ -n "$audit_key_file" ]]; then
    args+=(--audit-key-file "$audit_key_file")
fi
if [[ -n "${REGISTRY_AUDIT_ORIGIN:-}" ]]; then
    args+=(--audit-origin "$REGISTRY_AUDIT_ORIGIN")
fi

tls_cert="$(file_from REGISTRY_TLS_CERT "$secrets/tls.crt")"
tls_key="$(file_from REGISTRY_TLS_KEY "$secrets/tls.key")"
if [[ -n "$tls_cert" && -n "$tls_key" ]]; then
    args+=(--tls-cert "$tls_cert" --tls-key "$tls_key")
    client_ca="$(file_from REGISTRY_TLS_CLIENT_CA "$secrets/client-ca.crt")"
    if [[ -n "$client_ca" ]]; then
        args+=(--tls-client-ca "$client_ca")
        if truthy REGISTRY_TLS_CLIENT_CERT_REQUIRED; then
            args+=(--tls-client-cert-required)
        fi
    elif truthy REGISTRY_TLS_CLIENT_CERT_REQUIRED; then
        die "REGISTRY_TLS_CLIENT_CERT_REQUIRED needs a client CA (REGISTRY_TLS_CLIENT_CA or $secrets/client-ca.crt)"
    fi
elif [[ -n "$tls_cert" || -n "$tls_key" ]]; then
    die "TLS needs both a certificate and a key (got only ${tls_cert:-$tls_key})"
fi
if truthy REGISTRY_INSECURE_PLAINTEXT_ON_NETWORK; then
    args+=(--insecure-plaintext-on-network)
fi

if [[ -n "${REGISTRY_ACCESS_FILE:-}" ]]; then
    args+=(--access-file "$REGISTRY_ACCESS_FILE")
fi
if [[ -n "${REGISTRY_CHANNELS_FILE:-}" ]]; then
    args+=(--channels "$REGISTRY_CHANNELS_FILE")
fi
if [[ -n "${REGISTRY_SYNC:-}" ]]; then
    args+=(--sync "$REGISTRY_SYNC")
fi
if [[ -n "${REGISTRY_DISK_RESERVE_MIB:-}" ]]; then
    args+=(--disk-reserve-mib "$REGISTRY_DISK_RESERVE_MIB")
fi
if [[ -n "${REGISTRY_METRICS_LISTEN:-}" ]]; then
    args+=(--metrics-listen "$REGISTRY_METRICS_LISTEN")
fi
if truthy REGISTRY_METRICS_ON_NETWORK; then
    args+=(--metrics-on-network)
fi

exec "$bin" "${args[@]}" "$@"
