# shellcheck shell=bash
# InfluxDB 1.8 built from source (WS_INFLUX_IMPL=1.8): sourced by influxdb.sh.
# `go install github.com/influxdata/influxdb/cmd/influxd@v1.8.10` into a gitignored cache dir, once.
# Outcome and timings on this machine: INFLUXDB_1.8_BUILD.md.

IX18_VERSION=${WS_INFLUX18_VERSION:-1.8.10}
IX18_DIR=${WS_CACHE_DIR:-$WS_LOCAL_DIR/.cache}/influxdb-$IX18_VERSION
IX18_BIN=$IX18_DIR/bin/influxd

influxdb18_bin() {
  [[ -x "$IX18_BIN" && -f "$IX18_DIR/.built" ]] || return 1
  printf '%s\n' "$IX18_BIN"
}

influxdb18_build() {  # influxdb18_build <logfile>
  local log=$1
  command -v go >/dev/null 2>&1 || die influxdb "WS_INFLUX_IMPL=1.8 needs Go to build influxd $IX18_VERSION (go not found in PATH)"
  mkdir -p "$IX18_DIR/bin"
  exec 7>"$IX18_DIR/.lock"
  flock -w 1800 7 || die influxdb "another process is building influxd $IX18_VERSION ($IX18_DIR/.lock)"
  if influxdb18_bin >/dev/null; then
    exec 7>&-
    return 0
  fi
  say influxdb "building influxd $IX18_VERSION from source with $(go version | cut -d' ' -f3) (1-3 min; log: $log)"
  if ! GOBIN="$IX18_DIR/bin" GOFLAGS=-buildvcs=false timeout 1500 go install \
    -ldflags "-X main.version=$IX18_VERSION -X main.branch=$IX18_VERSION -X main.commit=v$IX18_VERSION" \
    "github.com/influxdata/influxdb/cmd/influxd@v$IX18_VERSION" >"$log" 2>&1; then
    die influxdb "go install influxd@v$IX18_VERSION failed: $(grep -vE '^go: downloading' "$log" | tail -n1 | cut -c1-200) (see $log)"
  fi
  "$IX18_BIN" version >/dev/null 2>&1 || die influxdb "built $IX18_BIN does not run (see $log)"
  date -Is >"$IX18_DIR/.built"
  exec 7>&-
}
