#!/usr/bin/env bash
# verge-node's memory idle and at 100,000 readings/s (issue 3: RSS <= 5 MB idle, <= 25 MB at
# 100k readings/s), beside Mosquitto's idle memory measured in the same run as the reference
# for "a small C daemon on this system's shared libraries".
#
#   bench/load/node_rss.sh                    # 3 runs
#   RUNS=1 LOAD_S=20 bench/load/node_rss.sh
#
# Each run: a fresh verge-cloud + verge-node on 127.0.0.1 (random free ports, temporary
# directory), DEVICES devices declared; the node idles IDLE_S seconds on the link with the
# devices applied and its memory is read; then verge-devsim posts DEVICES x RATE readings/s
# (NDJSON, BATCH readings per request, CONNECTIONS keep-alive connections) for LOAD_S seconds
# while the node's memory is sampled every second. Mosquitto (`mosquitto -p PORT`, default
# config) is started alone and read after 5 s.
# Memory, from /proc/PID/status and smaps_rollup: VmRSS (what the target names), RssAnon
# (heap, stacks: what the process allocated), RssFile (mapped program and library pages,
# shared with every other process using the same libraries), Pss (RSS with shared pages
# divided among the processes sharing them) and Private (Private_Clean + Private_Dirty: what
# exiting the process would free).
#
# Knobs (environment): RUNS, DEVICES, RATE (per device), BATCH, CONNECTIONS, IDLE_S, LOAD_S, BIN.
# Needs verge-cloud, verge-node, vergectl, verge-devsim, verge-rss-floor (BIN, default
# build/bin), python3, curl, mosquitto. It kills only the processes it started (by pid).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/build/bin}
PY=${PY:-$(command -v python3)}
RUNS=${RUNS:-3}
DEVICES=${DEVICES:-100}
RATE=${RATE:-1000}
BATCH=${BATCH:-500}
CONNECTIONS=${CONNECTIONS:-4}
IDLE_S=${IDLE_S:-30}
LOAD_S=${LOAD_S:-60}

command -v mosquitto >/dev/null || { echo "node_rss.sh: mosquitto missing" >&2; exit 2; }
# shellcheck source=bench/load/dataplane_common.sh
source "$ROOT/bench/load/dataplane_common.sh"
dp_snapshot node-rss verge-cloud verge-node vergectl verge-devsim verge-rss-floor

