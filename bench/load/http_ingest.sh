#!/usr/bin/env bash
# HTTP batch ingest into a real verge-node vs a raw SQLite batched insert of the same rows, in
# the same run (issue 3: >= 1 M readings/s on one core, and >= 50 % of the raw insert).
#
#   BIN=build-rel/bin bench/load/http_ingest.sh            # 3 runs of 20 s, 4 connections
#   RUNS=1 DURATION=5s bench/load/http_ingest.sh           # smoke run
#
# It starts its own verge-cloud and one verge-node on loopback in a fresh temporary directory
# (binaries copied there first, so a rebuild during the run changes nothing), declares
# $DEVICES devices on the node through the cloud's REST API (POST /api/v1/devices, the schema
# of bench/micro/ingest_bench.cc: unit conversions and bounds), and waits until the node has
# applied them. verge-node is pinned to CPU $NODE_CPU (`taskset`: every thread of it, the HTTP
# I/O thread and the pipeline thread included, shares that one core); the load tool and the
# cloud are pinned to CPU $TOOL_CPU. Then $RUNS times:
#   1. wait until the node's pipeline has drained its journal (so every run starts alike);
#   2. verge-http-bench: $CONNECTIONS keep-alive connections post NDJSON bodies of $READINGS
#      readings for $WARMUP + $DURATION; over the $DURATION window: readings/s, requests/s,
#      latency, and the node's CPU time (schedstat and utime+stime) and GET /stats (pipeline
#      progress, journal backlog). Every answer must be 200 with every reading accepted;
#   3. wait for the drain again (its time is reported: the pipeline's catch-up);
#   4. the peer, on the node's CPU while the node idles: verge-ingest-bench's
#      BM_RawSqliteBatchedInsert (simdjson + one prepared INSERT per row, one transaction per
#      1,000-row body, WAL + synchronous=NORMAL like the node), with BM_IngestToJournal and
#      BM_IngestAndPipeline for reference, their databases in this run's directory (the
#      node's disk).
# The summary gives per-run values and medians, and the ratio node/raw.
#
# Needs: a build with verge-cloud, verge-node, verge-http-bench, verge-ingest-bench (use a
# RelWithDebInfo or Release build), python3, curl, taskset.
# It kills only the processes it started (by pid). KEEP=1 keeps the temporary directory.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/build/bin}
PY=${PY:-$(command -v python3)}
RUNS=${RUNS:-3}
DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-3s}
CONNECTIONS=${CONNECTIONS:-4}
DEVICES=${DEVICES:-50}
READINGS=${READINGS:-1000}
NODE_CPU=${NODE_CPU:-1}
TOOL_CPU=${TOOL_CPU:-0}
CLOUD_CPU=${CLOUD_CPU:-$TOOL_CPU}
PEER_MIN_TIME=${PEER_MIN_TIME:-2}   # seconds per peer benchmark and run
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-300}  # seconds to wait for the node's journal to drain

BINS=(verge-cloud verge-node verge-http-bench verge-ingest-bench)
for b in "${BINS[@]}"; do
  [[ -x "$BIN/$b" ]] || {
    echo "http_ingest.sh: $BIN/$b missing; build: cmake --build build --target benchmarks" >&2
    exit 2
  }
