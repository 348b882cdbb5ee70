# common.sh: helpers shared by the comparison scripts (compare.sh, compare_prune.sh,
# compare_mount.sh). Not run on its own: each script sets HERE (its own directory) and
# then does `source "$HERE/common.sh"`.
#
# Sourcing defines ROOT (the repository root), ME (the sourcing script's file name, used
# in every message), die and the ERR trap; everything else is a function the script calls
# in its own order. The functions use these globals of the script:
#   WORK, COFFER, TOOL_LIST (tools_from TOOLS), SRC and LOG (setup_work), MET (metrics dir)
# bash runs no ERR trap inside functions, so the setup functions end risky commands with
# `|| return`: the failure then reaches the trap at the script's call, which names that line.
# shellcheck shell=bash disable=SC2154

ROOT=$(cd "$HERE/.." && pwd)
ME=$(basename "${BASH_SOURCE[1]}")

die() { printf '%s: %s\n' "$ME" "$*" >&2; exit 1; }
# on_err LINE COMMAND: the ERR trap's message. After a `return` from a helper, COMMAND is
# that return; show the script's line (the helper call) instead.
on_err() {
  local cmd=$2
  [[ $cmd != return* ]] || cmd=$(sed -n "${1}{s/^[[:space:]]*//;p}" "$0" 2>/dev/null) || cmd=$2
  echo "$ME: failed at line $1: $cmd" >&2
}
trap 'on_err "$LINENO" "$BASH_COMMAND"' ERR

# --------------------------------------------------------------------------- checks

