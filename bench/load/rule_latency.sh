#!/usr/bin/env bash
# End-to-end latency of a rule on a verge-node (issue 4: "MQTT -> rule -> MQTT action latency
# p50/p99"), beside the same messages through the node's broker alone:
#
#   bench/load/rule_latency.sh                     # 3 runs, 20,000 messages at 1,000/s per path
#   RUNS=1 RATE=5000 bench/load/rule_latency.sh    # does the latency hold at 5,000/s?
#
# Each run starts from nothing in a fresh temporary directory, on 127.0.0.1 with random free
# ports (bench/load/dataplane_common.sh): a verge-cloud, a verge-node joined to it with its own
# Mosquitto (mqttListen in its config file, the same setting as --mqtt-listen), and one device,
# DEVICE (pump), declared for the node through the cloud's API (vergectl devices add; its token
# is its MQTT password). Once the node's broker has admitted the device, a local rule is created
# on the node's local API (POST /rules, the node's local token):
#   stream  CREATE STREAM alarms (seq BIGINT, level BIGINT) WITH (DATASOURCE="devices/+/alarms")
#   sql     SELECT seq, level FROM alarms WHERE level >= 3
#   action  {mqtt: {topic: "devices/pump/commands/trip", qos: 1}}
# Then verge-rule-latency-bench (bench/load/rule_latency.cc) logs in as the device, subscribes
# devices/pump/commands/# (QoS 1) and runs two phases, one after the other, on the same broker
# with the same pacing (RATE per second on absolute deadlines, QoS 1, {"seq":i,"level":5}):
#   rule    publish to devices/pump/alarms, wait for the rule's command on .../commands/trip;
#   direct  publish to devices/pump/commands/direct, which the broker hands straight back (one
#           broker hop, no node code on the path: the floor of the rule path).
# Each phase sends WARMUP messages first (left out), then COUNT measured ones. A message's latency
# is from just before the device's publish call to the arrival of the command with its seq at
# the device's subscriber: same process, same steady clock. Lost messages are counted and left
# out of the percentiles.
# Output: per run one line, then the medians of the runs; per run the tool's JSON, the rule's
# status from the node after the run (its own latencyP50Us/P99Us: event queued -> output queued
# for the action), the raw per-message times (raw.txt: phase seq send_ns recv_ns) and the logs
# stay in $OUT.
#
# Knobs (environment): RUNS (3), COUNT (20000), WARMUP (500), RATE (1000), DEVICE (pump),
# PHASES (rule,direct), KEEP=1 (keep the data directories), BIN, OUT.
# Needs a build with verge-cloud, verge-node, vergectl and verge-rule-latency-bench (BIN, default
# build/bin; use a Release build), mosquitto, python3, curl. It kills only the processes it
# started (by pid; the node stops its own Mosquitto).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/build/bin}
PY=${PY:-$(command -v python3)}
RUNS=${RUNS:-3}
COUNT=${COUNT:-20000}
WARMUP=${WARMUP:-500}
RATE=${RATE:-1000}
DEVICE=${DEVICE:-pump}
PHASES=${PHASES:-rule,direct}
RULE_NAME=trip-latency

[[ -x /usr/sbin/mosquitto ]] || { echo "rule_latency.sh: /usr/sbin/mosquitto missing" >&2; exit 2; }
# shellcheck source=bench/load/dataplane_common.sh
source "$ROOT/bench/load/dataplane_common.sh"
dp_snapshot rulelat verge-cloud verge-node vergectl verge-rule-latency-bench
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/verge-rulelat-results.XXXXXX")}
mkdir -p "$OUT"