done
for tool in curl taskset; do
  command -v "$tool" >/dev/null || { echo "http_ingest.sh: $tool missing" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/verge-http-ingest.XXXXXX")
mkdir -p "$WORK/bin" "$WORK/results"
for b in "${BINS[@]}"; do cp "$BIN/$b" "$WORK/bin/$b"; done
BUILT=$(cd "$BIN" && ls -l --time-style=+%FT%T "${BINS[@]}" | awk '{printf "%s %s; ", $7, $6}')
BIN=$WORK/bin
OUT=$WORK/results
CLOUD_PID=""
NODE_PID=""
TOOL_PID=""
T_START=$(date +%s)

log() { echo "[$(date +%H:%M:%S) +$(($(date +%s) - T_START))s] $*" >&2; }

# Wait (bounded) for a process we started to exit; SIGKILL it after the deadline.
reap() {
  local pid=$1 secs=$2
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  set +e
  [[ -n "$TOOL_PID" ]] && kill -TERM "$TOOL_PID" 2>/dev/null && reap "$TOOL_PID" 10
  [[ -n "$NODE_PID" ]] && kill -TERM "$NODE_PID" 2>/dev/null && reap "$NODE_PID" 20
  [[ -n "$CLOUD_PID" ]] && kill -TERM "$CLOUD_PID" 2>/dev/null && reap "$CLOUD_PID" 20
  if [[ "${KEEP:-0}" == 1 ]]; then
    echo "http_ingest.sh: kept $WORK" >&2
  else
    local keep_results=${TMPDIR:-/tmp}/verge-http-ingest-results.$$
    cp -r "$OUT" "$keep_results" 2>/dev/null &&
      echo "http_ingest.sh: raw results copied to $keep_results" >&2
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs a command in the background and waits for it, so that a signal to this script is
# handled at once (cleanup then stops it). Usage: run_tool OUT_FILE COMMAND...
run_tool() {
  local out=$1
  shift
  "$@" >"$out" 2>>"$WORK/tool.log" &
  TOOL_PID=$!
  local rc=0
  wait "$TOOL_PID" || rc=$?
  TOOL_PID=""
  return "$rc"
}

json_field() {  # FILE KEY
  "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

# ---- machine -------------------------------------------------------------------------------
{
  echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'),"\
    "$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)"
  echo "data directory: $WORK on $(df -T "$WORK" | awk 'NR == 2 {print $2 " (" $1 ")"}')"
  echo "source: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)," \
    "$(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l) changed files in the tree; binaries built $BUILT"
  echo "settings: RUNS=$RUNS DURATION=$DURATION WARMUP=$WARMUP CONNECTIONS=$CONNECTIONS DEVICES=$DEVICES" \
    "READINGS=$READINGS NODE_CPU=$NODE_CPU TOOL_CPU=$TOOL_CPU CLOUD_CPU=$CLOUD_CPU"
  echo "uptime at start: $(uptime)"
} | tee "$OUT/machine.txt" >&2

# ---- cloud and node ------------------------------------------------------------------------
CLOUD_DIR=$WORK/cloud
(cd "$WORK" && exec taskset -c "$CLOUD_CPU" "$BIN/verge-cloud" --data-dir "$CLOUD_DIR" \
  --api-listen 127.0.0.1:0 --link-listen 127.0.0.1:0 --io-threads 1 >"$WORK/cloud.log" 2>&1) &
CLOUD_PID=$!
for ((i = 0; i < 300; i++)); do
  [[ -s "$CLOUD_DIR/listen.json" ]] && grep -q "\"pid\":$CLOUD_PID" "$CLOUD_DIR/listen.json" && break
  kill -0 "$CLOUD_PID" 2>/dev/null || { tail -5 "$WORK/cloud.log" >&2; exit 1; }
  sleep 0.1
done
API=$(json_field "$CLOUD_DIR/listen.json" api)
LINK=$(json_field "$CLOUD_DIR/listen.json" link)
ADMIN=$(head -1 "$CLOUD_DIR/admin.token")
api() {  # METHOD PATH [BODY]
  curl -sS --fail-with-body --max-time 10 --cacert "$CLOUD_DIR/pki/ca.crt" -X "$1" \
    -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
    ${3:+--data "$3"} "https://$API$2"
}
log "cloud pid $CLOUD_PID (CPU $CLOUD_CPU), API $API"

NODE_DIR=$WORK/node
(cd "$WORK" && exec taskset -c "$NODE_CPU" "$BIN/verge-node" --data-dir "$NODE_DIR" --cloud "$LINK" \
  --token "$(head -1 "$CLOUD_DIR/bootstrap.token")" --name bench-node --heartbeat 15s \
  --http-listen 127.0.0.1:0 --mqtt-listen off --log-level warn >"$WORK/node.log" 2>&1) &
NODE_PID=$!
for ((i = 0; i < 300; i++)); do
  [[ -s "$NODE_DIR/listen.json" ]] && grep -q "\"pid\":$NODE_PID" "$NODE_DIR/listen.json" && break
  kill -0 "$NODE_PID" 2>/dev/null || { tail -5 "$WORK/node.log" >&2; exit 1; }
  sleep 0.1
done
NODE_API=$(json_field "$NODE_DIR/listen.json" http)
LOCAL_TOKEN=$(head -1 "$NODE_DIR/data/local.token")
for ((i = 0; i < 300; i++)); do
  api GET /api/v1/nodes/bench-node 2>/dev/null | grep -q '"connected":true' && break
  sleep 0.1
done
log "node pid $NODE_PID (CPU $NODE_CPU), local API $NODE_API"

# ---- devices -------------------------------------------------------------------------------
METRICS='[{"name":"temp","type":"float","min":-40,"max":300,"unit":"degF"},
  {"name":"pressure","type":"float","min":0,"max":2000000,"unit":"bar"},
  {"name":"running","type":"bool"},{"name":"rpm","type":"float","min":0,"max":10000}]'
: >"$WORK/devices.txt"
for ((i = 0; i < DEVICES; i++)); do
  name=$(printf 'plant-3.line-%d.press-%03d' $((i % 4)) "$i")
  body="{\"name\":\"$name\",\"node\":\"bench-node\",\"allowUndeclared\":true,\"metrics\":$METRICS}"
  token=$(api POST /api/v1/devices "$body" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  echo "$name $token" >>"$WORK/devices.txt"
done
# Applied when the last device's token opens its own series on the node.
read -r last_name last_token < <(tail -1 "$WORK/devices.txt")
for ((i = 0; i < 600; i++)); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $last_token" \
    "http://$NODE_API/query?device=$last_name&limit=1" || true)
  [[ "$code" == 200 ]] && break
  sleep 0.1
done
[[ "$code" == 200 ]] || { echo "http_ingest.sh: the node did not get its devices" >&2; exit 1; }
log "$DEVICES devices declared and applied on the node"

node_stat() {  # GROUP KEY
  curl -sf --max-time 5 -H "Authorization: Bearer $LOCAL_TOKEN" "http://$NODE_API/stats" |
    "$PY" -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]][sys.argv[2]])' "$1" "$2"
}
# Seconds until the node's journal is empty (the pipeline has caught up), or "timeout".
drain() {
  local t0
  t0=$(date +%s.%N)
  for ((i = 0; i < DRAIN_TIMEOUT * 10; i++)); do
    [[ "$(node_stat buffer journalEntries)" == 0 ]] && { "$PY" -c "print(round($(date +%s.%N) - $t0, 1))"; return; }
    sleep 0.1
  done
  echo timeout
}

