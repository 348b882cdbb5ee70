#!/usr/bin/env bash
# compare.sh: benchmark coffer against restic and Borg on a synthetic Alfresco dir.root.
#
# Usage:  benches/compare.sh
#   WORK=/tmp/coffer-compare   scratch dir (corpus, repos, logs, results.md)
#   DOCS=1600 DUMP_MB=256      corpus size (~1.75 GB; ~0.87 MiB per doc + the dump)
#   SEED=42                    generator seed (same seed => byte-identical corpus)
#   TOOLS="coffer restic borg" subset to run, e.g. TOOLS="restic borg" before coffer exists
#   COFFER=target/release/coffer  binary; the default path is built if missing
#   KEEP=0                     1 keeps corpus and repositories after a successful run
#
# Phases, each run for every tool in turn on the same corpus:
#   first     first backup of dir.root
#   night     gen_dirroot.py night, then a second backup
#   nochange  a backup with nothing changed (files-cache path)
#   restore   full restore of the latest snapshot, then diff -r against the source
# Each command is measured with /usr/bin/time (wall seconds, peak RSS) and the
# repository size with du -sb after every backup.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)

WORK=${WORK:-/tmp/coffer-compare}
DOCS=${DOCS:-1600}
DUMP_MB=${DUMP_MB:-256}
SEED=${SEED:-42}
TOOLS=${TOOLS:-"coffer restic borg"}
KEEP=${KEEP:-0}
COFFER_DEFAULT=target/release/coffer
COFFER=${COFFER:-$COFFER_DEFAULT}

die() { printf 'compare.sh: %s\n' "$*" >&2; exit 1; }
trap 'echo "compare.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

# --------------------------------------------------------------------------- checks

