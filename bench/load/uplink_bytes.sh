#!/usr/bin/env bash
# Bytes on the node->cloud link per reading against the raw JSON the devices sent (issue 3: "on
# simulated signals with deadband at 0.5 % of span: target >= 20x smaller"):
#
#   sudo bench/load/uplink_bytes.sh            # 3 runs x (deadband, no filter); root for nftables
#   RUNS=1 DEVICES=5 bench/load/uplink_bytes.sh
#
# Each run measures two modes, each on a fresh verge-cloud + verge-node pair in a temporary
# directory on 127.0.0.1 (random free ports), with the same devices (names dev0..), seed and
# simulated clock, so both modes see exactly the same readings:
#   deadband  every metric declared with its span (min/max) and uplink {deadbandPct: DEADBAND}
#   none      the same metrics and spans, no uplink filter (compression alone)
# In each mode, verge-devsim posts DEVICES x PER_DEVICE readings (round-robin over METRICS,
# reading i of a device stamped START + i x INTERVAL, fixed SEED; NDJSON, BATCH readings per
# request, RATE readings/s per device, 0 = as fast as the node takes them) while the cloud is up;
# the window ends when the node has every batch acknowledged.
# Counted:
#   raw JSON   the NDJSON request bodies devsim sent ("bytes" of its summary: one
#              {"metric":..,"value":..,"timestamp":<ms>} object and a newline per reading, no
#              device_id: the token names the device); beside it the IP-level bytes to the
#              node's HTTP port (headers, responses and TCP included), for context.
#   payload    the node's /stats pipeline.bytesCompressed: the zstd ReadingBatch bytes of the
#              uplink batches (bytesRaw: the same before compression).
#   wire       nftables counters on lo for the link port (every packet once, IP and TCP
#              headers, TLS records, WebSocket frames, UplinkBatch envelopes, the cloud's acks
#              and TCP ACKs): node->cloud and both directions, minus the idle traffic
#              (heartbeats) at the rate measured over IDLE_S seconds just before the window.
# Everything is divided by the readings the node accepted (not by those the filter passed), so
# "per reading" is per reading produced.
#
# Knobs (environment): RUNS, DEVICES, PER_DEVICE, INTERVAL, METRICS, DEADBAND (% of span),
# BATCH, RATE, START, SEED, IDLE_S, MODES (default "deadband none"), the node's BATCH_MAX_AGE and
# BATCH_MAX_READINGS (empty: its defaults, 1s and 10000), KEEP=1, BIN, OUT.
#
#   RATE=5 BATCH=5 PER_DEVICE=1500 bench/load/uplink_bytes.sh   # real time: 5 min, 100 readings/s
#
# The default (RATE=0) produces the hour as fast as the node takes it, so batches are large (they
# close at 10,000 readings, or 1 s after they opened): the best case for compression. Paced at
# the simulated rate (RATE = 1 / INTERVAL), a batch closes every batchMaxAge with what that
# time brought: what a node sends in steady operation.
# Needs verge-cloud, verge-node, vergectl, verge-devsim (BIN, default build/bin), python3, curl,
# nft (root) for the wire bytes. It kills only the processes it started (by pid) and deletes
# only its own nftables table.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/build/bin}
PY=${PY:-$(command -v python3)}
RUNS=${RUNS:-3}
DEVICES=${DEVICES:-20}
INTERVAL=${INTERVAL:-200ms}   # 5 metrics round-robin: each metric once a second
PER_DEVICE=${PER_DEVICE:-18000}  # 1 h of simulated time at 200 ms
METRICS=${METRICS:-temperature,humidity,pressure,voltage,current}
DEADBAND=${DEADBAND:-0.5}
BATCH=${BATCH:-500}
RATE=${RATE:-0}
START=${START:-65m}
SEED=${SEED:-1}
IDLE_S=${IDLE_S:-45}
MODES=${MODES:-deadband none}
BATCH_MAX_AGE=${BATCH_MAX_AGE:-}
BATCH_MAX_READINGS=${BATCH_MAX_READINGS:-}
TOTAL=$((DEVICES * PER_DEVICE))

