#!/usr/bin/env bash
# Build the worker image hiclaw/worker-agent:<content hash> from Debian (mmdebstrap) and PyPI, with
# no image registry, and print its tag. Cached: a second run with nothing changed takes seconds.
# The engine is $DOCKER_HOST (or --docker-host); see `hiclaw-bot image build --help`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/hiclaw-bot ] || bash scripts/install.sh test >&2
exec .venv/bin/hiclaw-bot image build --root . "$@"
