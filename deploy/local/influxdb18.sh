# shellcheck shell=bash
# InfluxDB 1.8 built from source (WS_INFLUX_IMPL=1.8): sourced by influxdb.sh.
# See INFLUXDB_1.8_BUILD.md for the outcome of building it on this machine.

influxdb18_bin() {
  die influxdb "WS_INFLUX_IMPL=1.8 is not available yet (see deploy/local/INFLUXDB_1.8_BUILD.md)"
}

influxdb18_build() {
  die influxdb "WS_INFLUX_IMPL=1.8 is not available yet (see deploy/local/INFLUXDB_1.8_BUILD.md)"
}