# CPU time of every thread of a process so far, in ns (schedstat: exact, unlike clock ticks).
cpu_ns() {
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}'
}

# ---- runs ----------------------------------------------------------------------------------
SPAN_MS=3600000  # timestamps of run r: [T0 + (r-1) h, T0 + r h); no run overlaps another
T0_MS=$(($(date +%s%3N) - RUNS * SPAN_MS - 600000))
for ((r = 1; r <= RUNS; r++)); do
  log "run $r: waiting for the journal to drain: $(drain) s"
  log "run $r: $CONNECTIONS connections, $READINGS readings per body, $WARMUP + $DURATION"
  cpu0=$(cpu_ns "$NODE_PID")
  rc=0
  run_tool "$OUT/http-$r.json" taskset -c "$TOOL_CPU" "$BIN/verge-http-bench" --target "$NODE_API" \
    --devices-file "$WORK/devices.txt" --connections "$CONNECTIONS" --readings "$READINGS" \
    --duration "$DURATION" --warmup "$WARMUP" --start-ms $((T0_MS + (r - 1) * SPAN_MS)) \
    --end-ms $((T0_MS + r * SPAN_MS)) --watch "node=$NODE_PID" --watch "cloud=$CLOUD_PID" \
    --stats-token "$LOCAL_TOKEN" || rc=$?
  ((rc == 0)) || log "run $r: verge-http-bench reported errors (see $OUT/http-$r.json)"
  kill -0 "$NODE_PID" 2>/dev/null || { echo "http_ingest.sh: verge-node died; see $WORK/node.log" >&2; KEEP=1; exit 1; }
  d=$(drain)
  echo "$d" >"$OUT/drain-$r.txt"
  # The node's CPU for everything this run sent, warmup included, until the pipeline caught up.
  echo $(($(cpu_ns "$NODE_PID") - cpu0)) >"$OUT/node-cpu-ns-$r.txt"
  log "run $r: the pipeline caught up $d s after the window"
  log "run $r: raw SQLite peer on CPU $NODE_CPU"
  run_tool "$OUT/peer-$r.json" env TMPDIR="$WORK" taskset -c "$NODE_CPU" "$BIN/verge-ingest-bench" \
    --benchmark_filter='IngestToJournal|IngestAndPipeline|RawSqlite' --benchmark_min_time="$PEER_MIN_TIME" \
    --benchmark_format=json || log "run $r: the peer failed (see $OUT/peer-$r.json)"
