#!/usr/bin/env bash
# compare_prune.sh: prune time and space freed after a month of simulated nights, coffer
# against `restic forget --prune` and `borg prune` + `borg compact` on the same data in the
# same run (issue 6).
#
# Usage:  benches/compare_prune.sh
#   WORK=/tmp/coffer-compare-prune  scratch dir (corpus, repos, logs, results.md)
#   NIGHTS=30                       simulated nights; one backup per tool per night
#   DOCS=800 DUMP_MB=128            corpus size (gen_dirroot.py init)
#   SEED=42                         generator seed (same seed => byte-identical corpus)
#   TOOLS="coffer restic borg"      subset to run
#   COFFER=/tmp/coffer-prune-bench/coffer  binary (copy it there so rebuilds don't change it)
#   START_DAY=2026-10-01            date of night 1's backup; night N is START_DAY + N-1 days
#   KEEP=0                          1 keeps corpus and repositories after a successful run
#
# Steps:
#   1. gen_dirroot.py init (with --solr), init the repositories.
#   2. For night 1..NIGHTS: gen_dirroot.py night, then one backup per tool, each stamped
#      START_DAY + (night-1) days at 02:00 UTC. Retention works on snapshot times and all
#      backups really happen within minutes, so the time is injected: coffer and restic get
#      --time, borg gets --timestamp.
#   3. Sizes (du -sb), then forget + prune under /usr/bin/time with --keep-daily 7
#      --keep-weekly 4 (borg: prune and compact timed together), sizes again, full check of
#      each repository, restore of the latest snapshot and diff -r against the source.
#   4. $WORK/results.md: sizes before/after, freed, prune time, peak RSS, snapshots kept.
# Shared helpers (die, checks, WORK setup, measure, init/restore, report) are in
# benches/common.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
source "$HERE/common.sh"

WORK=${WORK:-/tmp/coffer-compare-prune}
NIGHTS=${NIGHTS:-30}
DOCS=${DOCS:-800}
DUMP_MB=${DUMP_MB:-128}
SEED=${SEED:-42}
TOOLS=${TOOLS:-"coffer restic borg"}
COFFER=${COFFER:-/tmp/coffer-prune-bench/coffer}
START_DAY=${START_DAY:-2026-10-01}
KEEP=${KEEP:-0}
KEEP_ARGS=(--keep-daily 7 --keep-weekly 4)

# --------------------------------------------------------------------------- checks

tools_from "$TOOLS"
[[ $NIGHTS =~ ^[1-9][0-9]*$ ]] || die "NIGHTS must be a positive integer"
date -u -d "$START_DAY" >/dev/null 2>&1 || die "START_DAY '$START_DAY' is not a date"

need python3
need_gnu_time
need_tool_clis
missing_die "apt-get install -y restic borgbackup time   (python3 is needed too)"
if has coffer; then locate_coffer copy; fi

setup_work .coffer-compare-prune logs metrics repos cache config src
MET=$WORK/metrics

# Space: the corpus grows by a few % per night; three repositories of about its final size,
# one restore at a time.
warn_space $(((DOCS + DUMP_MB) * (6 + NIGHTS / 10)))

isolate_env
export COFFER_CACHE_DIR=$WORK/cache/coffer

# --------------------------------------------------------------------------- helpers

# The progress line of measure (common.sh) with the phase; QUIET=1 leaves it out.
measure_line() {
  [[ ${QUIET:-0} == 1 ]] || printf '   %-7s %-12s %8.2f s  %7d MiB peak RSS\n' "${1%%-*}" "${1#*-}" "$2" $(($3 / 1024))
}

# measure_sh KEY 'shell snippet': like measure, for a sequence timed as one (borg prune+compact).
measure_sh() { local key=$1; shift; measure "$key" bash -c "set -euo pipefail; $1"; }

size_of() { du -sb "$(repo "$1")" | cut -f1; }

# backup TOOL NIGHT: one backup stamped with the simulated night's date.
backup() {
  local tool=$1 n=$2 r day key
  r=$(repo "$tool")
  day=$(date -u -d "$START_DAY + $((n - 1)) days" '+%Y-%m-%d')
  key=$tool-night$n
  case $tool in
    coffer) # --time records the set at the simulated night; the files cache keeps the real clock
      measure "$key" "$COFFER" backup --repo "$r" --name alfresco --time "${day}T02:00:00Z" --json "$SRC" ;;
    restic) measure "$key" restic backup --repo "$r" -q --time "$day 02:00:00" "$SRC" ;;
    borg) measure "$key" borg create --compression zstd,3 --timestamp "${day}T02:00:00" "$r::night-$n" "$SRC" ;;
  esac
}

