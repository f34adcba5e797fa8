# shellcheck shell=bash
# Shared helpers for deploy/local/*.sh. Sourced, never executed.
#
# Conventions:
#   - every failure that stops a service prints ONE line "services: <svc>: <reason>" to stderr
#     (function `die`) and exits non-zero;
#   - progress goes to stderr as "<svc>: ..." (function `say`), status lines go to stdout;
#   - every wait loop is bounded;
#   - a service is "ours" when the pid in <run>/<svc>/<svc>.pid is alive and its command line
#     contains our generated config file path (guards against pid reuse).

WS_LOCAL_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WS_REPO_ROOT=$(cd "$WS_LOCAL_DIR/../.." && pwd)
WS_RUN_DIR=${WS_RUN_DIR:-$WS_REPO_ROOT/.run}
# Absolute, so that pid/config markers do not depend on the caller's working directory.
mkdir -p "$WS_RUN_DIR" || { printf 'services: run-dir: cannot create %s\n' "$WS_RUN_DIR" >&2; exit 1; }
WS_RUN_DIR=$(cd "$WS_RUN_DIR" && pwd)
WS_HOST=127.0.0.1
export WS_RUN_DIR

# Python used for health checks: the repo venv if present (has aiokafka), else system python3.
ws_python() {
  if [[ -n "${WS_PYTHON:-}" && -x "${WS_PYTHON:-}" ]]; then
    printf '%s\n' "$WS_PYTHON"
  elif [[ -x "$WS_REPO_ROOT/.venv/bin/python" ]]; then
    printf '%s\n' "$WS_REPO_ROOT/.venv/bin/python"
  elif command -v python3 >/dev/null 2>&1; then
    command -v python3
  fi
}

die() {  # die <svc> <reason...>
  local svc=$1
  shift
  printf 'services: %s: %s\n' "$svc" "$*" >&2
  exit 1
}

say() {  # say <svc> <message...>
  local svc=$1
  shift
  printf '%s: %s\n' "$svc" "$*" >&2
}

# Run <cmd...>, its output appended to <logfile>, while printing "<svc>: <what>: N s so far (usually
# <expected>)" every 10 s, so a long first-time step (Debian packages, Kafka's jars, the venv) says
# what it does; returns its exit status.
with_progress() {  # with_progress <svc> <what> <expected> <logfile> <cmd>...
  local svc=$1 what=$2 expected=$3 logfile=$4 ticker rc=0 start=$SECONDS
  shift 4
  ( while sleep 10; do say "$svc" "$what: $((SECONDS - start)) s so far (usually $expected)"; done ) &
  ticker=$!
  "$@" >>"$logfile" 2>&1 || rc=$?
  kill "$ticker" 2>/dev/null || true
  wait "$ticker" 2>/dev/null || true
  return "$rc"
}

# Make sure a value is a TCP port number.
check_port_value() {  # check_port_value <svc> <name> <value>
  if [[ ! "$3" =~ ^[0-9]+$ ]] || (($3 < 1 || $3 > 65535)); then
    die "$1" "$2='$3' is not a valid TCP port"
  fi
}

# True if something accepts TCP connections on 127.0.0.1:<port>.
port_open() {  # port_open <port>
  # shellcheck disable=SC2016 # $0/$1 are expanded by the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$WS_HOST" "$1" 2>/dev/null
}

# Describe who listens on a port ("pid 123 (cmd ...)") if ss can tell; empty otherwise.
port_owner() {  # port_owner <port>
  local line pid cmd
  command -v ss >/dev/null 2>&1 || return 0
  line=$(ss -Hltnp "sport = :$1" 2>/dev/null | head -n1) || return 0
  [[ "$line" =~ pid=([0-9]+) ]] || return 0
  pid=${BASH_REMATCH[1]}
  cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-100) || cmd=""
  printf 'pid %s: %s' "$pid" "${cmd% }"
}

# Pid of the process listening on a port, if ss can tell.
port_owner_pid() {  # port_owner_pid <port>
  local line
  command -v ss >/dev/null 2>&1 || return 0
  line=$(ss -Hltnp "sport = :$1" 2>/dev/null | head -n1) || return 0
  [[ "$line" =~ pid=([0-9]+) ]] && printf '%s\n' "${BASH_REMATCH[1]}"
  return 0
}

# True if <pid> is alive (not a zombie) and its command line contains <marker>.
pid_is_ours() {  # pid_is_ours <pid> <marker>
  local pid=$1 marker=$2 state cmdline
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ "$state" != Z && "$state" != X ]] || return 1
  cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
  [[ "$cmdline" == *"$marker"* ]]
}

