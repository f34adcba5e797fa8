#!/usr/bin/env bash
# Build Mosquitto's password file from one secret file per account.
#
#   make-passwd.sh SECRETS_DIR PASSWD_FILE [NEW_ACCOUNT ...]
#
# SECRETS_DIR/<account>.secret holds that account's password (first line). Accounts are edge
# agents (account = site id, see ./acl) and the services: bridge, alerts, officer. The name
# `enforcement` is refused: the ACL's site pattern would let that account write alerts.
# NEW_ACCOUNTs that have no secret file yet get a random one (openssl rand); existing ones are
# kept, so running it again after adding a site re-hashes everything and rotates nothing.
# The same secret file is what the client reads (edge site config `mqtt.password_file`, the
# bridge's WS_MQTT_PASSWORD_FILE), so a password never appears in a config or on a command line.
# PASSWD_FILE is written atomically with mode 0600 (chown it to the broker's user, 1883 in the
# eclipse-mosquitto image); send the broker SIGHUP to reload it without dropping connections.
set -euo pipefail

usage() {
  printf 'usage: %s SECRETS_DIR PASSWD_FILE [NEW_ACCOUNT ...]\n' "$0" >&2
  exit 2
}

(($# >= 2)) || usage
secrets=$1
passwd=$2
shift 2

passwd_bin=${MOSQUITTO_PASSWD:-$(command -v mosquitto_passwd || true)}
[[ -n "$passwd_bin" ]] || { printf 'make-passwd: mosquitto_passwd not found (apt install mosquitto)\n' >&2; exit 1; }

account_ok() {  # a contract Ident: also keeps '/', '+', '#' and ':' out of ACL patterns and the file
  [[ "$1" =~ ^[A-Za-z0-9_.-]{1,64}$ && "$1" != enforcement ]]
}

umask 077
mkdir -p "$secrets"
for name in "$@"; do
  account_ok "$name" || { printf 'make-passwd: bad account name %q\n' "$name" >&2; exit 2; }
  file=$secrets/$name.secret
  if [[ ! -s "$file" ]]; then
    openssl rand -base64 24 | tr -d '\n=' >"$file"
    printf '\n' >>"$file"
    printf 'make-passwd: new secret %s\n' "$file" >&2
  fi
done

tmp=$(mktemp "$(dirname "$passwd")/.passwd.XXXXXX")
trap 'rm -f "$tmp"' EXIT
count=0
shopt -s nullglob
for file in "$secrets"/*.secret; do
  name=$(basename "$file" .secret)
  account_ok "$name" || { printf 'make-passwd: bad account name %q (%s)\n' "$name" "$file" >&2; exit 2; }
  IFS= read -r secret <"$file" || true
  secret=${secret%$'\r'}
  [[ -n "$secret" ]] || { printf 'make-passwd: empty secret in %s\n' "$file" >&2; exit 2; }
  printf '%s:%s\n' "$name" "$secret" >>"$tmp"
  count=$((count + 1))
done
((count)) || { printf 'make-passwd: no *.secret files in %s\n' "$secrets" >&2; exit 2; }

# -U hashes a plaintext user:password file in place (PBKDF2-SHA512 in Mosquitto 2.0).
"$passwd_bin" -U "$tmp"
chmod 600 "$tmp"
mv -f "$tmp" "$passwd"
trap - EXIT
printf 'make-passwd: %d accounts -> %s\n' "$count" "$passwd" >&2
