#!/usr/bin/env bash
# Drain after an outage (issue 3: "buffer 1 hour at 10k readings/s with the cloud down, then
# time the drain; target <= 40 s"):
#
#   bench/load/drain.sh                      # 3 runs of 10 devices x 3,600,000 readings (1 kHz, 1 h)
#   RUNS=1 PER_DEVICE=360000 bench/load/drain.sh           # a 6-minute outage, for a quick look
#   BATCH_MAX_READINGS=50000 bench/load/drain.sh           # node knobs (see below)
#
# Each run starts from nothing in a fresh temporary directory, on 127.0.0.1 with random free
# ports: a verge-cloud, a verge-node joined to it, DEVICES devices declared without metrics
# (no uplink filter: every reading must reach the cloud). Then:
#   1. outage: the cloud is stopped (SIGTERM) and verge-devsim posts DEVICES x PER_DEVICE readings
#      to the node's /data as fast as the node takes them (--rate 0, BATCH readings per NDJSON
#      request), on the simulated clock: reading i of a device is stamped START + i x INTERVAL,
#      round-robin over METRICS. Defaults: 10 devices x 1 kHz (INTERVAL=1ms) x 3,600,000
#      readings = one hour of 10,000 readings/s, 36,000,000 readings.
#      Ingest time = devsim's wall time; the node then closes its last batch; the node's data dir
#      is measured (du) once every reading is in a closed uplink batch.
#   2. drain: the cloud is started again on the same data dir and ports. A poller (every
#      POLL_MS) records when the cloud wrote listen.json ("cloud up"), when the node's link is
#      up ("link up": the time of the node's "link up" log line, ms precision; the poller's view
#      of /stats if there is none), and when the node's uplink buffer is empty with every
#      batch acknowledged and the cloud's readingsStored equals what the node accepted
#      ("drained"). Acks come only after the cloud's commit, so "drained" means committed in
#      the cloud. CPU of both processes over the drain comes from /proc/PID/stat, per thread too,
#      with the time the busiest thread ran, waited for a CPU, or was blocked (schedstat).
#   3. check: after the cloud's compaction has caught up, the readings of every device are
#      counted in the cloud (GET /api/v1/telemetry?agg=count&step=1h) and compared with what
#      the node accepted; duplicates, resends, drops and bad batches are reported.
# A summary (medians of the runs) is printed at the end; per-run JSON stays in $OUT.
#
# Knobs (environment): RUNS, DEVICES, PER_DEVICE, INTERVAL, METRICS, BATCH, CONNECTIONS (devsim
# keep-alive connections; default 0 = devsim's default), START (first timestamp: a duration
# meaning that long ago, RFC 3339 or epoch ms; default 65m), SEED; the node's settings
# BATCH_MAX_READINGS, BATCH_MAX_AGE, RECONNECT_MAX (empty: the node's defaults, 10000, 1s, 30s);
# DRAIN_TIMEOUT (s), POLL_MS, KEEP=1 (keep the temporary directory), BIN, OUT.
#
# Needs a build with verge-cloud, verge-node, vergectl and verge-devsim (BIN, default
# build/bin; use an optimised build), python3, curl. About 2 GB of free disk per run for the
# defaults (the node's local time-series holds every reading). It kills only the processes it
# started (by pid).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/build/bin}
PY=${PY:-$(command -v python3)}
RUNS=${RUNS:-3}
DEVICES=${DEVICES:-10}
PER_DEVICE=${PER_DEVICE:-3600000}
INTERVAL=${INTERVAL:-1ms}
METRICS=${METRICS:-temperature,humidity}
BATCH=${BATCH:-1000}
CONNECTIONS=${CONNECTIONS:-0}
START=${START:-65m}
SEED=${SEED:-1}
BATCH_MAX_READINGS=${BATCH_MAX_READINGS:-}
BATCH_MAX_AGE=${BATCH_MAX_AGE:-}
RECONNECT_MAX=${RECONNECT_MAX:-}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-1800}
POLL_MS=${POLL_MS:-50}
TOTAL=$((DEVICES * PER_DEVICE))