done
echo "uptime at end: $(uptime)" | tee -a "$OUT/machine.txt" >&2

# ---- summary -------------------------------------------------------------------------------
"$PY" - "$OUT" "$RUNS" <<'EOF'
import json, os, statistics, sys

out, runs = sys.argv[1], int(sys.argv[2])
def load(name):
    try:
        return json.load(open(os.path.join(out, name)))
    except Exception:
        return None
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def f(x, nd=0):
    return "n/a" if x is None else f"{x:,.{nd}f}"
def row(label, xs, nd=0, unit=""):
    print(f"  {label:<54} {f(med(xs), nd)}{unit}  [" + ", ".join(f(x, nd) for x in xs) + "]")

def num_file(name):
    try:
        return float(open(os.path.join(out, name)).read())
    except Exception:
        return None
def get(h, *keys):
    for k in keys:
        h = h.get(k) if isinstance(h, dict) else None
    return h

http = [load(f"http-{r}.json") or {} for r in range(1, runs + 1)]
# Google Benchmark's items_per_second is per CPU-second of the process; * cpu/real gives wall.
peer, peer_wall = [], []
for r in range(1, runs + 1):
    p = load(f"peer-{r}.json") or {}
    ok = [b for b in p.get("benchmarks", []) if not b.get("error_occurred")]
    peer.append({b["name"]: b.get("items_per_second") for b in ok})
    peer_wall.append({b["name"]: b["items_per_second"] * b["cpu_time"] / b["real_time"]
                      for b in ok if b.get("items_per_second") and b.get("real_time")})
drains = [num_file(f"drain-{r}.txt") for r in range(1, runs + 1)]
cpu_all = [num_file(f"node-cpu-ns-{r}.txt") for r in range(1, runs + 1)]
rate = [h.get("readings_per_sec") for h in http]
node_cpu = [get(h, "cpu", "node", "cpu_percent_schedstat") for h in http]
per_core = [r / (c / 100) if r and c else None for r, c in zip(rate, node_cpu)]
http_cpu = [get(h, "cpu", "node", "threads", "verge-http", "cpu_percent") for h in http]
per_http_core = [r / (c / 100) if r and c else None for r, c in zip(rate, http_cpu)]
full = [h["total"]["readings"] / (c / 1e9) if get(h, "total", "readings") and c else None
        for h, c in zip(http, cpu_all)]
raw = [p.get("BM_RawSqliteBatchedInsert/parse_and_insert") for p in peer]
raw_wall = [p.get("BM_RawSqliteBatchedInsert/parse_and_insert") for p in peer_wall]
raw_ins = [p.get("BM_RawSqliteBatchedInsert/insert_only") for p in peer]
journal = [p.get("BM_IngestToJournal") for p in peer]
with_pipeline = [p.get("BM_IngestAndPipeline") for p in peer]

