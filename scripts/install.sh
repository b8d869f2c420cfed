#!/usr/bin/env bash
# Install everything hiclaw-bot needs on a fresh Debian 12 machine with Python 3.11:
#   - Debian's docker.io, busybox-static and mmdebstrap (the Docker backend, its tests and the
#     worker image built from Debian by `hiclaw-bot image build`; needs root),
#   - a virtualenv in .venv with the pinned Python dependencies (Synapse and SeaweedFS included).
#   - with the test extras, the OpenClaw worker runtime (scripts/install-openclaw.sh, outside the repo).
# Idempotent: a second run installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRAS="${1:-test}"
PYTHON="${PYTHON:-python3}"

if ! command -v dockerd >/dev/null 2>&1 || ! command -v busybox >/dev/null 2>&1 \
    || ! command -v mmdebstrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing docker.io, busybox-static and mmdebstrap from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq docker.io busybox-static mmdebstrap >/dev/null
  else
    echo "==> note: dockerd/busybox/mmdebstrap missing and cannot apt-get them; Docker backend tests will skip" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)-${EXTRAS}"
if [ ! -f "$stamp" ]; then
  echo "==> installing Python dependencies (.[${EXTRAS}])"
  .venv/bin/python -m pip install -q --upgrade pip==25.3 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -m pip install -q -e ".[${EXTRAS}]" 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -c "import hiclaw_bot, storage, backends" 
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# Confined workers (the process backend, run as root) start this checkout's interpreter under uids
# of their own: every directory above it and above the real interpreter must be passable by them
# (o+x: they may pass through, never list).
if [ "$(id -u)" = 0 ] && [ -x .venv/bin/python ]; then
  for target in "$PWD/.venv/bin/python" "$(readlink -f .venv/bin/python)"; do
    dir=$(dirname "$target")
    while [ "$dir" != "/" ]; do
      chmod o+x "$dir"
      dir=$(dirname "$dir")
    done
  done
fi

if [ "$EXTRAS" = test ] || [ "${HICLAW_INSTALL_OPENCLAW:-}" = 1 ]; then
  # The OpenClaw runtime (Node 24, openclaw, its Matrix plugin) outside the repo, for its tests.
  echo "==> OpenClaw runtime"
  bash scripts/install-openclaw.sh >/dev/null
fi
