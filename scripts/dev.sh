#!/usr/bin/env bash
# Install, then start the embedded local stack and the bot: `hiclaw-bot dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test
exec .venv/bin/hiclaw-bot dev "$@"
