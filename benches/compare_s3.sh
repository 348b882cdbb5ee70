#!/usr/bin/env bash
# compare_s3.sh: coffer against restic with both repositories in the same single-node Garage
# S3 server on this machine (a bucket each), on compare.sh's synthetic Alfresco dir.root.
#
# Usage:  benches/compare_s3.sh
#   WORK=/tmp/coffer-compare-s3  scratch dir (corpus, Garage's data, logs, results.md)
#   DOCS=1600 DUMP_MB=256        corpus size, as compare.sh
#   SEED=42                      generator seed
#   TOOLS="coffer restic"        subset to run
#   COFFER=target/release/coffer binary; the default path is built if missing
#   GARAGE=garage                the Garage binary (cargo install garage --locked)
#   KEEP=0                       1 keeps corpus and buckets after a successful run
#
# Phases for each tool in turn: first backup, a night (gen_dirroot.py night), a no-change
# backup, a full restore (diff -r against the source), and a check reading all data
# (coffer verify --read-data, restic check --read-data). Each is measured with /usr/bin/time
# (wall seconds, peak RSS); the S3 requests each phase made are read from Garage's own
# counters (api_s3_request_counter on its metrics endpoint) before and after it.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
source "$HERE/common.sh"

WORK=${WORK:-/tmp/coffer-compare-s3}
DOCS=${DOCS:-1600}
DUMP_MB=${DUMP_MB:-256}
SEED=${SEED:-42}
TOOLS=${TOOLS:-"coffer restic"}
KEEP=${KEEP:-0}
COFFER=${COFFER:-$COFFER_DEFAULT}
GARAGE=${GARAGE:-$(command -v garage || echo "$HOME/.cargo/bin/garage")}

tools_from "$TOOLS"
has borg && die "compare_s3.sh compares coffer and restic (Borg has no S3 backend)"
need python3 curl
need_gnu_time
need_tool_clis
[[ -x $GARAGE ]] || missing+=("garage (cargo install garage --locked)")
missing_die "apt-get install -y restic time curl; cargo install garage --locked"
if has coffer; then locate_coffer build; fi

setup_work .coffer-compare-s3 logs metrics cache config src garage
MET=$WORK/metrics
warn_space $(((DOCS + DUMP_MB) * 4))
isolate_env

# --------------------------------------------------------------------------- Garage

# shellcheck source=garage.sh
source "$HERE/garage.sh"
buckets=()
for t in "${TOOL_LIST[@]}"; do buckets+=("bench-$t"); done
start_garage "${buckets[@]}"

repo() { echo "s3:http://127.0.0.1:$S3_PORT/bench-$1/repo"; }

backup() {
  local tool=$1 phase=$2 r
  r=$(repo "$tool")
  case $tool in
    coffer) counted "$tool-$phase" "$COFFER" backup --repo "$r" --json "$SRC" ;;
    restic) counted "$tool-$phase" restic "${RESTIC_S3[@]}" backup --repo "$r" -q "$SRC" ;;
  esac
  bucket_bytes "bench-$tool" >"$MET/$tool-$phase.size"
}

restore() {
  local tool=$1 t=$WORK/restore-$1 got
  rm -rf "$t" && mkdir -p "$t"
  case $tool in
    coffer) counted "$tool-restore" "$COFFER" restore --repo "$(repo coffer)" latest --target "$t"
      got=$t/$(basename "$SRC") ;;
    restic) counted "$tool-restore" restic "${RESTIC_S3[@]}" restore latest --repo "$(repo restic)" --target "$t" -q
      got=$t$SRC ;;
  esac
  diff -r "$SRC" "$got" >"$LOG/$tool-restore.diff" 2>&1 || die "$tool restore is not identical ($LOG/$tool-restore.diff)"
  rm -rf "$t"
}

check() {
  case $1 in
    coffer) counted coffer-verifydata "$COFFER" verify --repo "$(repo coffer)" --read-data ;;
    restic) counted restic-verifydata restic "${RESTIC_S3[@]}" check --repo "$(repo restic)" --read-data -q ;;
  esac
}

# --------------------------------------------------------------------------- run

gen_init
CORPUS1=$(corpus_stats)
for t in "${TOOL_LIST[@]}"; do
  case $t in
    coffer) "$COFFER" init --repo "$(repo coffer)" --encryption "${COFFER_ENCRYPTION:-xchacha20poly1305}" ;;
    restic) restic "${RESTIC_S3[@]}" init --repo "$(repo restic)" ;;
  esac >"$LOG/$t-init.log" 2>&1 || { cat "$LOG/$t-init.log" >&2; die "$t init failed"; }
done

echo "== phase 1: first backup"
warm
for t in "${TOOL_LIST[@]}"; do backup "$t" first; done
echo "== phase 2: one night of activity, second backup"
python3 "$HERE/gen_dirroot.py" night "$SRC" --seed "$SEED" >"$LOG/gen-night.log" 2>&1
warm
for t in "${TOOL_LIST[@]}"; do backup "$t" night; done
echo "== phase 3: no-change backup"
warm
for t in "${TOOL_LIST[@]}"; do backup "$t" nochange; done
echo "== phase 4: full restore + diff -r"
for t in "${TOOL_LIST[@]}"; do restore "$t"; done
echo "== phase 5: check reading all data"
for t in "${TOOL_LIST[@]}"; do check "$t"; done

# --------------------------------------------------------------------------- report

PHASES=(first night nochange restore verifydata)
declare -A LABEL=([first]="first backup" [night]="second night" [nochange]="no-change" [restore]="restore"
  [verifydata]="check (read all data)")
goal() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "n/a"; else print (a / b <= 0.5 ? "met" : "NOT met") }'; }
mib() { [[ -n $1 ]] && awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }' || echo -; }
{
  echo "# coffer vs restic on S3 (one Garage node on this machine), $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- machine: $(nproc) CPUs, $(uname -sr); $("$GARAGE" --version 2>/dev/null | head -n 1)"
  echo "- corpus: gen_dirroot.py DOCS=$DOCS DUMP_MB=$DUMP_MB SEED=$SEED; $CORPUS1"
  for t in "${TOOL_LIST[@]}"; do echo "- $(version_of "$t")"; done
  echo "- both encrypt; requests are Garage's api_s3_request_counter over the phase"
  echo
  echo "| phase | coffer s | restic s | ratio | goal ≤ 0.5× | coffer RSS MiB | restic RSS MiB | coffer requests | restic requests |"
  echo "|---|---:|---:|---:|---|---:|---:|---:|---:|"
  for p in "${PHASES[@]}"; do
    c=$(val "coffer-$p.wall") r=$(val "restic-$p.wall")
    echo "| ${LABEL[$p]} | ${c:--} | ${r:--} | $(ratio "$c" "$r") | $(goal "$c" "$r") |" \
      "$(mib "$(val "coffer-$p.rss")") | $(mib "$(val "restic-$p.rss")") | $(val "coffer-$p.req") | $(val "restic-$p.req") |"
  done
  echo
  for t in "${TOOL_LIST[@]}"; do echo "- bucket of $t after the no-change backup: $(val "$t-nochange.size")"; done
} >"$WORK/results.md"

kill "$GARAGE_PID" 2>/dev/null || true
wait "$GARAGE_PID" 2>/dev/null || true
[[ $KEEP == 1 ]] || rm -rf "$WORK/garage"
finish
