#!/usr/bin/env bash
# Install, with apt-get and only when missing, every Debian package that `make test`, `make demo`,
# the local services and the tests use (WS_PROGRAMS in lib.sh). Run by the Makefile before the
# venv is made. Silent when everything is there; else one line naming the packages it installs.
# Usage: packages.sh
set -euo pipefail
# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

programs=()
for entry in "${WS_PROGRAMS[@]}"; do programs+=("${entry%%:*}"); done
mkdir -p "$WS_RUN_DIR/packages"
take_lock packages "$WS_RUN_DIR/packages/.lock" 900
ensure_programs packages "$WS_RUN_DIR/packages/install.log" "${programs[@]}"
