#!/usr/bin/env bash
# One-command demo: installs what running needs and is missing (scripts/setup.sh: Redis, the
# ONNX Runtime library, the Silero VAD model, espeak-ng and the demo's recording), builds the
# release binaries, starts Redis (or reuses one already answering on the port), inferq-api and
# two inferq-workers, waits until the API is ready and a worker serves silero_vad, then submits
# the recording to the speech pipeline with the `inferq` CLI (a live progress line while it
# runs) and prints the speech segments it found. Then, with --once, stops everything it started
# and exits (0 iff the job succeeded); without it, prints what to try next and runs until Ctrl-C.
#
# Usage: scripts/run.sh [--once] [--prebuilt DIR]   (DIR: use the binaries in DIR, build nothing;
#        the test suite runs the demo this way with its debug binaries)
# Env:   INFERQ_REDIS_PORT (6379), INFERQ_PORT (8080), RUST_LOG (info)
# Logs:  .cache/logs/{redis,api,worker-1,worker-2}.log
# Key:   an API key (tenant `demo`, scopes submit,read,admin: it opens the dashboard) is made
#        for the run, written to .cache/demo.key (mode 600) and revoked when the script stops.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$PWD"

REDIS_PORT="${INFERQ_REDIS_PORT:-6379}"
API_PORT="${INFERQ_PORT:-8080}"
REDIS_URL="redis://127.0.0.1:${REDIS_PORT}"
API_URL="http://127.0.0.1:${API_PORT}"
ORT_LIB="$ROOT/.ort/libonnxruntime.so.1.31.1"
LOG_DIR=".cache/logs"
REDIS_DIR=".cache/redis"
WORKERS=2
DEMO_MODEL="silero_vad"
DEMO_WAV=".cache/demo/recording.wav"
BIN_DIR="target/release"
BUILD=1
READY_TIMEOUT=60
JOB_TIMEOUT=30
STOP_TIMEOUT=30

log() { echo "[run] $*"; }
die() { echo "[run] error: $*" >&2; exit 1; }

ONCE=0
while [ "$#" -gt 0 ]; do
  arg="$1"
  shift
  case "$arg" in
    --once) ONCE=1 ;;
    --prebuilt)
      [ "$#" -gt 0 ] || die "--prebuilt needs a directory"
      BIN_DIR="${1%/}"
      BUILD=0
      shift
      ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $arg (usage: scripts/run.sh [--once] [--prebuilt DIR])" ;;
  esac
done

# --- process bookkeeping -----------------------------------------------------------------------
REDIS_PID=""
APP_PIDS=()
APP_NAMES=()
LOGS=()

show_logs() {
  local f
  for f in "${LOGS[@]}"; do
    [ -f "$f" ] || continue
    echo "----- $f (last 25 lines) -----" >&2
    tail -n 25 "$f" >&2 || true
  done
}

alive() { kill -0 "$1" 2>/dev/null; }

# stop_pids PID...: SIGTERM, wait up to STOP_TIMEOUT s, then SIGKILL what is left.
stop_pids() {
  [ "$#" -gt 0 ] || return 0
  local p t any
  kill -TERM "$@" 2>/dev/null || true
  for ((t = 0; t < STOP_TIMEOUT * 10; t++)); do
    any=0
    for p in "$@"; do alive "$p" && any=1; done
    [ "$any" -eq 0 ] && break
    sleep 0.1
  done
  for p in "$@"; do
    if alive "$p"; then
      log "pid $p did not stop within ${STOP_TIMEOUT} s: killing it"
      kill -KILL "$p" 2>/dev/null || true
    fi
  done
  wait "$@" 2>/dev/null || true
}

DEMO_KEY_FILE=".cache/demo.key"
DEMO_KEY_ID=""

