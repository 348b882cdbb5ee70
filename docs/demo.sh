#!/usr/bin/env bash
# The main job on a sample: creates an Alfresco-like dir.root (contentstore, a SQL dump, a Solr
# snapshot directory; no database or Solr server needed), then runs what a nightly cron job
# would: a set backup, a second night after changes, a night with no changes, verify (with
# the cross-component consistency check) and a restore compared with the source.
#
#   bash docs/demo.sh            # WORK=/tmp/coffer-demo by default; DOCS, DUMP_MB to size it
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-/tmp/coffer-demo}
DOCS=${DOCS:-400}
DUMP_MB=${DUMP_MB:-40}
COFFER=${COFFER:-target/release/coffer}
if [[ ! -x $COFFER ]]; then
  echo "== building coffer (release)"
  cargo build --release --locked
fi
COFFER=$(realpath "$COFFER")
rm -rf "$WORK"
mkdir -p "$WORK"
export COFFER_CACHE_DIR="$WORK/cache"
export COFFER_REPO="$WORK/repo"
# The repository is encrypted; a nightly job reads its password from an owner-only file
# (as cron or systemd would: there is no terminal to ask on).
if [[ -z ${COFFER_PASSWORD:-}${COFFER_PASSWORD_FILE:-}${COFFER_PASSWORD_COMMAND:-} ]]; then
  (umask 077 && head -c 24 /dev/urandom | base64 >"$WORK/password")
  export COFFER_PASSWORD_FILE="$WORK/password"
fi
DIR_ROOT="$WORK/alf_data"

echo "== sample dir.root in $DIR_ROOT"
python3 benches/gen_dirroot.py init "$DIR_ROOT" --seed 7 --docs "$DOCS" --dump-mb "$DUMP_MB" --solr

echo "== coffer init, and a set definition from the Alfresco template"
"$COFFER" init
"$COFFER" init-set --dir-root "$DIR_ROOT" --output "$WORK/alfresco.toml"
# No PostgreSQL here: the db component prints the sample's SQL dump instead of running pg_dump.
python3 - "$WORK/alfresco.toml" "$DIR_ROOT/db/alfresco.sql" <<'PY'
import sys
path, dump = sys.argv[1], sys.argv[2]
text = open(path).read()
text = text.replace('command = ["pg_dump", "-Fc", "-Z0", "alfresco"]', f'command = ["cat", "{dump}"]')
text = text.replace('file = "alfresco.dump"', 'file = "alfresco.sql"')
open(path, "w").write(text)
PY

night() {
  echo "== $1"
  "$COFFER" backup --set "$WORK/alfresco.toml" --json > "$WORK/$2.json"
  python3 - "$WORK/$2.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
f, c = r["files"], r["consistency"]
print(f"   set {r['set'][:8]}: {f['new']} new, {f['changed']} changed, {f['unchanged']} unchanged files;"
      f" read {r['bytes_read'] / 2**20:.1f} MiB, stored {r['bytes_stored'] / 2**20:.1f} MiB"
      f" in {r['duration_s']:.2f}s; consistency ok: {c['ok']}")
PY
}
night "night 1: first set backup (solr -> db -> contentstore)" night1
python3 benches/gen_dirroot.py night "$DIR_ROOT" --seed 7
night "night 2: after a day of uploads, new versions and duplicates" night2
night "night 3: nothing changed" night3

echo "== sets"
"$COFFER" sets
echo "== verify --read-data"
"$COFFER" verify --read-data
echo "== verify --consistency latest"
"$COFFER" verify --consistency latest
echo "== restore latest"
"$COFFER" restore latest --target "$WORK/restore" 2>&1 | tail -n 12
diff -r "$DIR_ROOT/contentstore" "$WORK/restore/contentstore"
cmp "$DIR_ROOT/db/alfresco.sql" "$WORK/restore/db/alfresco.sql"
snap=$(ls "$WORK/restore/solr")
diff -r "$DIR_ROOT/solr4Backup/alfresco/$snap" "$WORK/restore/solr/$snap"
"$COFFER" stats
echo "== demo OK: restored set is identical to the source ($WORK)"