# shellcheck source=bench/load/dataplane_common.sh
source "$ROOT/bench/load/dataplane_common.sh"
dp_snapshot uplink-bytes verge-cloud verge-node vergectl verge-devsim
OUT=${OUT:-$WORK/results}
mkdir -p "$OUT"

cleanup() {
  dp_cleanup
  if [[ "${KEEP:-0}" != 1 ]]; then
    if [[ "$OUT" == "$WORK/results" ]]; then
      cp -r "$OUT" "${TMPDIR:-/tmp}/verge-uplink-bytes-results.$$" 2>/dev/null &&
        echo "uplink_bytes.sh: results copied to ${TMPDIR:-/tmp}/verge-uplink-bytes-results.$$" >&2
    fi
    rm -rf "$WORK"
  else
    echo "uplink_bytes.sh: kept $WORK" >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The device spec of a mode: every metric with the span verge-devsim keeps it in (the presets
# of src/devsim/signal.cc), as floats without a unit (no conversion), and in mode "deadband"
# uplink {deadbandPct: DEADBAND}.
spec() {  # MODE FILE
  "$PY" - "$1" "$METRICS" "$DEADBAND" >"$2" <<'EOF'
import json, sys
mode, metrics, deadband = sys.argv[1], sys.argv[2].split(","), float(sys.argv[3])
spans = {  # src/devsim/signal.cc, Presets(); any other name: [0, 100]
    "temperature": (-40, 125), "humidity": (0, 100), "pressure": (900, 1100), "co2": (300, 5000),
    "voltage": (200, 250), "current": (0, 100), "power": (0, 50), "flow": (0, 500),
    "vibration": (-20, 20), "level": (0, 20), "speed": (0, 3000), "position": (-1000, 1000),
    "torque": (-500, 500), "tilt": (-90, 90), "strain": (-2000, 2000), "weight": (0, 50000),
    "light": (0, 100000), "setpoint": (10, 40), "valve": (0, 100), "frequency": (49, 51),
}
aliases = {"temp": "temperature", "hum": "humidity", "rh": "humidity", "press": "pressure",
           "rpm": "speed", "freq": "frequency"}
out = []
for m in metrics:
    lo, hi = spans.get(aliases.get(m, m), (0, 100))
    spec = {"name": m, "type": "float", "min": lo, "max": hi}
    if mode == "deadband":
        spec["uplink"] = {"deadbandPct": deadband}
    out.append(spec)
print(json.dumps({"allowUndeclared": False, "metrics": out}))
EOF
}

{
  echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'),"\
       "$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)"
  echo "source: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)," \
       "$(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l) changed files in the tree; binaries built $BUILT"
  echo "settings: RUNS=$RUNS DEVICES=$DEVICES PER_DEVICE=$PER_DEVICE INTERVAL=$INTERVAL METRICS=$METRICS" \
       "DEADBAND=$DEADBAND BATCH=$BATCH RATE=$RATE START=$START SEED=$SEED IDLE_S=$IDLE_S MODES=\"$MODES\"" \
       "BATCH_MAX_AGE=${BATCH_MAX_AGE:-default} BATCH_MAX_READINGS=${BATCH_MAX_READINGS:-default}"
  echo "load average at start: $(dp_load)"
} | tee "$OUT/machine.txt" >&2

NODE_NAME=bytes-node
for ((r = 1; r <= RUNS; r++)); do
  for mode in $MODES; do
    RUN=$WORK/run-$r-$mode
    res=$OUT/run-$r-$mode
    mkdir -p "$RUN" "$res"
    CLOUD_DIR=$RUN/cloud
    NODE_DIR=$RUN/node
    NODE_CONFIG=$RUN/node.yaml
    {
      echo 'mqttListen: "off"'
      [[ -n "$BATCH_MAX_AGE" ]] && echo "batchMaxAge: $BATCH_MAX_AGE"
      [[ -n "$BATCH_MAX_READINGS" ]] && echo "batchMaxReadings: $BATCH_MAX_READINGS"
      true
    } >"$NODE_CONFIG"
    API_PORT=$(dp_free_port)
    LINK_PORT=$(dp_free_port)
    NODE_HTTP_PORT=$(dp_free_port)
    spec "$mode" "$RUN/spec.json"

    dp_start_cloud
    dp_wait_cloud
    dp_start_node
    dp_wait_stats "d['uplink']['connected']" 60 "the node's link"
    dp_add_devices "$DEVICES" "$RUN/spec.json" "$RUN/devices.json"
    dp_nft_setup "link=$LINK_PORT" "http=$NODE_HTTP_PORT"

    # Idle baseline: the link carries only heartbeats (and their rare acks).
    i0=$(dp_nft_read); ti0=$(dp_now_ns)
    sleep "$IDLE_S"
    i1=$(dp_nft_read); ti1=$(dp_now_ns)

    load_before=$(dp_load)
    w0=$(dp_nft_read); tw0=$(dp_now_ns)
    dp_devsim "$res/devsim.json" "$RUN/devices.json" --count "$PER_DEVICE" --rate "$RATE" \
      --batch "$BATCH" --format ndjson --metrics "$METRICS" --seed "$SEED" --start "$START" \
      --interval "$INTERVAL" || dp_die "devsim failed: $(cat "$res/devsim.json" "$res/devsim.json.err")"
    accepted=$(dp_json "d['accepted']" <"$res/devsim.json")
    [[ "$accepted" == "$TOTAL" ]] || dp_die "the node accepted $accepted of $TOTAL readings: $(cat "$res/devsim.json")"
    dp_wait_stats "d['buffer']['journalEntries'] == 0 and d['pipeline']['processed'] == $TOTAL and d['buffer']['batches'] == 0 and d['uplink']['inFlight'] == 0" \
      600 "every batch to be acknowledged"
    sleep 0.5  # the last ack's TCP ACK
    w1=$(dp_nft_read); tw1=$(dp_now_ns)
    load_after=$(dp_load)
    dp_stats >"$res/stats.json"
    dp_api /api/v1/status >"$res/status.json"
    : >"$res/counts.txt"
    for ((i = 0; i < DEVICES; i++)); do
      dp_api "/api/v1/telemetry?device=dev$i&from=0&step=1h&agg=count&limit=100000" |
        dp_json "' '.join(f\"{p['metric']}={int(p['value'])}\" for p in d)" | sed "s/^/dev$i /" >>"$res/counts.txt"
    done
    cat >"$res/run.json" <<EOF2
{"run": $r, "mode": "$mode", "total": $TOTAL, "idle": [$i0, $i1], "idle_ns": [$ti0, $ti1],
 "window": [$w0, $w1], "window_ns": [$tw0, $tw1], "load": ["$load_before", "$load_after"]}
EOF2
    dp_nft_teardown
    cp "$CLOUD_DIR.log" "$res/cloud.log"
    cp "$NODE_DIR.log" "$res/node.log"
    dp_stop_node
    dp_stop_cloud
    [[ "${KEEP:-0}" == 1 ]] || rm -rf "$RUN"
    dp_log "run $r $mode: done (load $load_after)"
  done
done
echo "load average at end: $(dp_load)" | tee -a "$OUT/machine.txt" >&2

# ---- summary ------------------------------------------------------------------------------
"$PY" - "$OUT" <<'EOF'
import glob, json, os, statistics, sys

out = sys.argv[1]
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def fmt(x, nd=1):
    return "n/a" if x is None else f"{x:,.{nd}f}"
def runs(xs, nd=1):
    return "[" + ", ".join(fmt(x, nd) for x in xs) + "]"

by_mode = {}
for d in sorted(glob.glob(os.path.join(out, "run-*"))):
    try:
        run = json.load(open(os.path.join(d, "run.json")))
        dev = json.load(open(os.path.join(d, "devsim.json")))
        st = json.load(open(os.path.join(d, "stats.json")))
        cs = json.load(open(os.path.join(d, "status.json")))
    except (OSError, ValueError):
        continue
    n = dev["accepted"]
    w0, w1 = run["window"]
    i0, i1 = run["idle"]
    win_s = (run["window_ns"][1] - run["window_ns"][0]) / 1e9
    idle_s = (run["idle_ns"][1] - run["idle_ns"][0]) / 1e9
    def delta(a, b, k, i):
        return b[k][i] - a[k][i] if k in a and k in b else None
    r = {"run": run["run"], "readings": n, "raw": dev["bytes"], "passed": st["pipeline"]["passed"],
         "batches": st["pipeline"]["batches"], "payload": st["pipeline"]["bytesCompressed"],
         "encoded": st["pipeline"]["bytesRaw"], "window_s": win_s,
         "stored": cs["readingsStored"], "load": run["load"]}
    per_metric = {}
    cloud_total = 0
    for line in open(os.path.join(d, "counts.txt")):
        for kv in line.split()[1:]:
            m, c = kv.split("=")
            per_metric[m] = per_metric.get(m, 0) + int(c)
            cloud_total += int(c)
    r["cloud_count"] = cloud_total
    r["per_metric"] = per_metric
    if "to_link" in w0:
        idle_up = delta(i0, i1, "to_link", 1) / idle_s
        idle_both = (delta(i0, i1, "to_link", 1) + delta(i0, i1, "from_link", 1)) / idle_s
        r["idle_Bps"] = idle_both
        r["wire_up"] = delta(w0, w1, "to_link", 1) - idle_up * win_s
        r["wire_both"] = delta(w0, w1, "to_link", 1) + delta(w0, w1, "from_link", 1) - idle_both * win_s
        r["http_ip"] = delta(w0, w1, "to_http", 1) + delta(w0, w1, "from_http", 1)
        r["http_ip_up"] = delta(w0, w1, "to_http", 1)
        r["pkts_up"] = delta(w0, w1, "to_link", 0)
    by_mode.setdefault(run["mode"], []).append(r)

print("\n==== bytes on the wire per reading vs raw JSON (medians; per-run values in brackets) ====")
print(open(os.path.join(out, "machine.txt")).read().rstrip())
for mode, rows in by_mode.items():
    col = lambda k: [r.get(k) for r in rows]
    per = lambda k: [r[k] / r["readings"] if r.get(k) is not None else None for r in rows]
    ratio = lambda k: [r["raw"] / r[k] if r.get(k) else None for r in rows]
    n = rows[0]["readings"]
    print(f"\n{mode}: {n:,} readings accepted; passed the filter {fmt(med(col('passed')), 0)} {runs(col('passed'), 0)}"
          f" ({fmt(100 * med(col('passed')) / n, 2)} %); stored in the cloud {runs(col('stored'), 0)}, counted {runs(col('cloud_count'), 0)};"
          f" {fmt(med(col('batches')), 0)} batches; window {fmt(med(col('window_s')))} s {runs(col('window_s'))}")
    print(f"  per metric passed (run 1): {rows[0]['per_metric']}")
    print(f"  raw NDJSON body: {fmt(med(per('raw')), 2)} B/reading ({fmt(med(col('raw')) / 1e6, 2)} MB);"
          f" IP-level to+from the node's HTTP port: {fmt(med(per('http_ip')), 2)} B/reading")
    print(f"  uplink payload (zstd ReadingBatch): {fmt(med(per('payload')), 3)} B/reading {runs(per('payload'), 3)}"
          f" -> {fmt(med(ratio('payload')))}x smaller than raw {runs(ratio('payload'))};"
          f" before zstd {fmt(med(per('encoded')), 3)} B/reading")
    if rows[0].get("wire_up") is not None:
        print(f"  wire node->cloud (IP+TCP+TLS+WS, idle subtracted): {fmt(med(per('wire_up')), 3)} B/reading {runs(per('wire_up'), 3)}"
              f" -> {fmt(med(ratio('wire_up')))}x smaller {runs(ratio('wire_up'))}; {fmt(med(col('pkts_up')), 0)} packets")
        print(f"  wire both directions: {fmt(med(per('wire_both')), 3)} B/reading -> {fmt(med(ratio('wire_both')))}x smaller {runs(ratio('wire_both'))};"
              f" idle link {fmt(med(col('idle_Bps')), 2)} B/s subtracted")
    for r in rows:
        if r["cloud_count"] != r["passed"] or r["stored"] != r["passed"]:
            print(f"  WARNING run {r['run']}: passed {r['passed']}, stored {r['stored']}, counted {r['cloud_count']}")
    print(f"  load average before/after each run: {[r['load'] for r in rows]}")
EOF
dp_log "raw results in $OUT"
