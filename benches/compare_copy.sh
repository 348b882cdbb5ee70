#!/usr/bin/env bash
# compare_copy.sh: `coffer copy` against `restic copy` between two local repositories, on
# compare.sh's synthetic Alfresco dir.root.
#
# Usage:  benches/compare_copy.sh
#   WORK=/tmp/coffer-compare-copy  scratch dir (corpus, repositories, logs, results.md)
#   DOCS=1600 DUMP_MB=256          corpus size, as compare.sh
#   SEED=42                        generator seed
#   COFFER=target/release/coffer   binary; the default path is built if missing
#   KEEP=0                         1 keeps corpus and repositories after a successful run
#
# For each tool: a first backup and a night (gen_dirroot.py night) into its primary repository
# (not measured), a second repository made to share the primary's chunker (coffer init
# --from-repo, restic init --from-repo --copy-chunker-params), then measured: the first copy
# (both sets), a copy with nothing new, and, after another night backed up, the copy of that
# night. Bytes sent are the growth of the destination (du -sb) over each copy.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
source "$HERE/common.sh"

WORK=${WORK:-/tmp/coffer-compare-copy}
DOCS=${DOCS:-1600}
DUMP_MB=${DUMP_MB:-256}
SEED=${SEED:-42}
KEEP=${KEEP:-0}
COFFER=${COFFER:-$COFFER_DEFAULT}

tools_from "coffer restic"
need python3
need_gnu_time
need_tool_clis
missing_die "apt-get install -y restic time"
locate_coffer build

setup_work .coffer-compare-copy logs metrics repos cache config src
MET=$WORK/metrics
warn_space $(((DOCS + DUMP_MB) * 5))
isolate_env
export COFFER_FROM_PASSWORD=bench RESTIC_FROM_PASSWORD=bench

gen_init
night() { python3 "$HERE/gen_dirroot.py" night "$SRC" --seed "$1" >>"$LOG/gen-night.log" 2>&1; }
dest() { echo "$WORK/repos/$1-copy"; }

backup() {
  case $1 in
    coffer) "$COFFER" backup --repo "$(repo coffer)" "$SRC" ;;
    restic) restic backup --repo "$(repo restic)" -q "$SRC" ;;
  esac >>"$LOG/$1-backups.log" 2>&1
}

copy() {
  local tool=$1 phase=$2 before
  before=$(du -sb "$(dest "$tool")" | cut -f1)
  case $tool in
    coffer) measure "$tool-$phase" "$COFFER" copy --from "$(repo coffer)" --to "$(dest coffer)" ;;
    restic) measure "$tool-$phase" restic copy --repo "$(dest restic)" --from-repo "$(repo restic)" -q ;;
  esac
  echo $(($(du -sb "$(dest "$tool")" | cut -f1) - before)) >"$MET/$tool-$phase.sent"
}

for tool in coffer restic; do
  echo "== $tool"
  init_repo "$tool"
  backup "$tool"
done
night "$SEED"
for tool in coffer restic; do backup "$tool"; done
for tool in coffer restic; do
  case $tool in
    coffer) "$COFFER" init --repo "$(dest coffer)" --from-repo "$(repo coffer)" ;;
    restic) restic init --repo "$(dest restic)" --from-repo "$(repo restic)" --copy-chunker-params ;;
  esac >"$LOG/$tool-copy-init.log" 2>&1
  copy "$tool" first
  copy "$tool" nothing
done
night $((SEED + 1))
for tool in coffer restic; do
  backup "$tool"
  copy "$tool" night
done

{
  echo "# coffer copy vs restic copy ($(date -u +%FT%TZ))"
  echo
  echo "- corpus: $(corpus_stats) after the last night; DOCS=$DOCS DUMP_MB=$DUMP_MB SEED=$SEED"
  echo "- $(version_of coffer); $(version_of restic); both encrypting; local disk to local disk"
  echo
  echo "| copy | coffer (s) | restic (s) | coffer/restic | coffer sent (MiB) | restic sent (MiB) |"
  echo "|---|---:|---:|---:|---:|---:|"
  for phase in first nothing night; do
    printf '| %s | %s | %s | %s | %.1f | %.1f |\n' "$phase" "$(val coffer-$phase.wall)" "$(val restic-$phase.wall)" \
      "$(ratio "$(val coffer-$phase.wall)" "$(val restic-$phase.wall)")" \
      "$(awk -v b="$(val coffer-$phase.sent)" 'BEGIN { print b / 1048576 }')" \
      "$(awk -v b="$(val restic-$phase.sent)" 'BEGIN { print b / 1048576 }')"
  done
} >"$WORK/results.md"
finish