# snapshots TOOL: number of snapshots in the repository.
snapshots() {
  local r
  r=$(repo "$1")
  case $1 in
    coffer) "$COFFER" sets --repo "$r" --json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))' ;;
    restic) restic snapshots --repo "$r" --json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))' ;;
    borg) borg list --short "$r" | wc -l ;;
  esac
}

# snapshot_days TOOL: the kept snapshots' dates, for the report.
snapshot_days() {
  local r
  r=$(repo "$1")
  case $1 in
    coffer) "$COFFER" sets --repo "$r" --json | python3 -c '
import json, sys; print(" ".join(sorted(s["started"][5:10] for s in json.load(sys.stdin))))' ;;
    restic) restic snapshots --repo "$r" --json | python3 -c '
import json, sys; print(" ".join(sorted(s["time"][5:10] for s in json.load(sys.stdin))))' ;;
    borg) borg list --format '{time:%m-%d}{NL}' "$r" | sort | tr '\n' ' ' | sed 's/ $//'; echo ;;
  esac
}

prune() {
  local tool=$1 r
  r=$(repo "$tool")
  case $tool in
    coffer) measure "$tool-prune" "$COFFER" forget --repo "$r" "${KEEP_ARGS[@]}" --prune --json ;;
    restic) measure "$tool-prune" restic forget --repo "$r" "${KEEP_ARGS[@]}" --prune ;;
    borg) measure_sh "$tool-prune" "borg prune --list ${KEEP_ARGS[*]} '$r' && borg compact '$r'" ;;
  esac
}

check() {
  local tool=$1 r
  r=$(repo "$tool")
  case $tool in
    coffer) measure "$tool-check" "$COFFER" verify --repo "$r" --read-data ;;
    restic) measure "$tool-check" restic check --repo "$r" --read-data ;;
    borg) measure "$tool-check" borg check --verify-data "$r" ;;
  esac
}

restore() {
  restore_diff "$1" "night-$NIGHTS" "restore after prune"
  echo "   $1 restore of the latest snapshot: identical to the source (diff -r)"
}

# --------------------------------------------------------------------------- run

T0=$(date +%s)
gen_init
CORPUS0=$(corpus_stats)
for t in "${TOOL_LIST[@]}"; do init_repo "$t"; done

echo "== $NIGHTS nights: gen_dirroot.py night, then a backup per tool (times injected)"
for ((n = 1; n <= NIGHTS; n++)); do
  python3 "$HERE/gen_dirroot.py" night "$SRC" --seed "$SEED" >>"$LOG/gen-night.log" 2>&1
  line="night $n ($(date -u -d "$START_DAY + $((n - 1)) days" '+%Y-%m-%d')):"
  for t in "${TOOL_LIST[@]}"; do
    QUIET=1 backup "$t" "$n"
    line+=$(printf ' %s %6.2fs' "$t" "$(cat "$MET/$t-night$n.wall")")
  done
  echo "   $line"
done
CORPUS1=$(corpus_stats)

echo "== forget + prune (${KEEP_ARGS[*]})"
for t in "${TOOL_LIST[@]}"; do
  size_of "$t" >"$MET/$t.size-before"
  snapshots "$t" >"$MET/$t.snaps-before"
done
for t in "${TOOL_LIST[@]}"; do prune "$t"; done
for t in "${TOOL_LIST[@]}"; do
  size_of "$t" >"$MET/$t.size-after"
  snapshots "$t" >"$MET/$t.snaps-after"
  snapshot_days "$t" >"$MET/$t.days-after"
done

echo "== check (reading all data) after prune"
for t in "${TOOL_LIST[@]}"; do check "$t"; done

echo "== restore the latest snapshot + diff -r"
for t in "${TOOL_LIST[@]}"; do restore "$t"; done
T1=$(date +%s)

# --------------------------------------------------------------------------- report

