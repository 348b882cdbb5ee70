# garage.sh: a single-node Garage S3 server for the bench scripts (sourced after common.sh;
# needs GARAGE, WORK, LOG and MET). `start_garage BUCKET...` starts it under $WORK/garage on
# free loopback ports, creates the buckets with one key and exports the AWS_* variables for
# it; the EXIT trap stops the server. Then: gcli (the garage CLI on this server), requests
# (S3 requests answered so far), counted KEY CMD... (measure and record the requests made in
# $MET/KEY.req), bucket_bytes BUCKET (the bucket's size line), S3_PORT, RESTIC_S3.

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
gcli() { "$GARAGE" -c "$G/garage.toml" "$@"; }
RESTIC_S3=(-o s3.region=garage -o s3.bucket-lookup=path)

start_garage() {
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
  local b
  for b; do
    gcli bucket create "$b" >/dev/null
    gcli bucket allow --read --write --owner "$b" --key bench >/dev/null
  done
}

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
bucket_bytes() { gcli bucket info "$1" | awk '/^Size/ {print; exit}'; }
