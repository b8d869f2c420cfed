#!/usr/bin/env bash
# Install, then run every check: ruff, mypy --strict, import-linter, and the whole test suite
# against real Synapse, dockerd, SeaweedFS and SMTP servers that the fixtures start on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test

export AWS_EC2_METADATA_DISABLED=true
echo "==> ruff";          .venv/bin/ruff check .
echo "==> mypy --strict"; .venv/bin/mypy
echo "==> import-linter"; .venv/bin/lint-imports --no-cache
echo "==> pytest"
set +e
.venv/bin/pytest "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit "$status"