# Print the pid from <pidfile> if that process is ours and alive; return 1 otherwise.
running_pid() {  # running_pid <pidfile> <marker>
  local pid
  [[ -f "$1" ]] || return 1
  pid=$(head -n1 "$1" 2>/dev/null) || return 1
  pid_is_ours "$pid" "$2" || return 1
  printf '%s\n' "$pid"
}

# If our own process (found by marker) listens on <port> but the pid file is lost, adopt it.
adopt_listener() {  # adopt_listener <pidfile> <marker> <port>
  local pid
  pid=$(port_owner_pid "$3")
  [[ -n "$pid" ]] && pid_is_ours "$pid" "$2" || return 1
  printf '%s\n' "$pid" >"$1"
}

# Fail with one clear line if any of the ports is taken (by someone else: call this only
# when our own process is not running).
ensure_ports_free() {  # ensure_ports_free <svc> <port>...
  local svc=$1 port owner
  shift
  for port in "$@"; do
    if port_open "$port"; then
      owner=$(port_owner "$port")
      die "$svc" "port $WS_HOST:$port is already in use by another process${owner:+ ($owner)}, not started by us; stop it or choose another port"
    fi
  done
}

# Start a command in the background, detached (own session, no stdin, output appended to a log),
# and write its pid. Closes fd 9 (our lock) so the daemon does not hold the lock.
start_daemon() {  # start_daemon <pidfile> <logfile> <cmd...>
  local pidfile=$1 logfile=$2
  shift 2
  {
    printf '\n==== %s starting: %s\n' "$(date -Is)" "$*"
  } >>"$logfile"
  setsid nohup "$@" </dev/null >>"$logfile" 2>&1 9>&- &
  printf '%s\n' "$!" >"$pidfile"
}

# Stop the process in <pidfile>: TERM, wait up to <timeout> s, then KILL. No-op if not running.
stop_daemon() {  # stop_daemon <svc> <pidfile> <marker> <timeout>
  local svc=$1 pidfile=$2 marker=$3 timeout=$4 pid i
  if ! pid=$(running_pid "$pidfile" "$marker"); then
    rm -f "$pidfile"
    return 0
  fi
  say "$svc" "stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout * 10; i++)); do
    pid_is_ours "$pid" "$marker" || break
    sleep 0.1
  done
  if pid_is_ours "$pid" "$marker"; then
    say "$svc" "pid $pid still alive after ${timeout}s, sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      pid_is_ours "$pid" "$marker" || break
      sleep 0.1
    done
    pid_is_ours "$pid" "$marker" && die "$svc" "pid $pid survived KILL"
  fi
  rm -f "$pidfile"
  say "$svc" "stopped"
}

# Remember which ports a started instance uses; refuse to treat it as "up" for other ports.
record_ports() {  # record_ports <file> <ports...>
  local file=$1
  shift
  printf '%s\n' "$*" >"$file"
}
check_recorded_ports() {  # check_recorded_ports <svc> <file> <ports...>
  local svc=$1 file=$2 recorded
  shift 2
  recorded=$(cat "$file" 2>/dev/null) || recorded=""
  [[ -z "$recorded" || "$recorded" == "$*" ]] ||
    die "$svc" "already running from $WS_RUN_DIR with port(s) $recorded, not $*; run services.sh down first"
}

# Take an exclusive lock for this service's run dir on fd 9 (bounded wait), so that concurrent
# `up`/`down` calls (make demo + make test) do not race.
take_lock() {  # take_lock <svc> <lockfile> [timeout]
  local svc=$1 lockfile=$2 timeout=${3:-180}
  command -v flock >/dev/null 2>&1 || return 0
  exec 9>"$lockfile"
  flock -w "$timeout" 9 || die "$svc" "another services.sh holds $lockfile for more than ${timeout}s"
}