# tools_from "coffer restic borg": split into TOOL_LIST and validate; has TOOL tests it.
tools_from() {
  local t
  read -r -a TOOL_LIST <<<"$1"
  ((${#TOOL_LIST[@]})) || die "TOOLS is empty"
  for t in "${TOOL_LIST[@]}"; do
    case $t in coffer | restic | borg) ;; *) die "unknown tool '$t' in TOOLS (use coffer, restic, borg)" ;; esac
  done
}
has() { [[ " ${TOOL_LIST[*]} " == *" $1 "* ]]; }

# Prerequisites: the need* functions add what is absent to `missing`, then missing_die
# [INSTALL_HINT] stops with the list (and the hint, when given) if anything is.
missing=()
need() { local c; for c; do command -v "$c" >/dev/null || missing+=("$c"); done; }
need_gnu_time() { [[ -x /usr/bin/time ]] || missing+=(/usr/bin/time); } # GNU time: the bash keyword has no RSS
need_tool_clis() { # restic and borg, for those in TOOL_LIST
  if has restic; then need restic; fi
  if has borg; then need borg; fi
}
missing_die() {
  ((${#missing[@]} == 0)) || die "missing: ${missing[*]}${1:+
  install with: $1}"
}

# locate_coffer build|copy: make COFFER absolute and check it is executable.
#   build: COFFER defaults to target/release/coffer, relative to the repository root so
#          the script works from any cwd, and is built there if missing; a user-supplied
#          relative path is taken relative to the current directory.
#   copy:  COFFER defaults to a copy outside the tree (so rebuilds don't change it); it is
#          never built, a missing binary gets the commands that make the copy.
COFFER_DEFAULT=target/release/coffer
locate_coffer() {
  if [[ $1 == build && $COFFER == "$COFFER_DEFAULT" ]]; then
    COFFER=$ROOT/$COFFER_DEFAULT
    if [[ ! -x $COFFER ]]; then
      echo "== building coffer (cargo build --release)" >&2
      (cd "$ROOT" && cargo build --release) >&2 || return
    fi
  fi
  [[ $COFFER == /* ]] || COFFER=$PWD/$COFFER
  [[ ! -x $COFFER ]] || return 0
  [[ $1 != build ]] || die "coffer binary not found at $COFFER (set COFFER=...)"
  die "coffer binary not found at $COFFER
  build and copy it: (cd $ROOT && cargo build --release) && mkdir -p $(dirname "$COFFER") && cp $ROOT/$COFFER_DEFAULT $COFFER"
}

# --------------------------------------------------------------------------- WORK

# setup_work MARKER SUBDIR...: (re)create WORK with SUBDIRs and set WORK (absolute), SRC and
# LOG. Only ever delete a WORK dir this script created (it carries the MARKER file): WORK
# comes from the environment and rm -rf on a typo would be a disaster.
setup_work() {
  local marker=$1
  shift
  if [[ -e $WORK ]]; then
    if [[ -f $WORK/$marker ]]; then
      rm -rf -- "$WORK" || return
    elif [[ -n $(ls -A -- "$WORK") ]]; then
      die "$WORK exists, is not empty and was not created by $ME; refusing to touch it"
    fi
  fi
  mkdir -p "${@/#/$WORK/}" || return
  touch "$WORK/$marker" || return
  WORK=$(cd "$WORK" && pwd) || return
  SRC=$WORK/src/dir.root
  LOG=$WORK/logs
}

# warn_space NEED_MB: warn (never refuse, the estimates are rough) when WORK has less free.
warn_space() {
  local avail_mb
  avail_mb=$(df -Pm "$WORK" | awk 'NR==2 {print $4}') || return
  ((avail_mb > $1)) || echo "$ME: warning: ~$1 MiB may be needed, ${avail_mb} MiB free in $WORK" >&2
}

# isolate_env: every tool's cache and config (coffer's files cache, restic's cache, borg's
# files cache and security dir) under WORK, so runs never see state from earlier runs;
# fixed repository passwords.
isolate_env() {
  export XDG_CACHE_HOME=$WORK/cache XDG_CONFIG_HOME=$WORK/config
  export RESTIC_PASSWORD=bench COFFER_PASSWORD=bench
  export BORG_PASSPHRASE=bench BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes \
    BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
}

# --------------------------------------------------------------------------- run

repo() { echo "$WORK/repos/$1"; }

# Read the page cache in before each backup phase, so every tool starts warm and the
# first tool in the list does not pay for reading the disk (dropping caches needs root
# and is not reliable in containers, so equalise the other way).
warm() { find "$SRC" -type f -exec cat {} + >/dev/null; }

# measure KEY CMD...: run CMD under GNU time; "wall rss_kib" goes to $MET/KEY.time, wall
# seconds and peak RSS (KiB) to $MET/KEY.wall and $MET/KEY.rss, then measure_line prints
# them. A failing command aborts the whole run: numbers from a failed run are noise.
measure() {
  local key=$1 rc=0 wall rss
  shift
  sync # flush the previous tool's writes so they are not billed to this one
  /usr/bin/time -f '%e %M' -o "$MET/$key.time" "$@" >"$LOG/$key.out" 2>"$LOG/$key.err" || rc=$?
  if ((rc != 0)); then
    echo "$ME: '$*' failed (exit $rc); last lines of $LOG/$key.err:" >&2
    tail -n 20 "$LOG/$key.err" >&2
    exit 1
  fi
  # On success GNU time writes exactly our format line (last line, to be safe).
  read -r wall rss < <(tail -n 1 "$MET/$key.time")
  echo "$wall" >"$MET/$key.wall"
  echo "$rss" >"$MET/$key.rss"
  measure_line "$key" "$wall" "$rss"
}
# measure_line KEY WALL RSS_KIB: the progress line; a script may redefine it.
measure_line() { printf '   %-7s %8.2f s  %7d MiB peak RSS\n' "${1%%-*}" "$2" $(($3 / 1024)); }

init_repo() {
  local r
  r=$(repo "$1")
  case $1 in
    # COFFER_ENCRYPTION=none measures what encryption costs (the default encrypts).
    coffer) "$COFFER" init --repo "$r" --encryption "${COFFER_ENCRYPTION:-xchacha20poly1305}" ;;
    restic) restic init --repo "$r" ;;
    borg) borg init --encryption=repokey-blake2 "$r" ;; # encrypted, like restic
  esac >"$LOG/$1-init.log" 2>&1 || { cat "$LOG/$1-init.log" >&2; die "$1 init failed"; }
}

# restore_diff TOOL BORG_ARCHIVE WHAT: full restore of the latest snapshot (borg: of
# BORG_ARCHIVE), measured as TOOL-restore, then diff -r against SRC; a difference is fatal
# ("TOOL WHAT is not identical").
restore_diff() {
  local tool=$1 archive=$2 what=$3 r t got
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
      (cd "$t" && measure "$tool-restore" borg extract "$r::$archive")
      got=$t/${SRC#/} ;;
  esac
  [[ -d $got ]] || die "RESTORE FAILED for $tool: $got does not exist (see $LOG/$tool-restore.err)"
  if ! diff -r "$SRC" "$got" >"$LOG/$tool-restore.diff" 2>&1; then
    echo "$ME: RESTORE MISMATCH for $tool: restored tree differs from $SRC" >&2
    head -n 20 "$LOG/$tool-restore.diff" >&2
    die "$tool $what is not identical (full diff in $LOG/$tool-restore.diff)"
  fi
  rm -rf "$t" # keep disk use to one restore at a time
}

# gen_init: gen_dirroot.py init of SRC (with the Solr snapshot), logged to $LOG/gen-init.log.
gen_init() {
  echo "== generating corpus in $SRC (DOCS=$DOCS DUMP_MB=$DUMP_MB SEED=$SEED)"
  python3 "$HERE/gen_dirroot.py" init "$SRC" --seed "$SEED" --docs "$DOCS" --dump-mb "$DUMP_MB" \
    --solr 2>&1 | tee "$LOG/gen-init.log" || return
}

corpus_stats() { find "$SRC" -type f -printf '%s\n' | awk '{ n++; s += $1 } END { printf "%d files, %.0f bytes", n, s }'; }

# --------------------------------------------------------------------------- report

val() { cat "$MET/$1" 2>/dev/null || true; }
# ratio A B: "0.42x", or n/a when a side is missing or zero
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2fx", a / b }'; }

version_of() {
  case $1 in
    coffer) "$COFFER" --version 2>/dev/null | head -n 1 || echo "coffer (version unknown)" ;;
    restic) restic version | head -n 1 ;;
    borg) borg --version ;;
  esac
}

# finish: show results.md and, unless KEEP=1, remove the corpus and repositories (several
# GB); results and logs stay.
finish() {
  echo
  cat "$WORK/results.md"
  if [[ $KEEP != 1 ]]; then
    rm -rf "$WORK/src" "$WORK/repos" "$WORK/cache" || return
    echo
    echo "(corpus and repositories removed; KEEP=1 keeps them. Results: $WORK/results.md, logs: $LOG)"
  fi
}
