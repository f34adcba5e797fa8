# shellcheck shell=bash
# MQTT account names and what each one is: the one list of reserved names. Sourced by
# make-accounts.sh (the broker's accounts) and deploy/pki/make-pki.sh (client certificates, whose
# CN is the username on the mutual-TLS port), so both refuse the same names.
#
# An account is a site (edge agent; the name is the site id) unless its name is reserved:
#   bridge, bridge-*    the bridges (one account per instance: the account names the session)
#   alerts, alerts-*    the alert service's MQTT channel
#   officer, officer-*  enforcement terminals (one account per terminal)
#   enforcement*        nobody: ws/v1/enforcement/ carries the alerts
# Reserved names are matched case-insensitively, so `Bridge-1` is no site either.

# Services that init-secrets.sh and make-pki.sh create when given none.
# shellcheck disable=SC2034 # used by the scripts that source this file
WS_SERVICE_ACCOUNTS=(bridge-1 bridge-2 alerts officer)

# ws_account_kind NAME: print site|bridge|alerts|officer; return 1 if NAME is no account name
# (the contract's Ident: A-Z a-z 0-9 _ . -, which also keeps / + # $ out of topics and ACLs; and a
# letter or digit first, so that no name reads as a command-line option).
ws_account_kind() {
  [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$ ]] || return 1
  local lower=${1,,}
  case "$lower" in
    enforcement*) return 1 ;;
    bridge | bridge-*) printf 'bridge\n' ;;
    alerts | alerts-*) printf 'alerts\n' ;;
    officer | officer-*) printf 'officer\n' ;;
    bridge* | alerts* | officer*) return 1 ;;  # bridge2, alerts_x: too close to a service to be a site
    *) printf 'site\n' ;;
  esac
}

# ws_check_account WANT NAME: succeed if NAME is an account of kind WANT ("site" or "service").
ws_check_account() {
  local kind
  kind=$(ws_account_kind "$2") || return 1
  case "$1" in
    site) [[ "$kind" == site ]] ;;
    service) [[ "$kind" != site ]] ;;
    *) return 1 ;;
  esac
}

# ws_parse_services ARG...: the leading `--service NAME` pairs into WS_SERVICES, and how many
# arguments they took into WS_SHIFT (the caller shifts them off). 1 if a --service has no NAME.
ws_parse_services() {
  WS_SERVICES=()
  WS_SHIFT=0
  while [[ "${1:-}" == --service ]]; do
    (($# >= 2)) || return 1
    WS_SERVICES+=("$2")
    WS_SHIFT=$((WS_SHIFT + 2))
    shift 2
  done
}

# ws_require_accounts PROG site|service NAME...: exit 2 with one clear line at the first NAME that
# is not an account of that kind.
ws_require_accounts() {
  local prog=$1 want=$2 name
  shift 2
  for name in "$@"; do
    ws_check_account "$want" "$name" || {
      printf '%s: bad %s name %q (reserved, or not [A-Za-z0-9][A-Za-z0-9_.-]*: see deploy/production/mosquitto/accounts.sh)\n' \
        "$prog" "$want" "$name" >&2
      exit 2
    }
  done
}
