#!/usr/bin/env bash
# Install, then run every check: ruff, mypy --strict, import-linter, and the whole test suite
# against real Synapse, dockerd, SeaweedFS and SMTP servers that the fixtures start on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test

export AWS_EC2_METADATA_DISABLED=true
echo "==> ruff";          .venv/bin/ruff check .
echo "==> import-linter"; .venv/bin/lint-imports --no-cache
# mypy --strict (about 40 s from a fresh clone's cold cache) runs beside pytest, whose first
# minutes mostly wait on the services it starts; its verdict is shown, and counted, at the end.
mypy_log=$(mktemp)
trap 'rm -f "$mypy_log"' EXIT
.venv/bin/mypy >"$mypy_log" 2>&1 &
mypy_pid=$!
echo "==> pytest"
set +e
.venv/bin/pytest "$@"
status=$?
wait "$mypy_pid"
mypy_status=$?
set -e
echo "==> mypy --strict"
cat "$mypy_log"
if [ "$status" = 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
if [ "$mypy_status" != 0 ]; then
  exit "$mypy_status"
fi
exit "$status"