print("\n==== HTTP batch ingest into verge-node vs raw SQLite (medians; per run in brackets) ====")
print(open(os.path.join(out, "machine.txt")).read().rstrip())
h0 = http[0] if http else {}
print(f"\nverge-node POST /data, {h0.get('connections')} connections, {h0.get('devices')} devices,"
      f" {h0.get('readings_per_body')} readings per NDJSON body ({h0.get('request_bytes')} bytes per request),"
      f" {f(h0.get('window_seconds'), 1)} s window:")
row("readings/s accepted (HTTP 200, durable)", rate)
row("requests/s", [h.get("requests_per_sec") for h in http], 1)
row("latency p50 ms", [get(h, "latency_ms", "p50") for h in http], 2)
row("latency p99 ms", [get(h, "latency_ms", "p99") for h in http], 2)
row("node CPU % of one core (schedstat)", node_cpu, 1)
row("node CPU % of one core (utime+stime)", [get(h, "cpu", "node", "cpu_percent_stat") for h in http], 1)
row("  of which the request thread (verge-http)", http_cpu, 1)
row("  and the other threads (pipeline, uplink, link)",
    [a - b if a is not None and b is not None else None for a, b in zip(node_cpu, http_cpu)], 1)
row("readings/s per node CPU-second in the window", per_core)
row("readings/s per CPU-second of the request thread", per_http_core)
print("    (parse, clean and journal commit before each answer: HTTP ingest into the durable\n"
      "     buffer on one core, apart from the pipeline that shares it)")
row("node pipeline: readings/s into the series", [get(h, "node", "pipeline_processed_per_sec") for h in http])
row("node journal entries at window end", [get(h, "node", "journal_entries_end") for h in http])
row("pipeline catch-up after the window, s", drains, 1)
row("full path: readings per node CPU-second", full)
print("    (every reading the run sent, through the journal, the local series and the uplink\n"
      "     batches: the node's CPU from the run's start until its pipeline had caught up)")
row("cloud CPU % (uplink), on the tool's CPU", [get(h, "cpu", "cloud", "cpu_percent_schedstat") for h in http], 1)
row("load tool CPU %", [h.get("tool_cpu_percent") for h in http], 1)
print(f"  errors: {[h.get('errors') for h in http]}" + "".join(
    f"; run {i + 1}: {h['first_error']}" for i, h in enumerate(http) if h.get("first_error")))
print("\nsame bodies, micro-benchmarks on the node's CPU with the node idle (verge-ingest-bench):")
row("raw SQLite: simdjson parse + batched insert, per CPU-s", raw)
row("  the same, per wall-clock second", raw_wall)
row("raw SQLite: batched insert of parsed rows, per CPU-s", raw_ins)
row("BM_IngestToJournal (parse, clean, journal), per CPU-s", journal)
row("BM_IngestAndPipeline (+ series, batches), per CPU-s", with_pipeline)
pct = lambda xs, ys: [100 * a / b if a and b else None for a, b in zip(xs, ys)]
print("\nratios, per run (target >= 50 %):")
row("HTTP readings/s / raw readings/s (wall clock)", pct(rate, raw_wall), 0, " %")
row("HTTP readings per node CPU-s / raw per CPU-s", pct(per_core, raw), 0, " %")
row("HTTP readings per request-thread CPU-s / raw per CPU-s", pct(per_http_core, raw), 0, " %")
row("full path per node CPU-s / raw per CPU-s", pct(full, raw), 0, " %")
row("BM_IngestToJournal / raw, both per CPU-s", pct(journal, raw), 0, " %")
row("BM_IngestAndPipeline / raw, both per CPU-s", pct(with_pipeline, raw), 0, " %")
print(f"\ntarget >= 1,000,000 readings/s on one core: HTTP median {f(med(rate))} readings/s"
      f" ({f(med(per_core))} per node CPU-second, {f(med(per_http_core))} per request-thread"
      f" CPU-second; full path {f(med(full))})")
EOF
log "done; raw results in $OUT"
