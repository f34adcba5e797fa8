#!/bin/bash
# Run once by the influxdb:2 image after its first setup (docker-entrypoint-initdb.d):
#  - a DBRP mapping, so that InfluxQL (Grafana's dashboards, v1 /query) finds the bucket as
#    database "$DOCKER_INFLUXDB_INIT_BUCKET", retention policy "autogen";
#  - a v1 login "grafana" that may only read the bucket (its password from a secret file).
set -euo pipefail
influx v1 dbrp create \
  --org "$DOCKER_INFLUXDB_INIT_ORG" \
  --bucket-id "$DOCKER_INFLUXDB_INIT_BUCKET_ID" \
  --db "$DOCKER_INFLUXDB_INIT_BUCKET" \
  --rp autogen \
  --default
password=$(head -n1 "$WS_GRAFANA_INFLUX_PASSWORD_FILE")
influx v1 auth create \
  --org "$DOCKER_INFLUXDB_INIT_ORG" \
  --username grafana \
  --password "$password" \
  --read-bucket "$DOCKER_INFLUXDB_INIT_BUCKET_ID" \
  --description "Grafana, InfluxQL, read only"