cleanup() {
  local rc=$?
  trap - EXIT
  trap '' INT TERM
  if [ -n "$DEMO_KEY_ID" ]; then
    log "revoking the demo API key $DEMO_KEY_ID"
    INFERQ_REDIS_URL="$REDIS_URL" "$BIN_DIR/inferq-api" keys revoke "$DEMO_KEY_ID" >/dev/null || true
    rm -f "$DEMO_KEY_FILE"
  fi
  if [ "${#APP_PIDS[@]}" -gt 0 ]; then
    log "stopping ${APP_NAMES[*]}"
    stop_pids "${APP_PIDS[@]}"
  fi
  if [ -n "$REDIS_PID" ]; then
    log "stopping redis-server"
    stop_pids "$REDIS_PID"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD...: run CMD in the background, output to $LOG_DIR/NAME.log.
start() {
  local name="$1"
  shift
  "$@" >"$LOG_DIR/$name.log" 2>&1 &
  APP_PIDS+=("$!")
  APP_NAMES+=("$name")
  LOGS+=("$LOG_DIR/$name.log")
  log "started $name (pid $!, log $LOG_DIR/$name.log)"
}

# check_alive: fail (with the logs) if a process this script started has exited.
check_alive() {
  local i
  if [ -n "$REDIS_PID" ] && ! alive "$REDIS_PID"; then
    show_logs
    die "redis-server exited (see $LOG_DIR/redis.log)"
  fi
  for i in "${!APP_PIDS[@]}"; do
    if ! alive "${APP_PIDS[i]}"; then
      show_logs
      die "${APP_NAMES[i]} exited (see $LOG_DIR/${APP_NAMES[i]}.log)"
    fi
  done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- setup and build ---------------------------------------------------------------------------
scripts/setup.sh
command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust (rustup), then re-run"
if [ "$BUILD" -eq 1 ]; then
  log "cargo build --release --bins (the API, the worker and the inferq CLI; a first build takes minutes)"
  cargo build --release --bins
fi
for bin in inferq-api inferq-worker inferq; do
  [ -x "$BIN_DIR/$bin" ] || die "$BIN_DIR/$bin was not built"
done
CLI="$BIN_DIR/inferq"
mkdir -p "$LOG_DIR" "$REDIS_DIR"

# --- redis -------------------------------------------------------------------------------------
if redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG; then
  log "reusing the Redis already answering on 127.0.0.1:$REDIS_PORT"
else
  port_open "$REDIS_PORT" && die "port $REDIS_PORT is taken by something that is not Redis: set INFERQ_REDIS_PORT"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$ROOT/$REDIS_DIR" \
    --appendonly yes --daemonize no >"$LOG_DIR/redis.log" 2>&1 &
  REDIS_PID=$!
  LOGS+=("$LOG_DIR/redis.log")
  log "started redis-server on 127.0.0.1:$REDIS_PORT (pid $REDIS_PID, data $REDIS_DIR, log $LOG_DIR/redis.log)"
  for ((t = 0; t < 100; t++)); do
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break
    check_alive
    sleep 0.1
  done
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG ||
    { show_logs; die "redis-server did not answer PING within 10 s"; }
fi

# --- an API key for the demo -------------------------------------------------------------------
# Keys are stored hashed in Redis; the key itself is printed once, so it goes to a private file.
(umask 077 && INFERQ_REDIS_URL="$REDIS_URL" "$BIN_DIR/inferq-api" keys create \
  --tenant demo --scopes submit,read,admin --name run.sh >"$DEMO_KEY_FILE" 2>/dev/null) ||
  die "could not create an API key (inferq-api keys create)"
INFERQ_API_KEY="$(cat "$DEMO_KEY_FILE")"
export INFERQ_API_KEY
DEMO_KEY_ID="${INFERQ_API_KEY:4:16}"
log "made API key $DEMO_KEY_ID (tenant demo, scopes submit,read,admin) in $DEMO_KEY_FILE"

# --- api and workers ---------------------------------------------------------------------------
port_open "$API_PORT" && die "port $API_PORT is already in use: stop what is there or set INFERQ_PORT"
export RUST_LOG="${RUST_LOG:-info}"
start api env INFERQ_REDIS_URL="$REDIS_URL" INFERQ_BIND="127.0.0.1:$API_PORT" \
  "$BIN_DIR/inferq-api"
for ((i = 1; i <= WORKERS; i++)); do
  start "worker-$i" env INFERQ_REDIS_URL="$REDIS_URL" INFERQ_MODELS_DIR=models \
    ORT_DYLIB_PATH="$ORT_LIB" INFERQ_THREADS=1 "$BIN_DIR/inferq-worker"
done

log "waiting for $API_URL/readyz and for a worker to serve $DEMO_MODEL (up to ${READY_TIMEOUT} s)"
deadline=$((SECONDS + READY_TIMEOUT))
until python3 scripts/demo_job.py ready --url "$API_URL" --model "$DEMO_MODEL"; do
  check_alive
  if [ "$SECONDS" -ge "$deadline" ]; then
    show_logs
    die "not ready after ${READY_TIMEOUT} s: GET /readyz must be 200 and GET /models must list $DEMO_MODEL"
  fi
  sleep 0.5
done
log "ready"

# --- demo job: a recording through the speech pipeline, with the CLI ------------------------
export INFERQ_URL="$API_URL"
log "$CLI speech $DEMO_WAV --wait   (the speech pipeline: decode, resample, Silero VAD over 32 ms windows)"
JOB_RC=0
"$CLI" speech "$DEMO_WAV" --wait || JOB_RC=$?

if [ "$ONCE" -eq 1 ]; then
  if [ "$JOB_RC" -eq 0 ]; then
    log "demo job succeeded"
  else
    show_logs
    log "demo job did not succeed"
  fi
  exit "$JOB_RC"
fi

[ "$JOB_RC" -eq 0 ] || log "warning: the demo job did not succeed (logs in $LOG_DIR)"
cat <<EOF

inferq is running: API $API_URL, Redis $REDIS_URL, $WORKERS workers (logs in $LOG_DIR/).
In another terminal:
  export PATH="$ROOT/$BIN_DIR:\$PATH" INFERQ_URL=$API_URL
  export INFERQ_API_KEY=\$(cat $ROOT/$DEMO_KEY_FILE)   # tenant demo; scopes submit, read, admin
  inferq speech $ROOT/$DEMO_WAV --wait   # the demo again: a live progress line, then the segments
  inferq models                           # what the workers serve
  inferq queues                           # waiting, running, done per minute, per queue
  inferq --help
Dashboard: $API_URL/dashboard  (it asks for a key: paste the one in $ROOT/$DEMO_KEY_FILE)
Docs: $ROOT/README.md, then $ROOT/docs/ (api.md, cli.md, operations.md, configuration.md)
Press Ctrl-C to stop.
EOF
while true; do
  check_alive
  sleep 1
done
