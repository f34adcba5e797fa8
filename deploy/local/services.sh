#!/usr/bin/env bash
# Entry point for the local services of wastestream (Mosquitto, Kafka, InfluxDB) on loopback.
#
#   services.sh up     [mosquitto|kafka|influxdb ...]   install if missing, start, wait until healthy
#   services.sh down   [...]                             stop what we started (TERM, then KILL)
#   services.sh status [...]                             one line per service; exit 0 iff all healthy
#   services.sh reset  [...]                             down + delete the data dirs (fresh state)
#
# Default: all three. Everything lives under ${WS_RUN_DIR:-<repo>/.run}/<service>/.
# On failure: one line "services: <service>: <reason>" on stderr and a non-zero exit.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
all=(mosquitto kafka influxdb)

usage() {
  printf 'usage: %s up|down|status|reset [mosquitto|kafka|influxdb ...]\n' "$0" >&2
  exit 2
}

(($# >= 1)) || usage
cmd=$1
shift
case "$cmd" in up | down | status | reset) ;; *) usage ;; esac

services=("$@")
((${#services[@]})) || services=("${all[@]}")
for s in "${services[@]}"; do
  case "$s" in mosquitto | kafka | influxdb) ;; *) printf 'services: %s: unknown service (known: %s)\n' "$s" "${all[*]}" >&2; exit 2 ;; esac
done

# Stop in reverse order of start.
if [[ "$cmd" == down || "$cmd" == reset ]]; then
  rev=()
  for ((i = ${#services[@]} - 1; i >= 0; i--)); do rev+=("${services[i]}"); done
  services=("${rev[@]}")
fi

rc=0
for s in "${services[@]}"; do
  case "$cmd" in
    up | down | reset) bash "$here/$s.sh" "$cmd" || exit $? ;;
    status) bash "$here/$s.sh" status || rc=3 ;;
  esac
done
exit "$rc"