MQ_PID=""
FLOOR_PID=""
cleanup() {
  dp_cleanup
  [[ -n "$MQ_PID" ]] && kill -TERM "$MQ_PID" 2>/dev/null && dp_reap "$MQ_PID" 10
  [[ -n "$FLOOR_PID" ]] && kill -TERM "$FLOOR_PID" 2>/dev/null && dp_reap "$FLOOR_PID" 10
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# One JSON object of a process's memory in KiB.
mem() {  # PID
  "$PY" - "$1" <<'EOF'
import json, sys
pid = sys.argv[1]
out = {}
for line in open(f"/proc/{pid}/status"):
    k, _, v = line.partition(":")
    if k in ("VmRSS", "RssAnon", "RssFile", "Threads"):
        out[k] = int(v.split()[0])
priv = 0
for line in open(f"/proc/{pid}/smaps_rollup"):
    k, _, v = line.partition(":")
    if k == "Pss":
        out["Pss"] = int(v.split()[0])
    if k in ("Private_Clean", "Private_Dirty"):
        priv += int(v.split()[0])
out["Private"] = priv
print(json.dumps(out))
EOF
}

echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')," \
  "kernel $(uname -r); source $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown);" \
  "load average at start: $(dp_load)" >&2
echo "settings: RUNS=$RUNS DEVICES=$DEVICES RATE=$RATE BATCH=$BATCH CONNECTIONS=$CONNECTIONS" \
  "IDLE_S=$IDLE_S LOAD_S=$LOAD_S" >&2

NODE_NAME=rss-node
results=()
for ((r = 1; r <= RUNS; r++)); do
  RUN=$WORK/run-$r
  mkdir -p "$RUN"
  CLOUD_DIR=$RUN/cloud NODE_DIR=$RUN/node NODE_CONFIG=$RUN/node.yaml
  echo 'mqttListen: "off"' >"$NODE_CONFIG"
  API_PORT=$(dp_free_port) LINK_PORT=$(dp_free_port) NODE_HTTP_PORT=$(dp_free_port)
  NODE_LOG_LEVEL=warn CLOUD_LOG_LEVEL=warn
  dp_start_cloud
  dp_wait_cloud
  dp_start_node
  dp_wait_stats "d['uplink']['connected']" 60 "the node's link"
  dp_add_devices "$DEVICES" "" "$RUN/devices.json"
  # vergectl prints one object per device; verge-devsim wants one JSON array.
  "$PY" -c 'import json,sys
d = json.JSONDecoder(); s = open(sys.argv[1]).read(); i = 0; out = []
while i < len(s):
    while i < len(s) and s[i].isspace(): i += 1
    if i >= len(s): break
    o, i = d.raw_decode(s, i); out.append(o)
print(json.dumps(out))' "$RUN/devices.json" >"$RUN/devices.array.json"
  sleep "$IDLE_S"
  idle=$(mem "$DP_NODE_PID")
  dp_log "run $r idle: $idle"

  samples=$RUN/samples.jsonl
  : >"$samples"
  cpu0=$(dp_cpu_s "$DP_NODE_PID")
  "$BIN/verge-devsim" --log-level warn http --url "http://127.0.0.1:$NODE_HTTP_PORT/data" \
    --devices "$RUN/devices.array.json" --rate "$RATE" --batch "$BATCH" --format ndjson \
    --connections "$CONNECTIONS" --duration "${LOAD_S}s" >"$RUN/devsim.out" 2>"$RUN/devsim.err" &
  DP_DEVSIM_PID=$!
  t0=$(date +%s.%N)
  while kill -0 "$DP_DEVSIM_PID" 2>/dev/null; do
    mem "$DP_NODE_PID" >>"$samples"
    sleep 1
  done
  wait "$DP_DEVSIM_PID" || dp_die "verge-devsim failed: $(tail -3 "$RUN/devsim.err")"
  DP_DEVSIM_PID=""
  t1=$(date +%s.%N)
  cpu1=$(dp_cpu_s "$DP_NODE_PID")
  after=$(mem "$DP_NODE_PID")
  summary=$(grep '^{' "$RUN/devsim.out" | tail -1)
  res=$("$PY" - "$samples" "$summary" "$t0" "$t1" "$cpu0" "$cpu1" "$idle" "$after" <<'EOF'
import json, sys
samples = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
summary = json.loads(sys.argv[2])
secs = float(sys.argv[4]) - float(sys.argv[3])
peak = {k: max(s[k] for s in samples) for k in ("VmRSS", "RssAnon", "RssFile", "Pss", "Private")}
print(json.dumps({"idle": json.loads(sys.argv[7]), "load_peak": peak,
                  "after_load": json.loads(sys.argv[8]),
                  "accepted": summary.get("accepted"), "rejected": summary.get("rejected"),
                  "readings_per_s": round(summary.get("accepted", 0) / secs),
                  "node_cpu_pct": round(100 * (float(sys.argv[6]) - float(sys.argv[5])) / secs, 1),
                  "samples": len(samples)}))
EOF
)
  dp_log "run $r: $res"
  results+=("$res")
  dp_stop_node
  dp_stop_cloud
done

MQ_PORT=$(dp_free_port)
mosquitto -p "$MQ_PORT" >"$WORK/mosquitto.log" 2>&1 &
MQ_PID=$!
sleep 5
mq=$(mem "$MQ_PID")
kill -TERM "$MQ_PID"
dp_reap "$MQ_PID" 10
MQ_PID=""

"$BIN/verge-rss-floor" "$WORK/floor.db" >"$WORK/floor.out" 2>&1 &
FLOOR_PID=$!
for ((i = 0; i < 100; i++)); do grep -q ready "$WORK/floor.out" && break; sleep 0.1; done
grep -q ready "$WORK/floor.out" || dp_die "verge-rss-floor did not start: $(cat "$WORK/floor.out")"
sleep 2
floor=$(mem "$FLOOR_PID")
kill -TERM "$FLOOR_PID"
dp_reap "$FLOOR_PID" 10
FLOOR_PID=""

printf '%s\n' "${results[@]}" >"$WORK/runs.jsonl"
"$PY" - "$mq" "$WORK/runs.jsonl" "$floor" <<'EOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
mq = json.loads(sys.argv[1])
floor = json.loads(sys.argv[3])
mib = lambda kib: f"{kib / 1024:.1f}"
def med(path):
    vals = []
    for r in runs:
        v = r
        for p in path: v = v[p]
        vals.append(v)
    return statistics.median(vals), vals
print("verge-node memory, MiB (median [runs]):")
for phase in ("idle", "load_peak"):
    row = []
    for k in ("VmRSS", "RssAnon", "RssFile", "Pss", "Private"):
        m, vals = med((phase, k))
        row.append(f"{k} {mib(m)} [{', '.join(mib(v) for v in vals)}]")
    print(f"  {phase:9}: " + "; ".join(row))
m, vals = med(("readings_per_s",))
print(f"  load: {m:.0f} readings/s accepted [{', '.join(str(v) for v in vals)}], node CPU "
      f"{med(('node_cpu_pct',))[0]} % of one core")
keys = ("VmRSS", "RssAnon", "RssFile", "Pss", "Private")
print("mosquitto idle, MiB: " + "; ".join(f"{k} {mib(mq[k])}" for k in keys))
print("floor (OpenSSL TLS context + SQLite WAL database, idle), MiB: " +
      "; ".join(f"{k} {mib(floor[k])}" for k in keys))
print(json.dumps({"runs": runs, "mosquitto": mq, "floor": floor}))
EOF