mib() { [[ -n $1 ]] && awk -v k="$1" 'BEGIN { printf "%.1f", k / 1048576 }' || printf -- '-'; }
freed() { local b a; b=$(val "$1.size-before") a=$(val "$1.size-after"); [[ -n $b && -n $a ]] && echo $((b - a)) || true; }
sum_nights() { local s=0 n; for ((n = 1; n <= NIGHTS; n++)); do s=$(awk -v s="$s" -v w="$(val "$1-night$n.wall")" 'BEGIN { print s + w }'); done; echo "$s"; }

{
  echo "# Prune after $NIGHTS nights: coffer vs restic vs Borg, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- command: \`NIGHTS=$NIGHTS DOCS=$DOCS DUMP_MB=$DUMP_MB SEED=$SEED TOOLS=\"$TOOLS\" benches/compare_prune.sh\`" \
    "($((T1 - T0)) s end to end)"
  echo "- machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) RAM," \
    "$(uname -sr); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- corpus: gen_dirroot.py init --solr, then $NIGHTS x night; after init $CORPUS0; after the last night $CORPUS1"
  for t in "${TOOL_LIST[@]}"; do echo "- $(version_of "$t")"; done
  echo "- backups: one per tool per night, stamped $START_DAY + (night-1) days, 02:00 UTC" \
    "(coffer and restic --time, borg --timestamp)"
  echo "- prune: policy ${KEEP_ARGS[*]}; coffer \`forget --prune --json\` (default --max-unused 5%)," \
    "restic \`forget --prune\` (default --max-unused 5%), borg \`prune\` + \`compact\` timed together"
  echo
  echo "| |$(printf ' %s |' "${TOOL_LIST[@]}")"
  echo "|---|$(printf -- '---:|%.0s' "${TOOL_LIST[@]}")"
  row() { local label=$1 fn=$2 out t; out="| $label |"; for t in "${TOOL_LIST[@]}"; do out+=" $($fn "$t") |"; done; echo "$out"; }
  f_before() { mib "$(val "$1.size-before")"; }
  f_after() { mib "$(val "$1.size-after")"; }
  f_freed() { mib "$(freed "$1")"; }
  f_wall() { val "$1-prune.wall"; }
  f_rss() { local r; r=$(val "$1-prune.rss"); [[ -n $r ]] && awk -v k="$r" 'BEGIN { printf "%.1f", k / 1024 }'; }
  f_snaps() { echo "$(val "$1.snaps-before") -> $(val "$1.snaps-after")"; }
  f_check() { val "$1-check.wall"; }
  f_nights() { printf '%.1f' "$(sum_nights "$1")"; }
  row "repository before prune (MiB)" f_before
  row "repository after prune (MiB)" f_after
  row "freed (MiB)" f_freed
  row "prune wall time (s)" f_wall
  row "prune peak RSS (MiB)" f_rss
  row "snapshots before -> kept" f_snaps
  row "check --read-data after prune (s)" f_check
  row "all $NIGHTS backups, total (s)" f_nights
  echo
  if has coffer; then
    for o in restic borg; do
      has "$o" || continue
      echo "- coffer/$o: prune time $(ratio "$(val coffer-prune.wall)" "$(val "$o-prune.wall")")," \
        "space freed $(ratio "$(freed coffer)" "$(freed "$o")")," \
        "size after $(ratio "$(val coffer.size-after)" "$(val "$o.size-after")")," \
        "peak RSS $(ratio "$(val coffer-prune.rss)" "$(val "$o-prune.rss")")"
    done
  fi
  for t in "${TOOL_LIST[@]}"; do echo "- $t kept (MM-DD): $(val "$t.days-after")"; done
  echo "- after prune every repository passed its full check and the latest snapshot restored" \
    "identical to the source (diff -r)"
  if has coffer; then
    echo "- coffer prune report: $(python3 - "$LOG/coffer-prune.out" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except ValueError as e:
    sys.exit(print(f"(unparsable --json output: {e})"))
p = d.get("prune") or {}
f = d.get("forget") or {}
print(", ".join(f"{k} {p.get(k)}" for k in ("sets", "packs_before", "packs_deleted", "packs_repacked",
      "packs_written", "blobs_copied", "bytes_freed", "duration_s")) + f"; forget kept {f.get('kept')} removed {f.get('removed')}")
PY
)"
  fi
} >"$WORK/results.md"

finish
