#!/usr/bin/env bash
# The cost of a night with nothing changed, for two coffer binaries side by side: 50,000 files
# of 4 KiB in 500 directories, one first backup, then three unchanged nights each.
#
#   OLD=/path/to/old/coffer NEW=target/release/coffer bash benches/unchanged_night.sh
set -euo pipefail
W=${WORK:-/tmp/coffer-unchanged}
SRC=$W/src
NEW=${NEW:-target/release/coffer}
mkdir -p "$W"
if [[ ! -d $SRC ]]; then
  python3 - "$SRC" <<'PY'
import os, sys, random
r = random.Random(1); root = sys.argv[1]
for d in range(500):
    p = os.path.join(root, f"d{d:03}"); os.makedirs(p)
    for f in range(100):
        open(os.path.join(p, f"f{f:03}"), "wb").write(r.randbytes(4096))
PY
  find "$SRC" -exec touch -d '2026-11-01 00:00' {} +
fi
for which in ${OLD:+OLD} NEW; do
  bin=$(realpath "${!which}")
  rm -rf "$W/repo" "$W/cache"
  export COFFER_CACHE_DIR=$W/cache COFFER_PASSWORD=${COFFER_PASSWORD:-bench}
  "$bin" init --repo "$W/repo" >/dev/null
  "$bin" backup --repo "$W/repo" "$SRC" >/dev/null 2>&1
  for i in 1 2 3; do
    s=$(date +%s.%N); "$bin" backup --repo "$W/repo" "$SRC" >/dev/null 2>&1; e=$(date +%s.%N)
    echo "$which ($bin) unchanged night $i: $(python3 -c "print(f'{$e - $s:.3f}')") s"
  done
done
