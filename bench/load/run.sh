#!/usr/bin/env bash
# Reproduces the end-to-end numbers of docs/BENCHMARKS.md with one command:
#
#   bench/load/run.sh              # full run (1k/5k/10k links, 3 runs each), ≈ 13 min on 2 vCPUs
#   QUICK=1 bench/load/run.sh      # smoke run, a few minutes
#
# It starts its own verge-cloud in a fresh temporary directory, on loopback only, pinned to
# CPU $CLOUD_CPU with one I/O thread (the target is "one cloud process, ≤1 core"), and drives
# it with build/bin/verge-loadgen. Phases:
#   1. verge-node idle RSS: $NODE_RUNS real verge-node processes join and idle; VmRSS after
#      $NODE_RSS_WAIT s on the link.
#   2. joins/s: $RUNS runs, each joining MAX/RUNS fresh nodes (together they make the MAX
#      identities the later phases reuse).
#   3. saturation: $RUNS runs of $SAT_NODES links at $SAT_HB heartbeats, load tool pinned to
#      CPU $LOADGEN_CPU.
#   4. links: $RUNS runs, each on a freshly started cloud process (same data dir): connect up to
#      each of $STEPS links at $HB heartbeats and measure one $WINDOW window per step: cloud CPU
#      (/proc/PID/task/*/schedstat, and utime+stime from /proc/PID/stat), cloud VmRSS,
#      heartbeats/s, and bytes on the link port (an nftables counter on lo, IP+TCP headers
#      included, both directions).
# Runs that would end past $BUDGET seconds are skipped (the log says which).
# It prints a summary (medians) at the end; raw JSON per run stays in $OUT.
#
# Needs: root for nftables (otherwise phase 4 skips the bytes), python3, curl, taskset.
# It kills only the processes it started (by pid) and deletes only its own nftables table.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/build/bin}
PY=${PY:-$(command -v python3)}
if [[ "${QUICK:-0}" == 1 ]]; then
  : "${STEPS:=200,500}" "${HB:=5s}" "${WINDOW:=10s}" "${SETTLE:=6s}" "${SAT_NODES:=200}" "${SAT_HB:=20ms}"
  : "${SAT_WINDOW:=10s}"
  : "${NODE_RSS_WAIT:=10}"
  : "${RUNS:=3}" "${NODE_RUNS:=1}"
