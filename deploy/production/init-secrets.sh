#!/usr/bin/env bash
# Make every secret the compose stack needs, under $WS_SECRETS_DIR (default ./secrets, ignored by
# git). Idempotent: what exists is kept, so re-run it after adding sites.
#
#   init-secrets.sh [SITE_ID ...]
#
#   secrets/pki/                 make-pki.sh: CA, broker cert (SAN mosquitto + $WS_MQTT_PUBLIC_NAMES),
#                                client certs for each site and service (for the mutual-TLS port)
#   secrets/mqtt/<account>.secret  one password per site and service (make-accounts.sh)
#   secrets/mosquitto/           what the broker mounts: ca.crt server.crt server.key
#                                dynamic-security.json (accounts and roles; restart the broker after
#                                adding sites: Mosquitto 2.0 reads it at start only)
#   secrets/influxdb/            admin-password admin-token grafana-password
#   secrets/grafana/admin-password
#
# Hand each edge site its files: pki/ca.crt, mqtt/<site>.secret (or pki/clients/<site>.{crt,key}).
# A SITE_ID may not be a reserved name (mosquitto/accounts.sh: bridge*, alerts*, officer*,
# enforcement*); the services are mosquitto/accounts.sh's WS_SERVICE_ACCOUNTS.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"
# shellcheck source=deploy/production/mosquitto/accounts.sh
source "$here/mosquitto/accounts.sh"
if [[ -f .env ]]; then
  # shellcheck disable=SC1091
  set -a && source ./.env && set +a
fi
dir=${WS_SECRETS_DIR:-./secrets}
services=()
for s in "${WS_SERVICE_ACCOUNTS[@]}"; do services+=(--service "$s"); done

umask 077
mkdir -p "$dir"/{pki,mqtt,mosquitto,influxdb,grafana}

WS_PKI_SERVER_NAMES="mosquitto,${WS_MQTT_PUBLIC_NAMES:-}" \
  bash "$here/../pki/make-pki.sh" "${services[@]}" "$dir/pki" "$@"
bash "$here/mosquitto/make-accounts.sh" "${services[@]}" "$dir/mqtt" "$dir/mosquitto/dynamic-security.json" "$@"
cp -f "$dir/pki/ca.crt" "$dir/pki/server.crt" "$dir/pki/server.key" "$dir/mosquitto/"

random_secret() {  # random_secret <file>
  [[ -s "$1" ]] || { openssl rand -hex 24 >"$1"; printf 'init-secrets: new %s\n' "$1" >&2; }
}
random_secret "$dir/influxdb/admin-password"
random_secret "$dir/influxdb/admin-token"
random_secret "$dir/influxdb/grafana-password"
random_secret "$dir/grafana/admin-password"

# The broker runs as uid 1883 in eclipse-mosquitto; the Python services as uid 10001.
if ((EUID == 0)); then
  chown -R 1883:1883 "$dir/mosquitto"
  chown 10001 "$dir/mqtt/bridge-1.secret" "$dir/mqtt/bridge-2.secret" "$dir/mqtt/alerts.secret" \
    "$dir/influxdb/admin-token"
else
  printf 'init-secrets: not root: make %s/mosquitto readable by uid 1883 and the service secrets by uid 10001\n' "$dir" >&2
fi
