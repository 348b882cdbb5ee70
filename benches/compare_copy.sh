#!/usr/bin/env bash
# compare_copy.sh: `coffer copy` against `restic copy` from a local repository into a second
# one, local or in a Garage bucket (DEST=s3), on compare.sh's synthetic Alfresco dir.root.
#
# Usage:  benches/compare_copy.sh
#   WORK=/tmp/coffer-compare-copy  scratch dir (corpus, repositories, logs, results.md)
#   DOCS=1600 DUMP_MB=256          corpus size, as compare.sh
#   SEED=42                        generator seed
#   COFFER=target/release/coffer   binary; the default path is built if missing
#   KEEP=0                         1 keeps corpus and repositories after a successful run
#   DEST=local                     s3: the second repositories are in a single-node Garage
#   GARAGE=garage                  the Garage binary, for DEST=s3
#
# For each tool: a first backup and a night (gen_dirroot.py night) into its primary repository
# (not measured), a second repository made to share the primary's chunker (coffer init
# --from-repo, restic init --from-repo --copy-chunker-params), then measured: the first copy
# (both sets), a copy with nothing new, and, after another night backed up, the copy of that
# night. Bytes sent are the growth of the destination (du -sb) over each copy; on S3 the
# bucket's size after it (Garage's `bucket info`) and the S3 requests the copy made.
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
DEST=${DEST:-local}
GARAGE=${GARAGE:-$(command -v garage || echo "$HOME/.cargo/bin/garage")}

tools_from "coffer restic"
need python3
need_gnu_time
need_tool_clis
[[ $DEST == local || $DEST == s3 ]] || die "DEST must be local or s3"
if [[ $DEST == s3 ]]; then
  need curl
  [[ -x $GARAGE ]] || missing+=("garage (cargo install garage --locked)")
fi
missing_die "apt-get install -y restic time curl; cargo install garage --locked"
locate_coffer build

setup_work .coffer-compare-copy logs metrics repos cache config src garage
MET=$WORK/metrics
warn_space $(((DOCS + DUMP_MB) * 5))
isolate_env
export COFFER_FROM_PASSWORD=bench RESTIC_FROM_PASSWORD=bench
RESTIC_DEST=()
if [[ $DEST == s3 ]]; then
  # shellcheck source=garage.sh
  source "$HERE/garage.sh"
  start_garage copy-coffer copy-restic
  RESTIC_DEST=("${RESTIC_S3[@]}")
fi

gen_init
night() { python3 "$HERE/gen_dirroot.py" night "$SRC" --seed "$1" >>"$LOG/gen-night.log" 2>&1; }
dest() {
  if [[ $DEST == s3 ]]; then echo "s3:http://127.0.0.1:$S3_PORT/copy-$1/repo"; else echo "$WORK/repos/$1-copy"; fi
}
# The destination's size in bytes (local), or Garage's size line for its bucket.
dest_size() {
  if [[ $DEST == s3 ]]; then bucket_bytes "copy-$1"; else du -sb "$(dest "$1")" | cut -f1; fi
}

backup() {
  case $1 in
    coffer) "$COFFER" backup --repo "$(repo coffer)" "$SRC" ;;
    restic) restic backup --repo "$(repo restic)" -q "$SRC" ;;
  esac >>"$LOG/$1-backups.log" 2>&1
}

copy() {
  local tool=$1 phase=$2 before how=measure
  [[ $DEST == s3 ]] && how=counted
  before=$(dest_size "$tool")
  case $tool in
    coffer) $how "$tool-$phase" "$COFFER" copy --from "$(repo coffer)" --to "$(dest coffer)" ;;
    restic) $how "$tool-$phase" restic "${RESTIC_DEST[@]}" copy --repo "$(dest restic)" --from-repo "$(repo restic)" -q ;;
  esac
  if [[ $DEST == s3 ]]; then
    dest_size "$tool" >"$MET/$tool-$phase.sent"
  else
    echo $(($(dest_size "$tool") - before)) >"$MET/$tool-$phase.sent"
  fi
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
    restic) restic "${RESTIC_DEST[@]}" init --repo "$(dest restic)" --from-repo "$(repo restic)" --copy-chunker-params ;;
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
  echo "# coffer copy vs restic copy, to a $DEST destination ($(date -u +%FT%TZ))"
  echo
  echo "- corpus: $(corpus_stats) after the last night; DOCS=$DOCS DUMP_MB=$DUMP_MB SEED=$SEED"
  echo "- $(version_of coffer); $(version_of restic); both encrypting"
  echo
  if [[ $DEST == s3 ]]; then
    echo "| copy | coffer (s) | restic (s) | coffer/restic | coffer requests | restic requests | coffer bucket after | restic bucket after |"
    echo "|---|---:|---:|---:|---:|---:|---|---|"
  else
    echo "| copy | coffer (s) | restic (s) | coffer/restic | coffer sent (MiB) | restic sent (MiB) |"
    echo "|---|---:|---:|---:|---:|---:|"
  fi
  for phase in first nothing night; do
    c=$(val "coffer-$phase.wall") r=$(val "restic-$phase.wall")
    if [[ $DEST == s3 ]]; then
      echo "| $phase | $c | $r | $(ratio "$c" "$r") | $(val "coffer-$phase.req") | $(val "restic-$phase.req") | $(val "coffer-$phase.sent") | $(val "restic-$phase.sent") |"
    else
      printf '| %s | %s | %s | %s | %.1f | %.1f |\n' "$phase" "$c" "$r" "$(ratio "$c" "$r")" \
        "$(awk -v b="$(val coffer-$phase.sent)" 'BEGIN { print b / 1048576 }')" \
        "$(awk -v b="$(val restic-$phase.sent)" 'BEGIN { print b / 1048576 }')"
    fi
  done
} >"$WORK/results.md"
finish