# shellcheck source=bench/load/dataplane_common.sh
source "$ROOT/bench/load/dataplane_common.sh"
dp_snapshot drain verge-cloud verge-node vergectl verge-devsim
OUT=${OUT:-$WORK/results}
mkdir -p "$OUT"

cleanup() {
  dp_cleanup
  if [[ "${KEEP:-0}" != 1 ]]; then
    if [[ "$OUT" == "$WORK/results" ]]; then
      cp -r "$OUT" "${TMPDIR:-/tmp}/verge-drain-results.$$" 2>/dev/null &&
        echo "drain.sh: results copied to ${TMPDIR:-/tmp}/verge-drain-results.$$" >&2
    fi
    rm -rf "$WORK"
  else
    echo "drain.sh: kept $WORK" >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The drain poller: prints one JSON object with the times (ns since the epoch) and CPU samples.
cat >"$WORK/poll.py" <<'EOF'
import json, os, ssl, sys, time, urllib.request

(cloud_pid, node_pid, cloud_dir, stats_url, local_token, api, total, timeout_s,
 poll_ms) = sys.argv[1:]
cloud_pid, node_pid, total = int(cloud_pid), int(node_pid), int(total)
hz = os.sysconf("SC_CLK_TCK")
ctx = ssl.create_default_context(cafile=os.path.join(cloud_dir, "pki", "ca.crt"))
admin = open(os.path.join(cloud_dir, "admin.token")).readline().strip()

def cpu(pid):
    """user+system seconds of the process and of each thread (by name and tid), and per thread
    the seconds it ran and waited on a run queue (schedstat): a thread that was runnable but
    not running waited for a CPU, the rest of its time it was blocked or asleep."""
    def ticks(path):
        s = open(path).read()
        name = s[s.index("(") + 1:s.rindex(")")]
        f = s[s.rindex(")") + 2:].split()
        return name, (int(f[11]) + int(f[12])) / hz
    _, total_s = ticks(f"/proc/{pid}/stat")
    threads, sched = {}, {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name, t = ticks(f"/proc/{pid}/task/{tid}/stat")
            threads[f"{name}/{tid}"] = t
            run_ns, wait_ns = open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[:2]
            sched[f"{name}/{tid}"] = [int(run_ns) / 1e9, int(wait_ns) / 1e9]
        except (OSError, ValueError):
            pass
    return {"total": total_s, "threads": threads, "sched": sched}

def get(url, headers, context=None):
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=10, context=context) as r:
        return json.load(r)

def stats():
    return get(stats_url, {"Authorization": "Bearer " + local_token})

def status():
    return get(f"https://{api}/api/v1/status", {"Authorization": "Bearer " + admin}, ctx)

ev = {}
samples = []
deadline = time.time() + float(timeout_s)
listen = os.path.join(cloud_dir, "listen.json")
while time.time() < deadline:
    now = time.time_ns()
    if "cloud_up" not in ev:
        try:
            if json.load(open(listen)).get("pid") == cloud_pid:
                ev["cloud_up"] = now
                ev["cpu_cloud_up"] = {"cloud": cpu(cloud_pid), "node": cpu(node_pid)}
        except (OSError, ValueError):
            pass
    try:
        s = stats()
    except Exception:
        s = None
    if s is not None:
        if "link_up" not in ev and s["uplink"]["connected"]:
            ev["link_up"] = now
            ev["cpu_link_up"] = {"cloud": cpu(cloud_pid), "node": cpu(node_pid)}
        b = s["buffer"]
        if "link_up" in ev and (not samples or now - samples[-1][0] >= 1e9):
            samples.append([now, b["batches"], b["readings"], s["uplink"]["acked"]])
        if "link_up" in ev and b["batches"] == 0 and b["journalEntries"] == 0:
            try:
                c = status()
            except Exception:
                c = None
            if c is not None and c["readingsStored"] >= total:
                ev["drained"] = now
                ev["cpu_drained"] = {"cloud": cpu(cloud_pid), "node": cpu(node_pid)}
                ev["node_stats"] = s
                ev["cloud_status"] = c
                break
    time.sleep(int(poll_ms) / 1000)
ev["samples"] = samples
print(json.dumps(ev))
EOF

NODE_NAME=drain-node
{
  echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'),"\
       "$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)"
  echo "source: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)," \
       "$(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l) changed files in the tree; binaries built $BUILT"
  echo "settings: RUNS=$RUNS DEVICES=$DEVICES PER_DEVICE=$PER_DEVICE INTERVAL=$INTERVAL METRICS=$METRICS" \
       "BATCH=$BATCH CONNECTIONS=$CONNECTIONS START=$START SEED=$SEED" \
       "BATCH_MAX_READINGS=${BATCH_MAX_READINGS:-default} BATCH_MAX_AGE=${BATCH_MAX_AGE:-default}" \
       "RECONNECT_MAX=${RECONNECT_MAX:-default} POLL_MS=$POLL_MS"
  echo "load average at start: $(dp_load)"
} | tee "$OUT/machine.txt" >&2

for ((r = 1; r <= RUNS; r++)); do
  RUN=$WORK/run-$r
  mkdir -p "$RUN"
  CLOUD_DIR=$RUN/cloud
  NODE_DIR=$RUN/node
  NODE_CONFIG=$RUN/node.yaml
  {
    echo "mqttListen: \"off\""
    [[ -n "$BATCH_MAX_READINGS" ]] && echo "batchMaxReadings: $BATCH_MAX_READINGS"
    [[ -n "$BATCH_MAX_AGE" ]] && echo "batchMaxAge: $BATCH_MAX_AGE"
    [[ -n "$RECONNECT_MAX" ]] && echo "reconnectMax: $RECONNECT_MAX"
    true
  } >"$NODE_CONFIG"
  API_PORT=$(dp_free_port)
  LINK_PORT=$(dp_free_port)
  NODE_HTTP_PORT=$(dp_free_port)
  res=$OUT/run-$r
  mkdir -p "$res"

  dp_start_cloud
  dp_wait_cloud
  dp_start_node
  dp_wait_stats "d['uplink']['connected']" 60 "the node's link"
  dp_add_devices "$DEVICES" "" "$RUN/devices.json"
  dp_log "run $r: cloud $DP_CLOUD_PID, node $DP_NODE_PID with $DEVICES devices; stopping the cloud"
  dp_stop_cloud

  # ---- 1. outage: ingest --------------------------------------------------------------
  load_before=$(dp_load)
  node_cpu0=$(dp_cpu_s "$DP_NODE_PID")
  t0=$(dp_now_ns)
  extra=()
  ((CONNECTIONS > 0)) && extra=(--connections "$CONNECTIONS")
  dp_devsim "$res/devsim.json" "$RUN/devices.json" --count "$PER_DEVICE" --rate 0 \
    --batch "$BATCH" --format ndjson --metrics "$METRICS" --seed "$SEED" --start "$START" \
    --interval "$INTERVAL" "${extra[@]}" ||
    dp_die "devsim failed: $(cat "$res/devsim.json" "$res/devsim.json.err")"
  t1=$(dp_now_ns)
  accepted=$(dp_json "d['accepted']" <"$res/devsim.json")
  [[ "$accepted" == "$TOTAL" ]] || dp_die "the node accepted $accepted of $TOTAL readings: $(cat "$res/devsim.json")"
  dp_wait_stats "d['buffer']['journalEntries'] == 0 and d['buffer']['readings'] == $TOTAL" 1800 \
    "the node to batch every reading"
  t2=$(dp_now_ns)
  node_cpu1=$(dp_cpu_s "$DP_NODE_PID")
  load_ingest=$(dp_load)
  dp_stats >"$res/stats-before.json"
  # -l: each file is counted, also when the directory's total already counted it.
  du -sbl "$NODE_DIR/data" "$NODE_DIR"/data/buffer.db* "$NODE_DIR"/data/series.db* >"$res/du.txt"
  dp_log "run $r: ingest $(( (t1 - t0) / 1000000 )) ms, batched after $(( (t2 - t0) / 1000000 )) ms; $(awk 'NR==1 {print $1}' "$res/du.txt") bytes in the node's data dir"

  # ---- 2. drain -----------------------------------------------------------------------
  load_drain_before=$(dp_load)
  dp_start_cloud
  "$PY" "$WORK/poll.py" "$DP_CLOUD_PID" "$DP_NODE_PID" "$CLOUD_DIR" \
    "http://127.0.0.1:$NODE_HTTP_PORT/stats" "$LOCAL_TOKEN" "$API" "$TOTAL" "$DRAIN_TIMEOUT" \
    "$POLL_MS" >"$res/drain.json"
  load_drain_after=$(dp_load)
  grep -q '"drained"' "$res/drain.json" || dp_die "not drained within $DRAIN_TIMEOUT s: $(dp_stats)"
  dp_log "run $r: drained; load $load_drain_after"

  # ---- 3. check -----------------------------------------------------------------------
  t3=$(dp_now_ns)
  for ((i = 0; i < 3000; i++)); do
    st=$(dp_api /api/v1/status)
    [[ "$(dp_json "d['readingsCompacted'] >= $TOTAL" <<<"$st")" == True ]] && break
    sleep 0.2
  done
  t4=$(dp_now_ns)
  echo "$st" >"$res/status-after.json"
  : >"$res/counts.txt"
  for ((i = 0; i < DEVICES; i++)); do
    n=$(dp_api "/api/v1/telemetry?device=dev$i&from=0&step=1h&agg=count&limit=100000" |
      dp_json "int(sum(p['value'] for p in d))")
    echo "dev$i $n" >>"$res/counts.txt"
  done
  dp_stats >"$res/stats-after.json"
  # Warnings and errors, but the node's expected "link down" while the cloud was stopped.
  warn_cloud=$(grep -c -E ' (warning|error|critical) ' "$CLOUD_DIR.log" || true)
  warn_node=$(grep -E ' (warning|error|critical) ' "$NODE_DIR.log" | grep -c -v 'link down' || true)
  cat >"$res/run.json" <<EOF2
{"run": $r, "total": $TOTAL, "per_device": $PER_DEVICE, "t_ingest_start": $t0, "t_ingest_end": $t1,
 "t_batched": $t2, "t_compact_wait_start": $t3, "t_compacted": $t4,
 "node_cpu_ingest_s": $(awk -v a="$node_cpu0" -v b="$node_cpu1" 'BEGIN {print b - a}'),
 "cloud_exec_ns": $DP_CLOUD_EXEC_NS,
 "load": {"ingest_before": "$load_before", "ingest_after": "$load_ingest",
          "drain_before": "$load_drain_before", "drain_after": "$load_drain_after"},
 "log_problems": {"cloud": $warn_cloud, "node": $warn_node}}
EOF2
  cp "$CLOUD_DIR.log" "$res/cloud.log"
  cp "$NODE_DIR.log" "$res/node.log"
  dp_stop_node
  dp_stop_cloud
  [[ "${KEEP:-0}" == 1 ]] || rm -rf "$RUN"
done
echo "load average at end: $(dp_load)" | tee -a "$OUT/machine.txt" >&2

# ---- summary ------------------------------------------------------------------------------
"$PY" - "$OUT" <<'EOF'
import datetime, glob, json, os, statistics, sys

out = sys.argv[1]
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def fmt(x, nd=1):
    return "n/a" if x is None else f"{x:,.{nd}f}"
def runs(xs, nd=1):
    return "[" + ", ".join(fmt(x, nd) for x in xs) + "]"

rows = []
for d in sorted(glob.glob(os.path.join(out, "run-*"))):
    try:
        run = json.load(open(os.path.join(d, "run.json")))
        drain = json.load(open(os.path.join(d, "drain.json")))
        dev = json.load(open(os.path.join(d, "devsim.json")))
    except (OSError, ValueError):
        continue
    du = {l.split()[1].rsplit("/", 1)[-1]: int(l.split()[0]) for l in open(os.path.join(d, "du.txt"))}
    counts = {l.split()[0]: int(l.split()[1]) for l in open(os.path.join(d, "counts.txt"))}
    before = json.load(open(os.path.join(d, "stats-before.json")))
    after = json.load(open(os.path.join(d, "stats-after.json")))
    status = json.load(open(os.path.join(d, "status-after.json")))
    total = run["total"]
    # The node logs "link up" with ms precision (local time, as this machine's clock): more
    # precise than the poller, which sees it up to one poll interval later.
    link_up_log = None
    for line in open(os.path.join(d, "node.log")):
        if " link up" in line:
            t = datetime.datetime.strptime(line[:23], "%Y-%m-%dT%H:%M:%S.%f").timestamp() * 1e9
            if t >= run["cloud_exec_ns"] - 1e9:
                link_up_log = t
                break
    link_up = min(drain["link_up"], link_up_log) if link_up_log else drain["link_up"]
    # CPU is over link up -> drained (at least one poll interval: never a division by 0).
    secs = max((drain["drained"] - drain["link_up"]) / 1e9, 0.01)
    def cpu_pct(who):
        return 100 * (drain["cpu_drained"][who]["total"] - drain["cpu_link_up"][who]["total"]) / secs
    def threads(who):
        ta, tb = drain["cpu_link_up"][who]["threads"], drain["cpu_drained"][who]["threads"]
        return {k: round(100 * (tb[k] - ta.get(k, 0)) / secs, 1) for k in tb if tb[k] - ta.get(k, 0) > 0.05}
    def busiest(who):
        """The thread that ran most: % of the drain running, waiting for a CPU, and neither."""
        sa, sb = drain["cpu_link_up"][who].get("sched", {}), drain["cpu_drained"][who].get("sched", {})
        d = {k: [sb[k][0] - sa.get(k, [0, 0])[0], sb[k][1] - sa.get(k, [0, 0])[1]] for k in sb}
        if not d:
            return None
        k = max(d, key=lambda x: d[x][0])
        run, wait = 100 * d[k][0] / secs, 100 * d[k][1] / secs
        return f"{k}: running {run:.0f} %, runnable but waiting for a CPU {wait:.0f} %, blocked/asleep {max(0, 100 - run - wait):.0f} %"
    r = {
        "run": run["run"],
        "ingest_s": (run["t_ingest_end"] - run["t_ingest_start"]) / 1e9,
        "ingest_rate": total / ((run["t_ingest_end"] - run["t_ingest_start"]) / 1e9),
        "batched_s": (run["t_batched"] - run["t_ingest_start"]) / 1e9,
        "node_cpu_ingest_s": run["node_cpu_ingest_s"],
        "raw_bytes": dev.get("bytes"),
        "data_dir": du.get("data"),
        "buffer_db": sum(v for k, v in du.items() if k.startswith("buffer.db")),
        "series_db": sum(v for k, v in du.items() if k.startswith("series.db")),
        "batch_bytes": before["buffer"]["bytes"],
        "batches": before["buffer"]["batches"],
        "start_s": (drain["cloud_up"] - run["cloud_exec_ns"]) / 1e9,
        "up_to_link_s": (link_up - drain["cloud_up"]) / 1e9,
        "link_from_log": link_up_log is not None,
        "drain_from_up_s": (drain["drained"] - drain["cloud_up"]) / 1e9,
        "drain_from_link_s": (drain["drained"] - link_up) / 1e9,
        "cloud_cpu": cpu_pct("cloud"),
        "node_cpu": cpu_pct("node"),
        "cloud_threads": threads("cloud"),
        "node_threads": threads("node"),
        "cloud_busiest": busiest("cloud"),
        "node_busiest": busiest("node"),
        "compacted_s": (run["t_compacted"] - drain["drained"]) / 1e9,
        "cloud_count": sum(counts.values()),
        "count_mismatch": {k: v for k, v in counts.items() if v != run["per_device"]},
        "readings_stored": drain["cloud_status"]["readingsStored"],
        "batches_stored": drain["cloud_status"]["batchesStored"],
        "batches_duplicate": status["batchesDuplicate"],
        "bad_batches": status["badBatches"],
        "resent": after["uplink"]["resent"],
        "ack_timeouts": after["uplink"]["ackTimeouts"],
        "dropped": after["buffer"]["dropped"],
        "rejected": after["ingest"]["rejected"],
        "load": run["load"],
        "log_problems": run["log_problems"],
        "total": total,
    }
    r["drain_rate"] = total / max(r["drain_from_link_s"], 0.01)
    r["drain_rate_up"] = total / max(r["drain_from_up_s"], 0.01)
    rows.append(r)

print("\n==== drain after an outage (medians; per-run values in brackets) ====")
print(open(os.path.join(out, "machine.txt")).read().rstrip())
if not rows:
    sys.exit("no complete run")
col = lambda k: [r[k] for r in rows]
total = rows[0]["total"]
print(f"\nreadings: {total:,} (raw NDJSON bodies devsim sent: {fmt(med(col('raw_bytes')) / 1e6 if med(col('raw_bytes')) else None)} MB)")
print(f"ingest (cloud down): {fmt(med(col('ingest_s')))} s {runs(col('ingest_s'))} = {fmt(med(col('ingest_rate')), 0)} readings/s;"
      f" all batched after {fmt(med(col('batched_s')))} s {runs(col('batched_s'))}; node CPU {fmt(med(col('node_cpu_ingest_s')))} s")
print(f"buffered on the node: {fmt(med(col('batch_bytes')) / 2**20)} MiB of compressed batches {runs([x / 2**20 for x in col('batch_bytes')])}"
      f" in {fmt(med(col('batches')), 0)} batches; data dir {fmt(med(col('data_dir')) / 2**20)} MiB {runs([x / 2**20 for x in col('data_dir')])}"
      f" (buffer.db* {fmt(med(col('buffer_db')) / 2**20)} MiB, series.db* {fmt(med(col('series_db')) / 2**20)} MiB)")
print(f"cloud start (exec -> listen.json): {fmt(med(col('start_s')), 2)} s {runs(col('start_s'), 2)};"
      f" cloud up -> node link up: {fmt(med(col('up_to_link_s')), 2)} s {runs(col('up_to_link_s'), 2)}")
print(f"DRAIN from link up ({'node log' if all(col('link_from_log')) else 'poller'}): {fmt(med(col('drain_from_link_s')), 2)} s {runs(col('drain_from_link_s'), 2)}"
      f" = {fmt(med(col('drain_rate')), 0)} readings/s {runs(col('drain_rate'), 0)}; target <= 40 s")
print(f"DRAIN from cloud up: {fmt(med(col('drain_from_up_s')), 2)} s {runs(col('drain_from_up_s'), 2)}"
      f" = {fmt(med(col('drain_rate_up')), 0)} readings/s")
print(f"CPU during the drain (link up -> drained), % of one core: cloud {fmt(med(col('cloud_cpu')))} {runs(col('cloud_cpu'))},"
      f" node {fmt(med(col('node_cpu')))} {runs(col('node_cpu'))}")
for r in rows:
    print(f"  run {r['run']} threads, % of a core: cloud {r['cloud_threads']}; node {r['node_threads']}")
    print(f"    busiest node thread {r['node_busiest']}; busiest cloud thread {r['cloud_busiest']}")
print(f"cloud compaction caught up {fmt(med(col('compacted_s')))} s after the drain {runs(col('compacted_s'))}")
for r in rows:
    ok = r["cloud_count"] == r["total"] and not r["count_mismatch"] and r["readings_stored"] == r["total"]
    print(f"  run {r['run']}: cloud count {r['cloud_count']:,} of {r['total']:,} ({'exact' if ok else 'MISMATCH ' + str(r['count_mismatch'])});"
          f" readingsStored {r['readings_stored']:,}, batches {r['batches_stored']:,}, duplicates {r['batches_duplicate']},"
          f" bad {r['bad_batches']}, node resent {r['resent']}, ack timeouts {r['ack_timeouts']}, dropped {r['dropped']},"
          f" rejected {r['rejected']}; log warnings cloud {r['log_problems']['cloud']}, node {r['log_problems']['node']}; load {r['load']}")
EOF
dp_log "raw results in $OUT"