# Install Debian packages if a binary is missing: apt-get install, then update + retry on failure.
apt_install() {  # apt_install <svc> <logfile> <package>...
  local svc=$1 logfile=$2
  shift 2
  local -a sudo=()
  if ((EUID != 0)); then
    if ! command -v sudo >/dev/null 2>&1 || ! sudo -n true 2>/dev/null; then
      die "$svc" "package(s) $* not installed and not root (no passwordless sudo): run 'sudo apt-get install -y $*'"
    fi
    sudo=(sudo -n)
  fi
  command -v apt-get >/dev/null 2>&1 || die "$svc" "package(s) $* not installed and apt-get not available"
  say "$svc" "installing Debian package(s) $* (log: $logfile)"
  local -a apt=(env DEBIAN_FRONTEND=noninteractive timeout 900 apt-get -y -q
    -o DPkg::Lock::Timeout=120 -o Dpkg::Options::=--force-confold)
  if with_progress "$svc" "installing $*" "1-5 min" "$logfile" "${sudo[@]}" "${apt[@]}" install "$@"; then
    return 0
  fi
  say "$svc" "apt-get install failed, running apt-get update and retrying"
  "${sudo[@]}" "${apt[@]}" update >>"$logfile" 2>&1 || true
  if ! "${sudo[@]}" "${apt[@]}" install "$@" >>"$logfile" 2>&1; then
    die "$svc" "apt-get install $* failed: $(grep -E '^(E|W):' "$logfile" | tail -n1 | cut -c1-200) (see $logfile)"
  fi
}

# Every program that `make test`, `make demo`, the services and the tests call, and the Debian
# package that has it: deploy/local/packages.sh installs the missing ones before anything runs
# (the Makefile's set-up), and tests/unit/test_setup.py fails when a test or service calls a
# program not named here. `python3-venv` stands for `python3 -m venv` (the Makefile's first step).
WS_PROGRAMS=(
  python3-venv:python3-venv
  mosquitto:mosquitto
  mosquitto_sub:mosquitto-clients
  java:openjdk-17-jre-headless
  mvn:maven
  influxd:influxdb
  openssl:openssl
  shellcheck:shellcheck
  systemd-analyze:systemd
  chromium:chromium
  chromedriver:chromium-driver
  cjk-font:fonts-wqy-microhei
  git:git
  promtool:prometheus
  prometheus:prometheus
)

# Major version of `java` on PATH (17 for "17.0.15", 8 for "1.8.0"); 1 if none or unparsable.
ws_java_major() {
  local line major
  command -v java >/dev/null 2>&1 || return 1
  line=$(java -version 2>&1 | head -n1)
  [[ "$line" =~ \"([0-9]+)(\.([0-9]+))? ]] || return 1
  major=${BASH_REMATCH[1]}
  ((major == 1)) && major=${BASH_REMATCH[3]}
  printf '%s\n' "$major"
}

# True if <program> of WS_PROGRAMS is usable (java: 17 or newer, as Kafka 4 needs).
ws_have_program() {  # ws_have_program <program>
  local major
  case "$1" in
    python3-venv) command -v python3 >/dev/null 2>&1 && python3 -c 'import ensurepip, venv' 2>/dev/null ;;
    java) major=$(ws_java_major) && ((major >= 17)) ;;
    cjk-font) command -v fc-list >/dev/null 2>&1 && [[ -n "$(fc-list ':lang=zh' 2>/dev/null)" ]] ;;  # pages and report in Chinese
    *) command -v "$1" >/dev/null 2>&1 || [[ -x /usr/sbin/$1 || -x /usr/bin/$1 ]] ;;
  esac
}

# Install, in one apt-get, the packages of those <program>s (of WS_PROGRAMS) that are missing.
ensure_programs() {  # ensure_programs <svc> <logfile> <program>...
  local svc=$1 logfile=$2 prog entry package
  local -a missing=()
  shift 2
  for prog in "$@"; do
    ws_have_program "$prog" && continue
    package=""
    for entry in "${WS_PROGRAMS[@]}"; do
      [[ "${entry%%:*}" == "$prog" ]] && package=${entry#*:}
    done
    [[ -n "$package" ]] || die "$svc" "no Debian package known for '$prog' (WS_PROGRAMS in deploy/local/lib.sh)"
    missing+=("$package")
  done
  ((${#missing[@]})) || return 0
  apt_install "$svc" "$logfile" "${missing[@]}"
  for prog in "$@"; do
    ws_have_program "$prog" || die "$svc" "'$prog' still missing after apt-get install (see $logfile)"
  done
}

# Last meaningful line of a log file, for error messages.
log_tail() {  # log_tail <file>
  [[ -f "$1" ]] || return 0
  grep -v '^\s*$' "$1" | tail -n1 | cut -c1-200
}

# Dispatch the standard subcommands of a service script.
service_main() {  # service_main <svc> <cmd>
  local svc=$1 cmd=${2:-}
  case "$cmd" in
    up | down | status | reset) "${svc}_${cmd}" ;;
    *)
      printf 'usage: %s up|down|status|reset\n' "$0" >&2
      exit 2
      ;;
  esac
}
