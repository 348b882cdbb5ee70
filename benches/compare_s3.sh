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

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
S3_PORT=$(free_port) RPC_PORT=$(free_port) ADMIN_PORT=$(free_port)
G=$WORK/garage
cat >"$G/garage.toml" <<EOF
metadata_dir = "$G/meta"
data_dir = "$G/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:$RPC_PORT"
rpc_public_addr = "127.0.0.1:$RPC_PORT"
rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$S3_PORT"
[admin]
api_bind_addr = "127.0.0.1:$ADMIN_PORT"
EOF
gcli() { "$GARAGE" -c "$G/garage.toml" "$@"; }
"$GARAGE" -c "$G/garage.toml" server >"$LOG/garage.log" 2>&1 &
GARAGE_PID=$!
trap 'kill "$GARAGE_PID" 2>/dev/null || true' EXIT
for _ in $(seq 300); do gcli status >/dev/null 2>&1 && break; sleep 0.1; done
gcli status >/dev/null || die "garage did not start (see $LOG/garage.log)"
NODE=$(gcli node id -q | cut -d@ -f1)
gcli layout assign -z dc1 -c 100G "$NODE" >/dev/null
gcli layout apply --version 1 >/dev/null
KEY=$(gcli key create bench)
export AWS_ACCESS_KEY_ID=$(awk -F': *' '/Key ID/ {print $2}' <<<"$KEY")
export AWS_SECRET_ACCESS_KEY=$(awk -F': *' '/Secret key/ {print $2}' <<<"$KEY")
export AWS_DEFAULT_REGION=garage
for t in "${TOOL_LIST[@]}"; do
  gcli bucket create "bench-$t" >/dev/null
  gcli bucket allow --read --write --owner "bench-$t" --key bench >/dev/null
done

repo() { echo "s3:http://127.0.0.1:$S3_PORT/bench-$1/repo"; }
RESTIC_S3=(-o s3.region=garage -o s3.bucket-lookup=path)

# Total S3 requests Garage has answered so far.
requests() {
  curl -sf "http://127.0.0.1:$ADMIN_PORT/metrics" |
    awk '/^api_s3_request_counter/ { n += $NF } END { printf "%d\n", n }'
}
# counted KEY CMD...: measure, and record the requests made in $MET/KEY.req.
counted() {
  local key=$1 before
  before=$(requests)
  measure "$@"
  echo $(($(requests) - before)) >"$MET/$key.req"
}
bucket_bytes() { gcli bucket info "bench-$1" | awk '/^Size/ {print; exit}'; }

backup() {
  local tool=$1 phase=$2 r
  r=$(repo "$tool")
  case $tool in
    coffer) counted "$tool-$phase" "$COFFER" backup --repo "$r" --json "$SRC" ;;
    restic) counted "$tool-$phase" restic "${RESTIC_S3[@]}" backup --repo "$r" -q "$SRC" ;;
  esac
  bucket_bytes "$tool" >"$MET/$tool-$phase.size"
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
