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
# Shared helpers (die, checks, WORK setup, measure, init/restore, report) are in
# benches/common.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
source "$HERE/common.sh" # sets ROOT, COFFER_DEFAULT (target/release/coffer)

WORK=${WORK:-/tmp/coffer-compare}
DOCS=${DOCS:-1600}
DUMP_MB=${DUMP_MB:-256}
SEED=${SEED:-42}
TOOLS=${TOOLS:-"coffer restic borg"}
KEEP=${KEEP:-0}
COFFER=${COFFER:-$COFFER_DEFAULT}

# --------------------------------------------------------------------------- checks

tools_from "$TOOLS"
need python3
need_gnu_time
need_tool_clis
missing_die "apt-get install -y restic borgbackup time   (python3 is needed too)"
if has coffer; then locate_coffer build; fi

setup_work .coffer-compare logs metrics repos cache config src
MET=$WORK/metrics

# Space: the corpus (~DOCS MiB + DUMP_MB), up to three repositories of about the same
# size and one restore at a time.
warn_space $(((DOCS + DUMP_MB) * 5))

isolate_env

# --------------------------------------------------------------------------- helpers


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

restore() { restore_diff "$1" nochange restore; }

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

# --------------------------------------------------------------------------- run

gen_init
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

{
  echo "# coffer vs restic vs Borg, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) RAM, $(uname -sr)"
  echo "- corpus: gen_dirroot.py DOCS=$DOCS DUMP_MB=$DUMP_MB SEED=$SEED (with Solr snapshot);" \
    "after init $CORPUS1; after night $CORPUS2"
  for t in "${TOOL_LIST[@]}"; do echo "- $(version_of "$t")"; done
  echo "- settings: restic always encrypts (AES-256 + Poly1305) and uses its default compression;" \
    "Borg uses --encryption=repokey-blake2 (encrypted too, to be comparable) and --compression zstd,3;" \
    "coffer encrypts with XChaCha20-Poly1305 (--encryption ${COFFER_ENCRYPTION:-xchacha20poly1305}), keys by Argon2id."
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

finish
