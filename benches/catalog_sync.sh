#!/usr/bin/env bash
# catalog_sync.sh: what the local catalog costs in format v2 after a month of nights (issue 11).
# The catalog is a cache of the repository's index objects, synced at every open; this times
#   - an open whose catalog is current (a nightly run on the machine that wrote the last night),
#   - an open whose catalog misses the last night (another machine wrote it),
#   - a full rebuild from the index objects (the cache deleted),
#   - a full rebuild from the pack trailers (`coffer repair index`),
# each as the wall time of `coffer sets` (open + sync + list), best of RUNS.
#
# Usage:  benches/catalog_sync.sh
#   WORK=/tmp/coffer-catalog-sync  scratch dir
#   NIGHTS=30 DOCS=800 DUMP_MB=128 SEED=42 RUNS=3
#   COFFER=target/release/coffer
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
WORK=${WORK:-/tmp/coffer-catalog-sync}
NIGHTS=${NIGHTS:-30}
DOCS=${DOCS:-800}
DUMP_MB=${DUMP_MB:-128}
SEED=${SEED:-42}
RUNS=${RUNS:-3}
COFFER=${COFFER:-$ROOT/target/release/coffer}
[[ -x $COFFER ]] || (cd "$ROOT" && cargo build --release --locked)
COFFER=$(realpath "$COFFER")

rm -rf "$WORK" && mkdir -p "$WORK"
SRC=$WORK/src REPO=$WORK/repo
export COFFER_CACHE_DIR=$WORK/cache COFFER_PASSWORD=${COFFER_PASSWORD:-bench}
python3 "$HERE/gen_dirroot.py" init "$SRC" --seed "$SEED" --docs "$DOCS" --dump-mb "$DUMP_MB" >/dev/null
"$COFFER" init --repo "$REPO" >/dev/null
for n in $(seq 1 "$NIGHTS"); do
  python3 "$HERE/gen_dirroot.py" night "$SRC" --seed "$SEED$n" >/dev/null
  if [[ $n == "$NIGHTS" ]]; then
    # The catalog as another machine has it: everything but the last night.
    "$COFFER" sets --repo "$REPO" >/dev/null
    cat=$(find "$COFFER_CACHE_DIR" -name index.sqlite)
    sqlite3_copy=$WORK/catalog-before-last-night.sqlite
    python3 -c "import sqlite3,sys; s=sqlite3.connect(sys.argv[1]); d=sqlite3.connect(sys.argv[2]); s.backup(d)" "$cat" "$sqlite3_copy"
  fi
  "$COFFER" backup --repo "$REPO" "$SRC" >/dev/null 2>&1
done
cat=$(find "$COFFER_CACHE_DIR" -name index.sqlite)

# Best wall time of RUNS runs of "$@", after running PREP (a shell snippet) before each.
best() {
  local prep=$1; shift
  local best=""
  for _ in $(seq 1 "$RUNS"); do
    eval "$prep"
    local s e t
    s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N)
    t=$(python3 -c "print(f'{$e - $s:.3f}')")
    if [[ -z $best ]] || python3 -c "import sys; sys.exit(0 if $t < $best else 1)"; then best=$t; fi
  done
  echo "$best"
}
drop_catalog() { rm -f "$cat" "$cat-wal" "$cat-shm"; }
old_catalog() { drop_catalog; cp "$sqlite3_copy" "$cat"; }

objects=$(find "$REPO/index" -type f | wc -l)
object_bytes=$(du -sb "$REPO/index" | cut -f1)
packs=$(find "$REPO/packs" -type f | wc -l)
repo_bytes=$(du -sb "$REPO" | cut -f1)
t_current=$(best ":" "$COFFER" sets --repo "$REPO")
t_missed=$(best old_catalog "$COFFER" sets --repo "$REPO")
t_objects=$(best drop_catalog "$COFFER" sets --repo "$REPO")
t_night=$(best ":" "$COFFER" backup --repo "$REPO" "$SRC")
t_trailers=$(best ":" "$COFFER" repair index --repo "$REPO")

cat <<EOF | tee "$WORK/results.md"
| after $NIGHTS nights ($DOCS docs, ${DUMP_MB} MiB dump; $packs packs, $((repo_bytes >> 20)) MiB) | wall s (best of $RUNS) |
|---|---|
| index objects in the repository | $objects ($((object_bytes >> 10)) KiB) |
| open, catalog current (\`coffer sets\`) | $t_current |
| open, catalog missing the last night's object | $t_missed |
| open, catalog deleted: rebuilt from the index objects | $t_objects |
| rebuilt from the pack trailers (\`coffer repair index\`) | $t_trailers |
| an unchanged night (\`coffer backup\`, for scale) | $t_night |
EOF
