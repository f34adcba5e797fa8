#!/bin/sh
# Secrets as files: for each WS_<NAME>_FILE set, export WS_<NAME> with the file's first line, for
# settings that are read from the environment only (e.g. WS_INFLUX_TOKEN). WS_MQTT_PASSWORD_FILE
# is read by the services themselves at connect time, so it is left alone.
set -eu
for var in $(env | sed -n 's/^\(WS_[A-Z0-9_]*\)_FILE=.*/\1/p'); do
  [ "$var" = WS_MQTT_PASSWORD ] && continue
  eval "file=\${${var}_FILE}"
  # shellcheck disable=SC2154 # set by eval
  [ -r "$file" ] || { echo "entrypoint: ${var}_FILE=$file is not readable" >&2; exit 1; }
  value=$(head -n1 "$file")
  export "$var=$value"
  unset "${var}_FILE"
done
exec "$@"
