#!/usr/bin/env bash
# many_files.sh: a no-change night over many small files, and how peak RSS grows with the
# file count. For each N in COUNTS it builds N files of 1-4 KiB (100 per directory, 100
# directories per parent), takes a first backup into an encrypted repository, then times an
# unchanged night (best of three) and records both runs' peak RSS (GNU time).
#
#   COUNTS="30000 1000000" WORK=/tmp/coffer-many bash benches/many_files.sh
#   COFFER=target/release/coffer (built if missing)   KEEP=1 keeps the trees
#
# Goals (issue 12): the unchanged night over 1,000,000 files <= 2 s; peak RSS growing by at
# most 30 MB from 30,000 to 1,000,000 files.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=${WORK:-/tmp/coffer-many}
COUNTS=${COUNTS:-"30000 1000000"}
COFFER=${COFFER:-$ROOT/target/release/coffer}
[[ -x $COFFER ]] || (cd "$ROOT" && cargo build --release)
[[ -x /usr/bin/time ]] || { echo "many_files.sh: needs GNU time (apt-get install -y time)" >&2; exit 1; }
mkdir -p "$W"
export COFFER_PASSWORD=${COFFER_PASSWORD:-bench}
results=$W/results.md
echo "| files | first backup (s) | first RSS (MiB) | unchanged night, best of 3 (s) | night RSS (MiB) |" >"$results"
echo "|---:|---:|---:|---:|---:|" >>"$results"
for n in $COUNTS; do
  src=$W/src-$n
  if [[ ! -d $src ]]; then
    echo "== building $n files in $src"
    python3 - "$src" "$n" <<'PY'
import os, sys, random
root, n = sys.argv[1], int(sys.argv[2]); r = random.Random(n)
for i in range(n):
    d = os.path.join(root, f"a{i // 10000:03}", f"b{(i // 100) % 100:02}")
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i % 100:02}"), "wb") as f:
        f.write(r.randbytes(1024 + r.randrange(3072)))
PY
    find "$src" -exec touch -d '2026-11-01 00:00' {} +
  fi
  rm -rf "$W/repo" "$W/cache"
  export COFFER_CACHE_DIR=$W/cache
  "$COFFER" init --repo "$W/repo" >/dev/null
  /usr/bin/time -f '%e %M' -o "$W/first.time" "$COFFER" backup --repo "$W/repo" "$src" >/dev/null 2>&1
  read -r first_s first_kib <"$W/first.time"
  best=""
  for _ in 1 2 3; do
    /usr/bin/time -f '%e %M' -o "$W/night.time" "$COFFER" backup --repo "$W/repo" "$src" >/dev/null 2>&1
    read -r s kib <"$W/night.time"
    if [[ -z $best ]] || awk -v a="$s" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$s night_kib=$kib; fi
  done
  echo "$n files: first $first_s s, $((first_kib / 1024)) MiB; unchanged night $best s, $((night_kib / 1024)) MiB"
  echo "| $n | $first_s | $((first_kib / 1024)) | $best | $((night_kib / 1024)) |" >>"$results"
  [[ ${KEEP:-0} == 1 ]] || rm -rf "$src"
done
rm -rf "$W/repo" "$W/cache"
cat "$results"
