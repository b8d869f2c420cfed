#!/bin/sh
# hiclaw-sync.sh: pull this worker's files from the object store now, or push what it produced.
#
#   hiclaw-sync.sh [pull]        agents/<name>/ -> $HOME (state/ excluded: the worker writes it)
#   hiclaw-sync.sh push [DIR]    DIR (default $HOME/output) -> agents/<name>/output/
#
# Where the store is comes from the worker's environment, as the bot sets it:
# HICLAW_WORKER_NAME, HICLAW_FS_KIND (local: HICLAW_FS_DIR; s3: HICLAW_FS_ENDPOINT,
# HICLAW_OSS_BUCKET or HICLAW_FS_BUCKET, HICLAW_FS_ACCESS_KEY, HICLAW_FS_SECRET_KEY).
# S3 needs the MinIO client `mc`, as upstream's worker image has it. SOUL.md is never pushed.
set -eu

WORKER="${HICLAW_WORKER_NAME:?HICLAW_WORKER_NAME is not set}"
MODE="${1:-pull}"
OUTPUT="${2:-$HOME/output}"

case "$MODE" in
  pull|push) ;;
  *) echo "usage: hiclaw-sync.sh [pull | push [DIR]]" >&2; exit 2 ;;
esac

case "${HICLAW_FS_KIND:-s3}" in
  local)
    ROOT="${HICLAW_FS_DIR:?HICLAW_FS_DIR is not set}/agents/$WORKER"
    if [ "$MODE" = pull ]; then
      [ -d "$ROOT" ] || { echo "no files for $WORKER in the store" >&2; exit 1; }
      (cd "$ROOT" && find . -type f ! -path './state/*' ! -path './.*') | while IFS= read -r file; do
        mkdir -p "$HOME/$(dirname "$file")"
        cp "$ROOT/$file" "$HOME/$file"
      done
    else
      [ -d "$OUTPUT" ] || { echo "nothing to push: $OUTPUT does not exist" >&2; exit 1; }
      mkdir -p "$ROOT/output"
      (cd "$OUTPUT" && find . -type f ! -name SOUL.md) | while IFS= read -r file; do
        mkdir -p "$ROOT/output/$(dirname "$file")"
        cp "$OUTPUT/$file" "$ROOT/output/$file"
      done
    fi
    ;;
  s3)
    command -v mc >/dev/null || { echo "hiclaw-sync.sh needs the MinIO client 'mc' for S3" >&2; exit 1; }
    BUCKET="${HICLAW_OSS_BUCKET:-${HICLAW_FS_BUCKET:-hiclaw-storage}}"
    mc alias set hiclaw "${HICLAW_FS_ENDPOINT:?}" "${HICLAW_FS_ACCESS_KEY:?}" "${HICLAW_FS_SECRET_KEY:?}" >/dev/null
    if [ "$MODE" = pull ]; then
      mc mirror --overwrite --exclude "state/*" "hiclaw/$BUCKET/agents/$WORKER/" "$HOME/"
    else
      mc mirror --overwrite --exclude "SOUL.md" "$OUTPUT/" "hiclaw/$BUCKET/agents/$WORKER/output/"
    fi
    ;;
  *) echo "HICLAW_FS_KIND must be local or s3" >&2; exit 2 ;;
esac
echo "hiclaw-sync: $MODE done for $WORKER"