fi
RUNS=${RUNS:-3}
STEPS=${STEPS:-1000,5000,10000}
HB=${HB:-15s}
WINDOW=${WINDOW:-15s}          # a multiple of HB: every node sends the same number of heartbeats
SETTLE=${SETTLE:-16s}          # > HB: the first heartbeat (which asks for an Ack) is outside the window
RAMP=${RAMP:-1000}
JOIN_THREADS=${JOIN_THREADS:-4}
SAT_NODES=${SAT_NODES:-500}
SAT_HB=${SAT_HB:-10ms}
SAT_WINDOW=${SAT_WINDOW:-15s}
NODE_RUNS=${NODE_RUNS:-3}
NODE_RSS_WAIT=${NODE_RSS_WAIT:-30}
CLOUD_CPU=${CLOUD_CPU:-0}
LOADGEN_CPU=${LOADGEN_CPU:-1}
BUDGET=${BUDGET:-870}          # seconds; a run that would end past this is skipped (and said so)
MAX=${STEPS##*,}

for b in verge-cloud verge-node verge-loadgen; do
  [[ -x "$BIN/$b" ]] || { echo "run.sh: $BIN/$b missing; build with: cmake --build build --target benchmarks" >&2; exit 2; }
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/verge-bench.XXXXXX")
# Snapshot the binaries: a rebuild of build/ during the run must not change what is measured.
mkdir -p "$WORK/bin"
for b in verge-cloud verge-node verge-loadgen; do cp "$BIN/$b" "$WORK/bin/$b"; done
BUILT=$(cd "$BIN" && ls -l --time-style=+%FT%T verge-cloud verge-node verge-loadgen | awk '{printf "%s %s; ", $7, $6}')
BIN=$WORK/bin
OUT=${OUT:-$WORK/results}
mkdir -p "$OUT"
DATA=$WORK/cloud
NFT_TABLE=verge_bench_$$
CLOUD_PID=""
LOADGEN_PID=""
NODE_PIDS=()
T_START=$(date +%s)

log() { echo "[$(date +%H:%M:%S) +$(( $(date +%s) - T_START ))s] $*" >&2; }
elapsed() { echo $(( $(date +%s) - T_START )); }
# True if a run expected to take $1 more seconds would end past the budget.
over_budget() { (( $(elapsed) + ${1:-0} > BUDGET )); }

cleanup() {
  set +e
  [[ -n "$LOADGEN_PID" ]] && kill -TERM "$LOADGEN_PID" 2>/dev/null && reap "$LOADGEN_PID" 10
  [[ -f "$WORK/cloud.log" ]] && cp "$WORK/cloud.log" "$OUT/cloud.log"
  for p in "${NODE_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  stop_cloud
  nft delete table inet "$NFT_TABLE" 2>/dev/null
  if [[ "${KEEP:-0}" != 1 ]]; then
    [[ "$OUT" == "$WORK/results" ]] && cp -r "$OUT" "${TMPDIR:-/tmp}/verge-bench-results.$$" 2>/dev/null &&
      echo "run.sh: raw results copied to ${TMPDIR:-/tmp}/verge-bench-results.$$" >&2
    rm -rf "$WORK"
  else
    echo "run.sh: kept $WORK" >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs the load tool in the background and waits for it, so that a signal to this script is
# handled at once (and the tool is stopped by cleanup). Usage: loadgen OUT_JSON COMMAND...
loadgen() {
  local out=$1; shift
  "$@" >"$out" 2>>"$WORK/loadgen.log" &
  LOADGEN_PID=$!
  local rc=0
  wait "$LOADGEN_PID" || rc=$?
  LOADGEN_PID=""
  return "$rc"
}

# Wait (bounded) for a process to exit; SIGKILL it after the deadline.
reap() {
  local pid=$1 secs=$2
  for ((i = 0; i < secs * 10; i++)); do kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
}

start_cloud() {
  rm -f "$DATA/listen.json"
  # In $WORK, so that a core dump (if the cloud crashes) lands there and is reported.
  (cd "$WORK" && ulimit -c unlimited 2>/dev/null; exec taskset -c "$CLOUD_CPU" "$BIN/verge-cloud" \
    --data-dir "$DATA" --api-listen 127.0.0.1:0 --link-listen 127.0.0.1:0 --io-threads 1 \
    >>"$WORK/cloud.log" 2>&1) &
  CLOUD_PID=$!
  for ((i = 0; i < 200; i++)); do
    if [[ -s "$DATA/listen.json" ]] && grep -q "\"pid\":$CLOUD_PID" "$DATA/listen.json"; then
      API=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["api"])' "$DATA/listen.json")
      LINK=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["link"])' "$DATA/listen.json")
      return 0
    fi
    kill -0 "$CLOUD_PID" 2>/dev/null || { echo "run.sh: verge-cloud exited; see $WORK/cloud.log" >&2; tail -5 "$WORK/cloud.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "run.sh: verge-cloud did not write listen.json in 20 s" >&2
  exit 1
}

# Aborts the run if the cloud died (the numbers after that would be meaningless).
check_cloud() {
  if [[ -n "$CLOUD_PID" ]] && ! kill -0 "$CLOUD_PID" 2>/dev/null; then
    wait "$CLOUD_PID" 2>/dev/null; local rc=$?
    echo "run.sh: verge-cloud (pid $CLOUD_PID) died during $1 (exit status $rc); log: $OUT/cloud.log" >&2
    ls "$WORK"/core* >/dev/null 2>&1 && echo "run.sh: core dump: $(ls "$WORK"/core*)" >&2
    CLOUD_PID=""
    KEEP=1
    exit 1
  fi
}

stop_cloud() {
  [[ -n "$CLOUD_PID" ]] || return 0
  kill -TERM "$CLOUD_PID" 2>/dev/null || true
  reap "$CLOUD_PID" 20
  CLOUD_PID=""
}

api_get() {
  curl -sf --max-time 5 --cacert "$DATA/pki/ca.crt" \
    -H "Authorization: Bearer $(head -1 "$DATA/admin.token")" "https://$API$1"
}

# nftables byte counters on the link port (loopback input hook: each packet counted once).
HAVE_NFT=0
nft_setup() {
  local port=${LINK##*:}
  nft delete table inet "$NFT_TABLE" 2>/dev/null || true
  if nft add table inet "$NFT_TABLE" 2>/dev/null &&
     nft add chain inet "$NFT_TABLE" in '{ type filter hook input priority -150; policy accept; }' &&
     nft add rule inet "$NFT_TABLE" in iif lo tcp dport "$port" counter comment '"to_cloud"' &&
     nft add rule inet "$NFT_TABLE" in iif lo tcp sport "$port" counter comment '"from_cloud"'; then
    HAVE_NFT=1
  else
    HAVE_NFT=0
    log "nftables not usable (not root?): bytes on the wire are not measured"
  fi
}

# The --on-window hook: appends "<edge> <nodes> <time> <to_pkts> <to_bytes> <from_pkts> <from_bytes>".
HOOK=$WORK/window-hook.sh
cat >"$HOOK" <<EOF
#!/bin/sh
nft list table inet $NFT_TABLE 2>/dev/null | awk -v edge="\$VERGE_LOADGEN_WINDOW" -v n="\$VERGE_LOADGEN_NODES" -v t="\$(date +%s.%N)" '
  /counter packets/ { for (i = 1; i <= NF; i++) { if (\$i == "packets") p = \$(i+1); if (\$i == "bytes") b = \$(i+1) }
                      if (\$0 ~ /to_cloud/) { tp = p; tb = b } else { fp = p; fb = b } }
  END { print edge, n, t, tp + 0, tb + 0, fp + 0, fb + 0 }' >>"\$VERGE_BENCH_COUNTERS"
EOF
chmod +x "$HOOK"

# Raise the descriptor limit for the cloud and the tool (both hold one socket per link).
need=$((MAX + 4096))
if (( $(ulimit -Hn) < need )); then ulimit -Hn "$need" 2>/dev/null || true; fi
ulimit -n "$(ulimit -Hn)"
if (( $(ulimit -n) < MAX + 256 )); then
  echo "run.sh: RLIMIT_NOFILE $(ulimit -n) is too low for $MAX links" >&2
  exit 2
fi

# ---- machine -----------------------------------------------------------------------------
{
  echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'),"\
       "$(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo) RAM, kernel $(uname -r)"
  echo "openssl: $(openssl version 2>/dev/null || echo unknown)"
  echo "source: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)," \
       "$(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l) changed files in the tree; binaries built $BUILT"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "settings: RUNS=$RUNS STEPS=$STEPS HB=$HB WINDOW=$WINDOW SETTLE=$SETTLE RAMP=$RAMP JOIN_THREADS=$JOIN_THREADS SAT_NODES=$SAT_NODES SAT_HB=$SAT_HB SAT_WINDOW=$SAT_WINDOW"
} | tee "$OUT/machine.txt" >&2

start_cloud
TOKEN=$(head -1 "$DATA/bootstrap.token")
log "cloud pid $CLOUD_PID, API $API, link $LINK (pinned to CPU $CLOUD_CPU)"

# ---- 1. verge-node idle RSS (started now; read after phase 2 has run long enough) ---------
for ((i = 1; i <= NODE_RUNS; i++)); do
  mkdir -p "$WORK/node-$i"
  "$BIN/verge-node" --data-dir "$WORK/node-$i" --cloud "$LINK" --token "$TOKEN" --name "rss-node-$i" \
    --heartbeat "$HB" --log-level warn >"$WORK/node-$i.log" 2>&1 &
  NODE_PIDS+=($!)
done
NODE_UP=""
for ((i = 0; i < 300; i++)); do
  up=0
  for ((k = 1; k <= NODE_RUNS; k++)); do
    api_get "/api/v1/nodes/rss-node-$k" 2>/dev/null | grep -q '"connected":true' && up=$((up + 1))
  done
  if ((up == NODE_RUNS)); then NODE_UP=$(date +%s); break; fi
  sleep 0.2
done
[[ -n "$NODE_UP" ]] || log "warning: not all verge-node processes connected within 60 s"
check_cloud "verge-node start"

# ---- 2. joins/s ----------------------------------------------------------------------------
per=$(( (MAX + RUNS - 1) / RUNS ))
for ((r = 1; r <= RUNS; r++)); do
  first=$(( (r - 1) * per )); n=$(( MAX - first < per ? MAX - first : per ))
  log "joins run $r: $n nodes from #$first, $JOIN_THREADS threads"
  loadgen "$OUT/join-$r.json" timeout 900 "$BIN/verge-loadgen" --cloud-dir "$DATA" --nodes "$n" \
    --first-index "$first" --join-threads "$JOIN_THREADS" --join-only --work-dir "$WORK/nodes" ||
    log "joins run $r reported failures (see $OUT/join-$r.json)"
  check_cloud "joins run $r"
done

if [[ -n "$NODE_UP" ]]; then
  left=$(( NODE_UP + NODE_RSS_WAIT - $(date +%s) ))
  ((left > 0)) && sleep "$left"
  : >"$OUT/node-rss.txt"
  for ((i = 1; i <= NODE_RUNS; i++)); do
    p=${NODE_PIDS[$((i - 1))]}
    echo "rss-node-$i $(awk '/^(VmRSS|VmHWM|RssAnon|RssFile):/ {printf "%s=%s ", $1, $2}' "/proc/$p/status")" \
      "$(awk '/^Pss:/ {printf "Pss:=%s ", $2}' "/proc/$p/smaps_rollup")connected_for=$(( $(date +%s) - NODE_UP ))s" >>"$OUT/node-rss.txt"
  done
fi
for p in "${NODE_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${NODE_PIDS[@]}"; do reap "$p" 10; done
NODE_PIDS=()

# ---- 3. saturation (on the cloud of phases 1-2) ------------------------------------------
last=0
for ((r = 1; r <= RUNS; r++)); do
  if over_budget "$last"; then log "budget of ${BUDGET}s: skipping saturation run $r"; continue; fi
  t0=$(date +%s)
  log "saturation run $r: $SAT_NODES links at $SAT_HB"
  loadgen "$OUT/sat-$r.json" timeout 600 taskset -c "$LOADGEN_CPU" "$BIN/verge-loadgen" --cloud-dir "$DATA" \
    --reuse --work-dir "$WORK/nodes" --nodes "$SAT_NODES" --heartbeat "$SAT_HB" --settle 3s \
    --duration "$SAT_WINDOW" --ramp-per-sec "$RAMP" || log "saturation run $r reported problems (see $OUT/sat-$r.json)"
  check_cloud "saturation run $r"
  last=$(( $(date +%s) - t0 ))
done

# ---- 4. links at 15 s heartbeats: CPU, RSS, bytes per step --------------------------------
last=0
for ((r = 1; r <= RUNS; r++)); do
  if over_budget "$last"; then log "budget of ${BUDGET}s: skipping links run $r"; continue; fi
  t0=$(date +%s)
  stop_cloud
  start_cloud
  nft_setup
  export VERGE_BENCH_COUNTERS=$OUT/counters-$r.txt
  : >"$VERGE_BENCH_COUNTERS"
  hook=""; ((HAVE_NFT)) && hook=$HOOK
  log "links run $r: steps $STEPS at $HB (cloud pid $CLOUD_PID)"
  loadgen "$OUT/links-$r.json" timeout 1200 "$BIN/verge-loadgen" --cloud-dir "$DATA" --reuse \
    --work-dir "$WORK/nodes" --nodes "$MAX" --steps "$STEPS" --heartbeat "$HB" --settle "$SETTLE" \
    --duration "$WINDOW" --ramp-per-sec "$RAMP" ${hook:+--on-window "$hook"} ||
    log "links run $r reported problems (see $OUT/links-$r.json)"
  check_cloud "links run $r"
  nft delete table inet "$NFT_TABLE" 2>/dev/null || true
  last=$(( $(date +%s) - t0 ))
done

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/machine.txt" >&2
stop_cloud

# ---- summary -------------------------------------------------------------------------------
"$PY" - "$OUT" "$HB" <<'EOF'
import glob, json, os, re, statistics, sys

out, hb = sys.argv[1], sys.argv[2]
def load(pattern):
    res = []
    for f in sorted(glob.glob(os.path.join(out, pattern))):
        try:
            res.append(json.load(open(f)))
        except Exception:
            pass
    return res
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def fmt(x, nd=1):
    return "n/a" if x is None else f"{x:,.{nd}f}"
def runs(xs):
    return "[" + ", ".join(fmt(x) for x in xs) + "]"

print("\n==== verge benchmark summary (medians; per-run values in brackets) ====")
print(open(os.path.join(out, "machine.txt")).read().rstrip())

p = os.path.join(out, "node-rss.txt")
if os.path.exists(p):
    text = open(p).read()
    col = lambda k: [int(m) / 1024 for m in re.findall(k + r":=(\d+)", text)]
    secs = min(int(x) for x in re.findall(r"connected_for=(\d+)s", text) or ["0"])
    print(f"\nverge-node idle ({secs} s or more on the link), MiB:"
          f" VmRSS {fmt(med(col('VmRSS')), 2)} {runs(col('VmRSS'))} (target <= 5 MB);"
          f" of which RssAnon {fmt(med(col('RssAnon')), 2)}, RssFile {fmt(med(col('RssFile')), 2)}; Pss {fmt(med(col('Pss')), 2)}")

joins = load("join-*.json")
if joins:
    j = [x["join"] for x in joins]
    jps = [x["joins_per_sec"] for x in j]
    cms = [1000 * x["cloud_cpu_seconds"] / x["joined"] if x.get("joined") and "cloud_cpu_seconds" in x else None for x in j]
    lms = [1000 * x["loadgen_cpu_seconds"] / x["joined"] if x.get("joined") else None for x in j]
    print(f"\njoins/s (end to end, {j[0]['threads']} join threads): {fmt(med(jps))}  {runs(jps)}")
    print(f"  cloud CPU per join: {fmt(med(cms), 2)} ms {runs(cms)}; load tool CPU per join: {fmt(med(lms), 2)} ms {runs(lms)}")
    print(f"  join latency p50: {fmt(med([x['latency_ms'].get('p50') for x in j]))} ms; failures: {sum(x['failed'] for x in j)}")

links = load("links-*.json")
counters = {}
for f in sorted(glob.glob(os.path.join(out, "counters-*.txt"))):
    r = re.search(r"counters-(\d+)", f).group(1)
    rows = [l.split() for l in open(f) if l.strip()]
    d = {}
    for row in rows:
        edge, n, t, tp, tb, fp, fb = row[0], int(row[1]), float(row[2]), *map(int, row[3:7])
        d.setdefault(n, {})[edge] = (t, tp, tb, fp, fb)
    counters[r] = d
if links:
    steps = sorted({s["nodes"] for x in links for s in x.get("steps", [])})
    print(f"\nlinks at {hb} heartbeats, one window per step per run (cloud pinned to one CPU, 1 I/O thread):")
    base = [x["join"].get("cloud_rss_kb_before") for x in links]
    print(f"  cloud RSS after start, 0 links ({links[0]['nodes']} registered): {fmt(med(base)/1024 if med(base) else None)} MiB {runs([b/1024 for b in base if b])}")
    for n in steps:
        ws, cs = [], []
        for x in links:
            for s in x.get("steps", []):
                if s["nodes"] == n:
                    ws.append(s["window"]); cs.append(s["connect"])
        cpu = [w.get("cloud_cpu_percent_schedstat", w.get("cloud_cpu_percent")) for w in ws]
        tick = [w.get("cloud_cpu_percent") for w in ws]
        rss = [w.get("cloud_rss_kb") for w in ws]
        per1k_rss = [(w["cloud_rss_kb"] - b) / n * 1000 / 1024 for w, b in zip(ws, base) if w.get("cloud_rss_kb") and b]
        per1k_cpu = [c / n * 1000 for c in cpu if c is not None]
        hbs = [w.get("cloud_heartbeats_per_sec") for w in ws]
        conn = [w.get("connected_min") for w in ws]
        cps = [c.get("connects_per_sec") for c in cs]
        ccpu = [1000 * c["cloud_cpu_seconds"] / c["connected"] if c.get("connected") and "cloud_cpu_seconds" in c else None for c in cs]
        lcpu = [w.get("loadgen_cpu_percent") for w in ws]
        print(f"  {n:>6} links: connected(min) {runs(conn)}; cloud CPU {fmt(med(cpu), 2)}% of a core {runs(cpu)};"
              f" per 1k links {fmt(med(per1k_cpu), 3)}% (schedstat; utime+stime: {fmt(med(tick), 2)}%)")
        print(f"          cloud RSS {fmt(med(rss)/1024 if med(rss) else None)} MiB {runs([x/1024 for x in rss if x])};"
              f" per 1k links (above the 0-link baseline) {fmt(med(per1k_rss))} MiB {runs(per1k_rss)}")
        print(f"          heartbeats/s received {fmt(med(hbs))} {runs(hbs)}; load tool CPU {fmt(med(lcpu), 2)}%")
        print(f"          connect phase: {fmt(med(cps))} links/s {runs(cps)}, cloud CPU per link setup {fmt(med(ccpu), 2)} ms {runs(ccpu)}")
        if not all(c.get("complete") for c in cs):
            print(f"          WARNING: not all links connected before the window in some runs: {[c.get('connected') for c in cs]} of {[c.get('wanted') for c in cs]}")
        bpm, up, down, pk = [], None, None, None
        for r, d in counters.items():
            e = d.get(n, {})
            if "begin" in e and "end" in e:
                t0, tp0, tb0, fp0, fb0 = e["begin"]; t1, tp1, tb1, fp1, fb1 = e["end"]
                mins = (t1 - t0) / 60
                bpm.append(((tb1 - tb0) + (fb1 - fb0)) / n / mins)
                if r == "1":
                    pk = ((tp1 - tp0) + (fp1 - fp0)) / n / mins
                    up = (tb1 - tb0) / n / mins; down = (fb1 - fb0) / n / mins
        if bpm:
            print(f"          bytes on the wire per link per minute (IP+TCP, both ways): {fmt(med(bpm))} {runs(bpm)}"
                  f" (run 1: {fmt(up)} up, {fmt(down)} down, {fmt(pk, 2)} packets); target 750")

sats = load("sat-*.json")
if sats:
    ws = [x["steps"][-1]["window"] for x in sats if x.get("steps")]
    hbs = [w.get("cloud_heartbeats_per_sec") for w in ws]
    cpu = [w.get("cloud_cpu_percent") for w in ws]
    us = [10000 * c / h if c and h else None for c, h in zip(cpu, hbs)]
    lcpu = [w.get("loadgen_cpu_percent") for w in ws]
    print(f"\nsaturation ({sats[0]['nodes']} links at {sats[0]['heartbeat_ms']} ms, load tool pinned to its own CPU):")
    print(f"  heartbeats/s received by the cloud: {fmt(med(hbs))} {runs(hbs)} (offered {fmt(med([w.get('heartbeats_offered_per_sec') for w in ws]))})")
    print(f"  cloud CPU {fmt(med(cpu))}% of a core {runs(cpu)}; load tool CPU {fmt(med(lcpu))}% {runs(lcpu)}")
    print(f"  cloud CPU per heartbeat: {fmt(med(us), 1)} us {runs(us)} -> {fmt(1e6 / med(us) if med(us) else None, 0)} heartbeats/s per cloud core")
EOF
log "done in $(elapsed)s; raw results in $OUT"
