#!/usr/bin/env bash
# Test/small-deployment PKI for the MQTT broker: a CA, the broker's server certificate and one
# client certificate per identity (edge agents by site id, services such as the bridges).
#
#   make-pki.sh [--service NAME]... OUTDIR [SITE ...]
#
#   OUTDIR/ca.crt ca.key                 the CA (kept if present: re-running adds, never re-keys)
#   OUTDIR/server.crt server.key         broker cert, SAN 127.0.0.1, ::1, localhost and
#                                        $WS_PKI_SERVER_NAMES (comma-separated DNS names/IPs)
#   OUTDIR/clients/ID.crt ID.key         CN = ID; with the broker's client-cert mode the CN is the
#                                        MQTT username, so for an edge agent ID = its site id
#
# A SITE may not have a reserved name (enforcement*, bridge*, alerts*, officer*: a certificate
# with that CN would log in as a service, e.g. forge alerts); a --service NAME must be one. The
# list is deploy/production/mosquitto/accounts.sh, which make-accounts.sh uses too.
# Default when no identity is given: the services bridge-1 bridge-2 alerts officer.
# Environment: WS_PKI_DAYS (825), WS_PKI_CA_DAYS (3650), WS_PKI_SERVER_NAMES (e.g.
# "mqtt.city.example,10.0.0.5"), WS_PKI_FORCE_SERVER=1 to re-issue the server cert (new names).
# Keys are EC P-256, mode 0600. OUTDIR must not be inside the repository's tracked tree: the
# repository ignores deploy/pki/out/ for convenience, nothing else.
# For production prefer the city's own CA; this script is the reference for what the broker needs.
set -euo pipefail
# shellcheck source=deploy/production/mosquitto/accounts.sh
source "$(dirname "${BASH_SOURCE[0]}")/../production/mosquitto/accounts.sh"

usage() {
  printf 'usage: %s [--service NAME]... OUTDIR [SITE ...]\n' "$0" >&2
  exit 2
}

ws_parse_services "$@" || usage
shift "$WS_SHIFT"
services=("${WS_SERVICES[@]}")
(($# >= 1)) || usage
out=$1
shift
((${#services[@]} + $#)) || services=("${WS_SERVICE_ACCOUNTS[@]}")
ws_require_accounts make-pki service "${services[@]}"
ws_require_accounts make-pki site "$@"
ids=("${services[@]}" "$@")

days=${WS_PKI_DAYS:-825}
ca_days=${WS_PKI_CA_DAYS:-3650}
server_names=${WS_PKI_SERVER_NAMES:-}

command -v openssl >/dev/null 2>&1 || { printf 'make-pki: openssl not found\n' >&2; exit 1; }

umask 077
mkdir -p "$out/clients"
ca_crt=$out/ca.crt
ca_key=$out/ca.key

newkey() {  # newkey <file>
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null
  chmod 600 "$1"
}

# sign <key> <crt> <cn> <extfile>
sign() {
  local key=$1 crt=$2 cn=$3 ext=$4 csr
  csr=$(mktemp)
  openssl req -new -key "$key" -subj "/O=wastestream/CN=$cn" -out "$csr"
  openssl x509 -req -in "$csr" -CA "$ca_crt" -CAkey "$ca_key" -CAcreateserial \
    -CAserial "$out/ca.srl" -days "$days" -sha256 -extfile "$ext" -out "$crt" 2>/dev/null
  rm -f "$csr"
  chmod 644 "$crt"
}

if [[ -s "$ca_crt" && -s "$ca_key" ]]; then
  printf 'make-pki: keeping CA %s\n' "$ca_crt" >&2
else
  newkey "$ca_key"
  openssl req -x509 -new -key "$ca_key" -sha256 -days "$ca_days" \
    -subj "/O=wastestream/CN=wastestream test CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$ca_crt"
  chmod 644 "$ca_crt"
  printf 'make-pki: new CA %s\n' "$ca_crt" >&2
fi

ext=$(mktemp)
trap 'rm -f "$ext"' EXIT

if [[ ! -s "$out/server.crt" || ! -s "$out/server.key" || "${WS_PKI_FORCE_SERVER:-0}" == 1 ]]; then
  san="IP:127.0.0.1,IP:::1,DNS:localhost"
  IFS=, read -r -a names <<<"$server_names"
  for n in "${names[@]}"; do
    [[ -n "$n" ]] || continue
    if [[ "$n" =~ ^[0-9.]+$ || "$n" == *:* ]]; then san+=",IP:$n"; else san+=",DNS:$n"; fi
  done
  cat >"$ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san
EXT
  newkey "$out/server.key"
  sign "$out/server.key" "$out/server.crt" "${names[0]:-localhost}" "$ext"
  printf 'make-pki: server cert (%s)\n' "$san" >&2
fi

cat >"$ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
EXT
for id in "${ids[@]}"; do
  if [[ -s "$out/clients/$id.crt" && -s "$out/clients/$id.key" ]]; then
    continue
  fi
  newkey "$out/clients/$id.key"
  sign "$out/clients/$id.key" "$out/clients/$id.crt" "$id" "$ext"
  printf 'make-pki: client cert %s\n' "$id" >&2
done