cleanup() {
  dp_cleanup
  if [[ "${KEEP:-0}" == 1 ]]; then
    echo "rule_latency.sh: kept $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

NODE_NAME=rulelat-node
{
  echo "machine: $(nproc) CPUs, $(lscpu | grep 'Model name' | cut -d: -f2- | sed 's/^ *//'),"\
       "$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)," \
       "$(/usr/sbin/mosquitto -h 2>/dev/null | head -1)"
  echo "source: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)," \
       "$(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l) changed files in the tree; binaries built $BUILT"
  echo "settings: RUNS=$RUNS COUNT=$COUNT WARMUP=$WARMUP RATE=$RATE/s DEVICE=$DEVICE PHASES=$PHASES QoS 1"
  echo "load average at start: $(dp_load)"
} | tee "$OUT/machine.txt" >&2

node_api() {  # METHOD PATH [BODY]: prints the body, then the status code on its own line
  local body=()
  (($# > 2)) && body=(--data-binary "$3")
  curl -s --max-time 30 -X "$1" -H "Authorization: Bearer $LOCAL_TOKEN" \
    -H 'Content-Type: application/json' "${body[@]}" -w '\n%{http_code}' \
    "http://127.0.0.1:$NODE_HTTP_PORT$2"
}

RULE_BODY=$("$PY" -c '
import json, sys
d = sys.argv[1]
print(json.dumps({
    "name": sys.argv[2],
    "streams": ["CREATE STREAM alarms (seq BIGINT, level BIGINT) WITH (DATASOURCE=\"devices/+/alarms\")"],
    "sql": "SELECT seq, level FROM alarms WHERE level >= 3",
    "actions": [{"mqtt": {"topic": f"devices/{d}/commands/trip", "qos": 1}}],
}))' "$DEVICE" "$RULE_NAME")

for ((r = 1; r <= RUNS; r++)); do
  RUN=$WORK/run-$r
  res=$OUT/run-$r
  mkdir -p "$RUN" "$res"
  CLOUD_DIR=$RUN/cloud
  NODE_DIR=$RUN/node
  NODE_CONFIG=$RUN/node.yaml
  API_PORT=$(dp_free_port)
  LINK_PORT=$(dp_free_port)
  NODE_HTTP_PORT=$(dp_free_port)
  MQTT_PORT=$(dp_free_port)
  echo "mqttListen: \"127.0.0.1:$MQTT_PORT\"" >"$NODE_CONFIG"

  dp_start_cloud
  dp_wait_cloud
  dp_start_node
  dp_wait_stats "d['uplink']['connected']" 60 "the node's link"
  dp_ctl devices add "$DEVICE" --node "$NODE_NAME" -o json >"$RUN/device.json"
  token=$(dp_json "d['token']" <"$RUN/device.json")
  dp_wait_stats "d['desiredState']['appliedVersion'] >= 1 and d['mqtt']['broker']['devices'] >= 1" 60 \
    "the node's broker to admit $DEVICE"

  reply=$(node_api POST /rules "$RULE_BODY")
  [[ "${reply##*$'\n'}" == 201 ]] || dp_die "POST /rules: $reply"
  for ((i = 0; i < 100; i++)); do
    status=$(node_api GET "/rules/$RULE_NAME" | head -n -1 | dp_json "d['status']" 2>/dev/null || true)
    [[ "$status" == running ]] && break
    sleep 0.1
  done
  [[ "$status" == running ]] || dp_die "rule $RULE_NAME is not running: $(node_api GET "/rules/$RULE_NAME")"
  mosq_pid=$(head -1 "$NODE_DIR/mqtt/mosquitto.pid" 2>/dev/null || true)

  dp_log "run $r: cloud $DP_CLOUD_PID, node $DP_NODE_PID, mosquitto ${mosq_pid:-?} on :$MQTT_PORT"
  load_before=$(dp_load)
  node_cpu0=$(dp_cpu_s "$DP_NODE_PID")
  mosq_cpu0=$([[ -n "$mosq_pid" ]] && dp_cpu_s "$mosq_pid" || echo 0)
  t0=$(dp_now_ns)
  "$BIN/verge-rule-latency-bench" --broker "127.0.0.1:$MQTT_PORT" --device "$DEVICE" \
    --password "$token" --count "$COUNT" --warmup "$WARMUP" --rate "$RATE" --phases "$PHASES" \
    --raw "$res/raw.txt" >"$res/result.json" 2>"$res/bench.err" ||
    dp_die "verge-rule-latency-bench failed: $(cat "$res/bench.err")"
  t1=$(dp_now_ns)
  node_cpu1=$(dp_cpu_s "$DP_NODE_PID")
  mosq_cpu1=$([[ -n "$mosq_pid" ]] && dp_cpu_s "$mosq_pid" || echo 0)
  load_after=$(dp_load)
  node_api GET "/rules/$RULE_NAME" | head -n -1 >"$res/rule.json"
  "$PY" - "$res/run.json" "$load_before" "$load_after" "$((t1 - t0))" "$node_cpu0" "$node_cpu1" \
    "$mosq_cpu0" "$mosq_cpu1" <<'EOF'
import json, sys
path, lb, la, ns, n0, n1, m0, m1 = sys.argv[1:]
json.dump({"load_before": lb, "load_after": la, "wall_s": int(ns) / 1e9,
           "node_cpu_s": float(n1) - float(n0), "mosquitto_cpu_s": float(m1) - float(m0)},
          open(path, "w"))
EOF
  dp_stop_node
  dp_stop_cloud
  cp "$CLOUD_DIR.log" "$res/cloud.log"
  cp "$NODE_DIR.log" "$res/node.log"
  cp "$NODE_DIR/mqtt/mosquitto.log" "$res/mosquitto.log" 2>/dev/null || true
  "$PY" - "$res" "$r" <<'EOF'
import json, os, sys
res, r = sys.argv[1:]
d = json.load(open(os.path.join(res, "result.json")))
rule = json.load(open(os.path.join(res, "rule.json")))
run = json.load(open(os.path.join(res, "run.json")))
line = [f"run {r}:"]
for name, p in d["phases"].items():
    line.append(f"{name} p50 {p['p50_us']:.0f} p90 {p['p90_us']:.0f} p99 {p['p99_us']:.0f}"
                f" max {p['max_us']:.0f} us, {p['arrived']}/{p['sent']} arrived;")
line.append(f"node's own p50/p99 {rule.get('latencyP50Us')}/{rule.get('latencyP99Us')} us;"
            f" load {run['load_before']} -> {run['load_after']}")
print(" ".join(line), file=sys.stderr)
EOF
done

"$PY" - "$OUT" "$RUNS" <<'EOF'
import json, os, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
rows = []
for r in range(1, runs + 1):
    res = os.path.join(out, f"run-{r}")
    rows.append({"tool": json.load(open(os.path.join(res, "result.json"))),
                 "rule": json.load(open(os.path.join(res, "rule.json"))),
                 "run": json.load(open(os.path.join(res, "run.json")))})
med = statistics.median
def col(phase, key):
    return [x["tool"]["phases"][phase][key] for x in rows if phase in x["tool"]["phases"]]
def fmt(v):
    return f"{v:,.0f}"
def cell(phase, key):
    v = col(phase, key)
    return f"{fmt(med(v))} [{', '.join(fmt(x) for x in v)}]" if v else "-"

t = rows[0]["tool"]
print("\n==== MQTT -> rule -> MQTT command latency (medians of the runs; per-run values in brackets) ====")
print(open(os.path.join(out, "machine.txt")).read().rstrip())
print(f"\n{t['count']:,} measured messages per path (after {t['warmup']:,} warm-up) at"
      f" {t['rate']:,.0f}/s, QoS 1, microseconds from the publish call to the arrival at the"
      " subscriber (same process, same clock)")
keys = [("p50_us", "p50"), ("p90_us", "p90"), ("p99_us", "p99"), ("p999_us", "p99.9"),
        ("max_us", "max")]
print(f"{'path':<8} " + " ".join(f"{h:>24}" for _, h in keys) + "  arrived")
for phase in ("rule", "direct"):
    if not col(phase, "p50_us"):
        continue
    arrived = col(phase, "arrived")
    lost = sum(col(phase, "lost"))
    dup = sum(col(phase, "duplicates"))
    print(f"{phase:<8} " + " ".join(f"{cell(phase, k):>24}" for k, _ in keys) +
          f"  {'/'.join(str(a) for a in arrived)} of {t['count']} (lost {lost}, duplicates {dup})")
if col("rule", "p50_us") and col("direct", "p50_us"):
    for k, h in (("p50_us", "p50"), ("p99_us", "p99")):
        added = [a - b for a, b in zip(col("rule", k), col("direct", k))]
        ratio = [a / b for a, b in zip(col("rule", k), col("direct", k)) if b > 0]
        print(f"rule path added over direct (difference of the {h}s): {fmt(med(added))} us"
              f" [{', '.join(fmt(x) for x in added)}], ratio {med(ratio):.1f}x"
              f" [{', '.join(f'{x:.1f}' for x in ratio)}]")
# A queue that does not keep up shows as latency growing over the run: the median of the first
# and of the last tenth of each path's measured messages (from raw.txt).
def drift(r, phase):
    send, lat = {}, []
    warmup = rows[r - 1]["tool"]["warmup"]
    for line in open(os.path.join(out, f"run-{r}", "raw.txt")):
        p, seq, s, v = line.split()
        if p == phase and int(seq) >= warmup:
            lat.append((int(v) - int(s)) / 1e3 if int(v) else None)
    tenth = max(len(lat) // 10, 1)
    first = [x for x in lat[:tenth] if x is not None]
    last = [x for x in lat[-tenth:] if x is not None]
    return (med(first) if first else float("nan"), med(last) if last else float("nan"))
for phase in ("rule", "direct"):
    if col(phase, "p50_us"):
        d = [drift(r, phase) for r in range(1, runs + 1)]
        print(f"{phase} p50 of the first -> last tenth of the messages, us: " +
              ", ".join(f"{fmt(a)} -> {fmt(b)}" for a, b in d))
own50 = [x["rule"].get("latencyP50Us") for x in rows]
own99 = [x["rule"].get("latencyP99Us") for x in rows]
print(f"node's own rule latency (event queued -> output queued for the action, last minute):"
      f" p50 {own50} us, p99 {own99} us")
acts = [x["rule"].get("actionStats") for x in rows]
print(f"rule counters after each run: " + "; ".join(
    f"in {x['rule'].get('recordsIn')} out {x['rule'].get('recordsOut')} dropped {x['rule'].get('dropped')}"
    f" exceptions {x['rule'].get('exceptions')} actions {a}" for x, a in zip(rows, acts)))
lag = col("rule", "publisher_max_lag_us") + col("direct", "publisher_max_lag_us")
late = sum(col("rule", "publisher_late")) + sum(col("direct", "publisher_late"))
print(f"publisher pacing: max lag {fmt(max(lag)) if lag else '-'} us, {late} publishes more than one"
      " period late")
print("CPU over each run (both phases), s: node " +
      ", ".join(f"{x['run']['node_cpu_s']:.1f}" for x in rows) + "; mosquitto " +
      ", ".join(f"{x['run']['mosquitto_cpu_s']:.1f}" for x in rows) + "; wall " +
      ", ".join(f"{x['run']['wall_s']:.0f}" for x in rows))
print("load average before -> after: " +
      "; ".join(f"{x['run']['load_before']} -> {x['run']['load_after']}" for x in rows))
print(f"raw output in {out}")
EOF
