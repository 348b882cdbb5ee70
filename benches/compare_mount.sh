#!/usr/bin/env bash
# compare_mount.sh: sequential read throughput through `coffer mount` against `restic mount`
# on the same data in the same run (issue 5).
#
# Usage:  benches/compare_mount.sh
#   WORK=/tmp/coffer-compare-mount          scratch dir (corpus, repos, mounts, logs, results.md)
#   DOCS=400 DUMP_MB=512 SEED=42            corpus (gen_dirroot.py init)
#   COFFER=/tmp/coffer-mount-bench/coffer   binary (a copy, so rebuilds don't change it)
#   MOUNT_TIMEOUT=120                       seconds to wait for a mount to show the data
#   KEEP=0                                  1 keeps corpus and repositories afterwards
#
# Steps:
#   1. gen_dirroot.py init DIR (db/alfresco.sql of ~DUMP_MB MiB plus a contentstore).
#   2. coffer init + backup DIR; restic init + backup DIR.
#   3. coffer mount R MNT (MNT/sets/default/latest/<basename DIR>/...) and restic mount R MNT2
#      (MNT2/snapshots/latest/<absolute DIR>/...), each in the background; poll (bounded)
#      until the dump is visible.
#   4. First reads through each mount (cold for the tool's own chunk cache; the repository
#      files are likely in the page cache for both tools, nothing is dropped):
#      (a) cat of the dump > /dev/null under /usr/bin/time -> MiB/s;
#      (b) tar -cf - of the contentstore | wc -c -> MiB/s and files/s.
#      Then correctness: cmp the dump, diff -r the contentstore, both against the source.
#   5. fusermount3 -u both, wait for the processes, write $WORK/results.md.
# Reads run one tool at a time: coffer first, then restic.
# Shared helpers (die, checks, WORK setup) are in benches/common.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
source "$HERE/common.sh"

WORK=${WORK:-/tmp/coffer-compare-mount}
DOCS=${DOCS:-400}
DUMP_MB=${DUMP_MB:-512}
SEED=${SEED:-42}
COFFER=${COFFER:-/tmp/coffer-mount-bench/coffer}
MOUNT_TIMEOUT=${MOUNT_TIMEOUT:-120}
KEEP=${KEEP:-0}

need python3 restic fusermount3 tar cmp diff
need_gnu_time
[[ -e /dev/fuse ]] || missing+=(/dev/fuse)
missing_die ""
locate_coffer copy