read -r -a TOOL_LIST <<<"$TOOLS"
((${#TOOL_LIST[@]})) || die "TOOLS is empty"
for t in "${TOOL_LIST[@]}"; do
  case $t in coffer | restic | borg) ;; *) die "unknown tool '$t' in TOOLS (use coffer, restic, borg)" ;; esac
done
has() { [[ " ${TOOL_LIST[*]} " == *" $1 "* ]]; }

missing=()
command -v python3 >/dev/null || missing+=(python3)
[[ -x /usr/bin/time ]] || missing+=(/usr/bin/time) # GNU time: the bash keyword has no RSS
has restic && ! command -v restic >/dev/null && missing+=(restic)
has borg && ! command -v borg >/dev/null && missing+=(borg)
if ((${#missing[@]})); then
  die "missing: ${missing[*]}
  install with: apt-get install -y restic borgbackup time   (python3 is needed too)"
fi

if has coffer; then
  # The default is relative to the repository root so the script works from any cwd;
  # a user-supplied relative path is taken relative to the current directory.
  if [[ $COFFER == "$COFFER_DEFAULT" ]]; then
    COFFER=$ROOT/$COFFER_DEFAULT
    if [[ ! -x $COFFER ]]; then
      echo "== building coffer (cargo build --release)" >&2
      (cd "$ROOT" && cargo build --release) >&2
    fi
  fi
  [[ $COFFER == /* ]] || COFFER=$PWD/$COFFER
  [[ -x $COFFER ]] || die "coffer binary not found at $COFFER (set COFFER=...)"
fi

# Only ever delete a WORK dir this script created (it carries a marker file): WORK
# comes from the environment and rm -rf on a typo would be a disaster.
if [[ -e $WORK ]]; then
  if [[ -f $WORK/.coffer-compare ]]; then
    rm -rf -- "$WORK"
  elif [[ -n $(ls -A -- "$WORK") ]]; then
    die "$WORK exists, is not empty and was not created by compare.sh; refusing to touch it"
  fi
fi
mkdir -p "$WORK"/{logs,metrics,repos,cache,config,src}
touch "$WORK/.coffer-compare"
WORK=$(cd "$WORK" && pwd)
SRC=$WORK/src/dir.root
LOG=$WORK/logs
MET=$WORK/metrics

# Space: the corpus (~DOCS MiB + DUMP_MB), up to three repositories of about the same
# size and one restore at a time. Warn rather than refuse; the estimate is rough.
need_mb=$(((DOCS + DUMP_MB) * 5))
avail_mb=$(df -Pm "$WORK" | awk 'NR==2 {print $4}')
((avail_mb > need_mb)) || echo "compare.sh: warning: ~${need_mb} MiB may be needed, ${avail_mb} MiB free in $WORK" >&2

# Isolate every tool's cache and config (coffer's files cache, restic's cache, borg's
# files cache and security dir) so runs never see state from earlier runs.
export XDG_CACHE_HOME=$WORK/cache XDG_CONFIG_HOME=$WORK/config
export RESTIC_PASSWORD=bench
export BORG_PASSPHRASE=bench BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes \
  BORG_RELOCATED_REPO_ACCESS_IS_OK=yes

# --------------------------------------------------------------------------- helpers

repo() { echo "$WORK/repos/$1"; }

# measure KEY CMD...: run CMD under GNU time; "wall rss_kib" goes to $MET/KEY.time.
# A failing command aborts the whole comparison: numbers from a failed run are noise.
measure() {
  local key=$1 rc=0 wall rss
  shift
  sync # flush the previous tool's writes so they are not billed to this one
  /usr/bin/time -f '%e %M' -o "$MET/$key.time" "$@" >"$LOG/$key.out" 2>"$LOG/$key.err" || rc=$?
  if ((rc != 0)); then
    echo "compare.sh: '$*' failed (exit $rc); last lines of $LOG/$key.err:" >&2
    tail -n 20 "$LOG/$key.err" >&2
    exit 1
  fi
  # On success GNU time writes exactly our format line (last line, to be safe).
  read -r wall rss < <(tail -n 1 "$MET/$key.time")
  echo "$wall" >"$MET/$key.wall"
  echo "$rss" >"$MET/$key.rss"
  printf '   %-7s %8.2f s  %7d MiB peak RSS\n' "${key%%-*}" "$wall" $((rss / 1024))
}

# Read the page cache in before each backup phase, so every tool starts warm and the
# first tool in the list does not pay for reading the disk (dropping caches needs root
# and is not reliable in containers, so equalise the other way).
warm() { find "$SRC" -type f -exec cat {} + >/dev/null; }

init_repo() {
  local r
  r=$(repo "$1")
  case $1 in
    coffer) "$COFFER" init --repo "$r" ;;
    restic) restic init --repo "$r" ;;
    borg) borg init --encryption=repokey-blake2 "$r" ;; # encrypted, like restic
  esac >"$LOG/$1-init.log" 2>&1 || { cat "$LOG/$1-init.log" >&2; die "$1 init failed"; }
}

backup() {
  local tool=$1 phase=$2 r
  r=$(repo "$tool")
  case $tool in
    coffer) measure "$tool-$phase" "$COFFER" backup --repo "$r" --json "$SRC" ;;
    restic) measure "$tool-$phase" restic backup --repo "$r" -q "$SRC" ;;
    borg) measure "$tool-$phase" borg create --compression zstd,3 "$r::$phase" "$SRC" ;;
  esac
  du -sb "$r" | cut -f1 >"$MET/$tool-$phase.size"
}

restore() {
  local tool=$1 r t got
  r=$(repo "$tool")
  t=$WORK/restore-$tool
  rm -rf "$t" && mkdir -p "$t"
  case $tool in
    coffer) # the component is named after the last path element of the source
      measure "$tool-restore" "$COFFER" restore --repo "$r" latest --target "$t"
      got=$t/$(basename "$SRC") ;;
    restic) # restic recreates the absolute source path under the target
      measure "$tool-restore" restic restore latest --repo "$r" --target "$t" -q
      got=$t$SRC ;;
    borg) # borg extracts into cwd, paths stored without the leading slash
      (cd "$t" && measure "$tool-restore" borg extract "$r::nochange")
      got=$t/${SRC#/} ;;
  esac
  [[ -d $got ]] || die "RESTORE FAILED for $tool: $got does not exist (see $LOG/$tool-restore.err)"
  if ! diff -r "$SRC" "$got" >"$LOG/$tool-restore.diff" 2>&1; then
    echo "compare.sh: RESTORE MISMATCH for $tool: restored tree differs from $SRC" >&2
    head -n 20 "$LOG/$tool-restore.diff" >&2
    die "$tool restore is not identical (full diff in $LOG/$tool-restore.diff)"
  fi
  rm -rf "$t" # keep disk use to one restore at a time
}

# check TOOL PHASE: structural check (verify) or full read of every pack (verifydata).
check() {
  local tool=$1 phase=$2 r
  r=$(repo "$tool")
  case $tool:$phase in
    coffer:verify) measure "$tool-$phase" "$COFFER" verify --repo "$r" ;;
    coffer:verifydata) measure "$tool-$phase" "$COFFER" verify --repo "$r" --read-data ;;
    restic:verify) measure "$tool-$phase" restic check --repo "$r" -q ;;
    restic:verifydata) measure "$tool-$phase" restic check --repo "$r" --read-data -q ;;
    borg:verify) measure "$tool-$phase" borg check "$r" ;;
    borg:verifydata) measure "$tool-$phase" borg check --verify-data "$r" ;;
  esac
}

corpus_stats() { find "$SRC" -type f -printf '%s\n' | awk '{ n++; s += $1 } END { printf "%d files, %.0f bytes", n, s }'; }

# --------------------------------------------------------------------------- run

echo "== generating corpus in $SRC (DOCS=$DOCS DUMP_MB=$DUMP_MB SEED=$SEED)"
python3 "$HERE/gen_dirroot.py" init "$SRC" --seed "$SEED" --docs "$DOCS" --dump-mb "$DUMP_MB" \
  --solr 2>&1 | tee "$LOG/gen-init.log"
CORPUS1=$(corpus_stats)

for t in "${TOOL_LIST[@]}"; do init_repo "$t"; done

echo "== phase 1: first backup"
warm
for t in "${TOOL_LIST[@]}"; do backup "$t" first; done

echo "== phase 2: one night of activity, second backup"
python3 "$HERE/gen_dirroot.py" night "$SRC" --seed "$SEED" 2>&1 | tee "$LOG/gen-night.log"
CORPUS2=$(corpus_stats)
warm
for t in "${TOOL_LIST[@]}"; do backup "$t" night; done

echo "== phase 3: no-change backup"
warm
for t in "${TOOL_LIST[@]}"; do backup "$t" nochange; done

echo "== phase 4: full restore + diff -r"
for t in "${TOOL_LIST[@]}"; do restore "$t"; done

echo "== phase 5: check (coffer verify / restic check / borg check)"
for t in "${TOOL_LIST[@]}"; do check "$t" verify; done

echo "== phase 6: check reading all data (--read-data / --verify-data)"
for t in "${TOOL_LIST[@]}"; do check "$t" verifydata; done

# --------------------------------------------------------------------------- report

val() { cat "$MET/$1" 2>/dev/null || true; }
# ratio A B: "0.42x", or n/a when a side is missing or zero
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2fx", a / b }'; }
# goal A B LIMIT: "<= LIMITx restic: met" / "NOT met" / "n/a"
goal() {
  awk -v a="$1" -v b="$2" -v g="$3" 'BEGIN {
    if (a == "" || b == "" || b + 0 == 0) { printf "<= %sx restic: n/a", g; exit }
    printf "<= %sx restic: %s", g, (a / b <= g + 0 ? "met" : "NOT met") }'
}
cell() { [[ -n $1 ]] && printf '%s' "$1" || printf -- '-'; }
mib() { [[ -n $1 ]] && awk -v k="$1" -v d="$2" 'BEGIN { printf "%.1f", k / d }' || true; }

PHASES=(first night nochange restore verify verifydata)
declare -A LABEL=([first]="first backup" [night]="second night" [nochange]="no-change" [restore]="restore"
  [verify]="check (structure)" [verifydata]="check (read all data)")
declare -A TIME_GOAL=([first]=0.4 [nochange]=0.2 [restore]=0.5)

version_of() {
  case $1 in
    coffer) "$COFFER" --version 2>/dev/null | head -n 1 || echo "coffer (version unknown)" ;;
    restic) restic version | head -n 1 ;;
    borg) borg --version ;;
  esac
}

{
  echo "# coffer vs restic vs Borg, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) RAM, $(uname -sr)"
  echo "- corpus: gen_dirroot.py DOCS=$DOCS DUMP_MB=$DUMP_MB SEED=$SEED (with Solr snapshot);" \
    "after init $CORPUS1; after night $CORPUS2"
  for t in "${TOOL_LIST[@]}"; do echo "- $(version_of "$t")"; done
  echo "- settings: restic always encrypts (AES-256 + Poly1305) and uses its default compression;" \
    "Borg uses --encryption=repokey-blake2 (encrypted too, to be comparable) and --compression zstd,3;" \
    "**coffer does not encrypt yet**, so it skips work the other two do."
  echo "- conditions: tools run one after another per phase on the same corpus; page cache warmed" \
    "by reading the source before each backup phase, sync before each command;" \
    "caches isolated under \$WORK/cache. Times are wall seconds from /usr/bin/time."
  echo
  echo "## Wall time (s)"
  echo
  echo "| phase | coffer | restic | borg | coffer/restic | coffer/borg | goal |"
  echo "|---|---:|---:|---:|---:|---:|---|"
  for p in "${PHASES[@]}"; do
    c=$(val "coffer-$p.wall") r=$(val "restic-$p.wall") b=$(val "borg-$p.wall")
    g=-
    [[ -n ${TIME_GOAL[$p]:-} ]] && g=$(goal "$c" "$r" "${TIME_GOAL[$p]}")
    echo "| ${LABEL[$p]} | $(cell "$c") | $(cell "$r") | $(cell "$b") | $(ratio "$c" "$r") | $(ratio "$c" "$b") | $g |"
  done
  echo
  echo "## Peak RSS (MiB)"
  echo
  echo "| phase | coffer | restic | borg | coffer/restic | coffer/borg | goal |"
  echo "|---|---:|---:|---:|---:|---:|---|"
  for p in "${PHASES[@]}"; do
    c=$(val "coffer-$p.rss") r=$(val "restic-$p.rss") b=$(val "borg-$p.rss")
    echo "| ${LABEL[$p]} | $(cell "$(mib "$c" 1024)") | $(cell "$(mib "$r" 1024)") | $(cell "$(mib "$b" 1024)") |" \
      "$(ratio "$c" "$r") | $(ratio "$c" "$b") | $(goal "$c" "$r" 1) |"
  done
  echo
  echo "## Repository size after each backup (MiB, du -sb)"
  echo
  echo "| after | coffer | restic | borg | coffer/restic | coffer/borg | goal |"
  echo "|---|---:|---:|---:|---:|---:|---|"
  for p in first night nochange; do
    c=$(val "coffer-$p.size") r=$(val "restic-$p.size") b=$(val "borg-$p.size")
    g=-
    [[ $p == nochange ]] && g=$(goal "$c" "$r" 1)
    echo "| ${LABEL[$p]} | $(cell "$(mib "$c" 1048576)") | $(cell "$(mib "$r" 1048576)") | $(cell "$(mib "$b" 1048576)") |" \
      "$(ratio "$c" "$r") | $(ratio "$c" "$b") | $g |"
  done
  if has coffer; then
    echo
    echo "## coffer --json summaries"
    echo
    for p in first night nochange; do
      # Key fields only; the full objects are in $LOG/coffer-<phase>.out.
      printf -- '- %s: %s\n' "${LABEL[$p]}" "$(python3 - "$LOG/coffer-$p.out" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except ValueError as e:
    sys.exit(print(f"(unparsable --json output: {e})"))
f = d.get("files") or {}
print(", ".join(f"{k} {v}" for k, v in [
    ("files new/changed/unchanged", "/".join(str(f.get(x, "?")) for x in ("new", "changed", "unchanged"))),
    ("bytes_read", d.get("bytes_read")), ("bytes_stored", d.get("bytes_stored")),
    ("duration_s", d.get("duration_s"))]))
PY
)"
    done
  fi
  echo
  echo "Goals from the spec: first backup <= 0.4x restic wall time, no-change <= 0.2x," \
    "restore <= 0.5x, final repository size <= restic, peak RSS <= restic."
} >"$WORK/results.md"

echo
cat "$WORK/results.md"

if [[ $KEEP != 1 ]]; then
  # The corpus and repositories are several GB; results and logs stay.
  rm -rf "$WORK/src" "$WORK/repos" "$WORK/cache"
  echo
  echo "(corpus and repositories removed; KEEP=1 keeps them. Results: $WORK/results.md, logs: $LOG)"
fi
