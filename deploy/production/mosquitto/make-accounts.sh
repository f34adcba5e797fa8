#!/usr/bin/env bash
# Build the broker's accounts (Mosquitto's dynamic-security plugin config) from one secret file
# per account.
#
#   make-accounts.sh [--service NAME]... SECRETS_DIR DYNSEC_JSON [SITE ...]
#
# SECRETS_DIR/<account>.secret holds that account's password (first line). A SITE is an edge
# agent's account (its site id); a service (--service) is bridge[-*], alerts[-*] or officer[-*].
# The names are checked by accounts.sh, the list make-pki.sh uses too: a site may not take a
# reserved name (enforcement*, bridge*, alerts*, officer*), a --service must be one.
# New accounts get a random secret (openssl rand); existing ones are kept, so running it again
# after adding a site rebuilds DYNSEC_JSON and rotates nothing. The same secret file is what the
# client reads (edge site config `mqtt.password_file`, the bridge's WS_MQTT_PASSWORD_FILE), so a
# password never appears in a config, on a command line or in the repository.
# DYNSEC_JSON holds PBKDF2-SHA512 hashes and what each account may do (dynsec.py), written
# atomically with mode 0600 (chown it to the broker's user, 1883 in the eclipse-mosquitto image).
# Mosquitto 2.0 reads it at start only: restart the broker to apply it (sessions are persisted).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=deploy/production/mosquitto/accounts.sh
source "$here/accounts.sh"

usage() {
  printf 'usage: %s [--service NAME]... SECRETS_DIR DYNSEC_JSON [SITE ...]\n' "$0" >&2
  exit 2
}

ws_parse_services "$@" || usage
shift "$WS_SHIFT"
services=("${WS_SERVICES[@]}")
(($# >= 2)) || usage
secrets=$1
out=$2
shift 2
python=${PYTHON:-python3}
command -v "$python" >/dev/null 2>&1 || { printf 'make-accounts: %s not found\n' "$python" >&2; exit 1; }

ws_require_accounts make-accounts service "${services[@]}"
ws_require_accounts make-accounts site "$@"

umask 077
mkdir -p "$secrets"
for name in "${services[@]}" "$@"; do
  file=$secrets/$name.secret
  if [[ ! -s "$file" ]]; then
    openssl rand -base64 24 | tr -d '\n=' >"$file"
    printf '\n' >>"$file"
    printf 'make-accounts: new secret %s\n' "$file" >&2
  fi
done

list=()
shopt -s nullglob
for file in "$secrets"/*.secret; do
  name=$(basename "$file" .secret)
  kind=$(ws_account_kind "$name") || { printf 'make-accounts: bad account name %q (%s)\n' "$name" "$file" >&2; exit 2; }
  list+=("$(printf '%s\t%s\t%s' "$kind" "$name" "$file")")
done
((${#list[@]})) || { printf 'make-accounts: no *.secret files in %s\n' "$secrets" >&2; exit 2; }

printf '%s\n' "${list[@]}" | "$python" "$here/dynsec.py" "$out"
printf 'make-accounts: %d accounts -> %s\n' "${#list[@]}" "$out" >&2