# A WORK dir of an earlier run may still have a mount in it: never rm -rf through that.
if [[ -f $WORK/.coffer-compare-mount ]]; then
  for m in "$WORK"/mnt/*; do mountpoint -q "$m" 2>/dev/null && die "$m is still mounted; fusermount3 -u it first"; done
fi
setup_work .coffer-compare-mount logs repos cache config src mnt/coffer mnt/restic
MNT_C=$WORK/mnt/coffer
MNT_R=$WORK/mnt/restic

export XDG_CACHE_HOME=$WORK/cache XDG_CONFIG_HOME=$WORK/config COFFER_CACHE_DIR=$WORK/cache/coffer
export RESTIC_PASSWORD=bench

PIDS=()
cleanup() {
  for m in "$MNT_C" "$MNT_R"; do
    mountpoint -q "$m" 2>/dev/null && fusermount3 -u "$m" 2>/dev/null || true
  done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

load() { cut -d' ' -f1-3 /proc/loadavg; }
LOAD_BEFORE=$(load)
UPTIME_BEFORE=$(uptime)
echo "== uptime before: $UPTIME_BEFORE"

# ------------------------------------------------------------------ 1. corpus
echo "== generating corpus (seed $SEED, $DOCS docs, ~$DUMP_MB MiB dump)"
python3 "$HERE/gen_dirroot.py" init "$SRC" --seed "$SEED" --docs "$DOCS" --dump-mb "$DUMP_MB" >"$LOG/gen.log" 2>&1
DUMP_REL=db/alfresco.sql
[[ -f $SRC/$DUMP_REL ]] || die "no $DUMP_REL in the generated corpus"
DUMP_BYTES=$(stat -c %s "$SRC/$DUMP_REL")
TREE_FILES=$(find "$SRC/contentstore" -type f | wc -l)
TREE_BYTES=$(find "$SRC/contentstore" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')
echo "   dump $DUMP_BYTES bytes; contentstore $TREE_FILES files, $TREE_BYTES bytes"

# ------------------------------------------------------------------ 2. backups
echo "== backups"
export COFFER_PASSWORD=${COFFER_PASSWORD:-bench}
"$COFFER" init --repo "$WORK/repos/coffer" >"$LOG/coffer-init.log" 2>&1
"$COFFER" backup --repo "$WORK/repos/coffer" "$SRC" >"$LOG/coffer-backup.log" 2>&1
restic init --repo "$WORK/repos/restic" >"$LOG/restic-init.log" 2>&1
restic backup --repo "$WORK/repos/restic" "$SRC" >"$LOG/restic-backup.log" 2>&1

# ------------------------------------------------------------------ 3./4. mount and read
# Wait (bounded) until $1 exists; $2 is the mounting process, which must stay alive.
wait_for() {
  local f=$1 pid=$2 i
  for ((i = 0; i < MOUNT_TIMEOUT * 10; i++)); do
    [[ -e $f ]] && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# secs() runs a command under GNU time and prints the elapsed seconds (its stdout goes to $OUT).
secs() {
  local tf
  tf=$(mktemp "$WORK/time.XXXXXX")
  /usr/bin/time -f %e -o "$tf" "$@" >"$OUT"
  cat "$tf"
  rm -f "$tf"
}
rate() { awk -v b="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.1f", b / 1048576 / s; else print "inf" }'; }
frate() { awk -v n="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", n / s; else print "inf" }'; }

declare -A DUMP_S TREE_S TAR_BYTES DUMP_OK TREE_OK MOUNT_S
measure_tool() {
  local tool=$1 mnt=$2 base=$3 pid t0
  echo "== $tool: mounting at $mnt"
  t0=$(date +%s.%N)
  case $tool in
    coffer) "$COFFER" mount --repo "$WORK/repos/coffer" "$mnt" >"$LOG/coffer-mount.log" 2>&1 & ;;
    restic) restic mount --repo "$WORK/repos/restic" "$mnt" >"$LOG/restic-mount.log" 2>&1 & ;;
  esac
  pid=$!
  PIDS+=("$pid")
  if ! wait_for "$base/$DUMP_REL" "$pid"; then
    echo "--- $LOG/$tool-mount.log:" >&2
    cat "$LOG/$tool-mount.log" >&2 || true
    die "$tool mount: $base/$DUMP_REL did not appear within ${MOUNT_TIMEOUT}s"
  fi
  MOUNT_S[$tool]=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')

  echo "   (a) cat $base/$DUMP_REL"
  OUT=/dev/null
  DUMP_S[$tool]=$(secs cat "$base/$DUMP_REL")
  echo "   (b) tar -cf - contentstore"
  OUT=$WORK/tar-bytes.$tool
  TREE_S[$tool]=$(secs bash -c 'set -o pipefail; cd "$1" && tar -cf - contentstore | wc -c' _ "$base")
  TAR_BYTES[$tool]=$(tr -d ' \n' <"$OUT")
  rm -f "$OUT"

  echo "   correctness"
  if cmp "$SRC/$DUMP_REL" "$base/$DUMP_REL" >"$LOG/$tool-cmp.log" 2>&1; then DUMP_OK[$tool]=ok; else DUMP_OK[$tool]=DIFFERS; fi
  if diff -r "$SRC/contentstore" "$base/contentstore" >"$LOG/$tool-diff.log" 2>&1; then TREE_OK[$tool]=ok; else TREE_OK[$tool]=DIFFERS; fi

  echo "   unmounting"
  fusermount3 -u "$mnt"
  local i
  for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && die "$tool mount (pid $pid) still running 30 s after fusermount3 -u"
  local rc=0
  wait "$pid" || rc=$?
  [[ $rc == 0 ]] || echo "compare_mount.sh: warning: $tool mount exited with status $rc (see $LOG/$tool-mount.log)" >&2
  echo "   ${DUMP_S[$tool]} s dump, ${TREE_S[$tool]} s tree, dump ${DUMP_OK[$tool]}, tree ${TREE_OK[$tool]}"
}

measure_tool coffer "$MNT_C" "$MNT_C/sets/default/latest/$(basename "$SRC")"
measure_tool restic "$MNT_R" "$MNT_R/snapshots/latest$SRC"

LOAD_AFTER=$(load)
UPTIME_AFTER=$(uptime)
echo "== uptime after: $UPTIME_AFTER"

# ------------------------------------------------------------------ 5. results
DUMP_MIB=$(awk -v b="$DUMP_BYTES" 'BEGIN { printf "%.0f", b / 1048576 }')
TREE_MIB=$(awk -v b="$TREE_BYTES" 'BEGIN { printf "%.0f", b / 1048576 }')
# speedup A_S B_S: how many times faster A is than B (B/A seconds)
speedup() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0) printf "%.2fx", b / a; else print "n/a" }'; }
{
  echo "Sequential reads through a FUSE mount, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores."
  echo "Corpus: gen_dirroot.py init --seed $SEED --docs $DOCS --dump-mb $DUMP_MB:"
  echo "dump $DUMP_MIB MiB ($DUMP_BYTES bytes), contentstore $TREE_FILES files, $TREE_MIB MiB."
  echo "$("$COFFER" --version 2>/dev/null | head -n 1 || echo coffer); $(restic version)"
  echo
  echo "| tool | dump (s) | dump MiB/s | tree (s) | tree MiB/s | tree files/s | dump cmp | tree diff -r | first lookup (s) |"
  echo "|---|---:|---:|---:|---:|---:|---|---|---:|"
  for t in coffer restic; do
    echo "| $t | ${DUMP_S[$t]} | $(rate "$DUMP_BYTES" "${DUMP_S[$t]}") | ${TREE_S[$t]} | $(rate "$TREE_BYTES" "${TREE_S[$t]}") | $(frate "$TREE_FILES" "${TREE_S[$t]}") | ${DUMP_OK[$t]} | ${TREE_OK[$t]} | ${MOUNT_S[$t]} |"
  done
  echo
  echo "- coffer/restic throughput: dump $(speedup "${DUMP_S[coffer]}" "${DUMP_S[restic]}"), tree $(speedup "${TREE_S[coffer]}" "${TREE_S[restic]}") (>1: coffer faster)"
  echo "- tar stream bytes: coffer ${TAR_BYTES[coffer]}, restic ${TAR_BYTES[restic]}"
  echo "- load average (1/5/15 min) before: $LOAD_BEFORE; after: $LOAD_AFTER"
} | tee "$WORK/results.md"

if [[ $KEEP != 1 ]]; then
  rm -rf "$WORK/src" "$WORK/repos" "$WORK/cache"
fi
echo "== results in $WORK/results.md"
