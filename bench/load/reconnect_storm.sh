#!/usr/bin/env bash
# Reconnect storm (issue 6): NODES simulated nodes (verge-loadgen, the node's own link code)
# hold their links to one verge-cloud; the cloud is killed with SIGKILL and started again on
# the same addresses; the tool measures how long until every link is back (50/90/99/100 %),
# and the new cloud's CPU time and peak RSS over that time. RUNS runs, each with NODES links.
#
#   bench/load/reconnect_storm.sh                  # 2,000 links, 3 runs
#   NODES=500 RUNS=1 bench/load/reconnect_storm.sh
#
# Nodes use the agent's reconnect backoff (first retry 1 s, doubling, capped at RECONNECT_MAX
# 30 s by default in the tool, jittered over [d/2, d]), so the storm is spread the way a real
# fleet's would be. Loopback only; it kills only the processes it started.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/build/bin}
NODES=${NODES:-2000}
RUNS=${RUNS:-3}
HB=${HB:-15s}
DOWN=${DOWN:-2}   # seconds the cloud stays down
for b in verge-cloud verge-loadgen; do
  [[ -x "$BIN/$b" ]] || { echo "reconnect_storm.sh: $BIN/$b missing; build with: cmake --build build --target benchmarks verge-cloud" >&2; exit 2; }
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/verge-storm.XXXXXX")
mkdir -p "$WORK/bin"
cp "$BIN/verge-cloud" "$BIN/verge-loadgen" "$WORK/bin/"
BIN=$WORK/bin
DATA=$WORK/cloud
CLOUD_PID=""
cleanup() {
  set +e
  [[ -n "$CLOUD_PID" ]] && kill -KILL "$CLOUD_PID" 2>/dev/null
  if [[ -f "$DATA/listen.json" ]]; then
    pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$DATA/listen.json" 2>/dev/null)
    [[ -n "$pid" ]] && kill -KILL "$pid" 2>/dev/null
  fi
  [[ "${KEEP:-0}" == 1 ]] || rm -rf "$WORK"
}
trap cleanup EXIT

start_cloud() {
  rm -f "$DATA/listen.json"
  "$BIN/verge-cloud" --data-dir "$DATA" --api-listen "127.0.0.1:${API_PORT:-0}" \
    --link-listen "127.0.0.1:${LINK_PORT:-0}" --log-level warn >>"$WORK/cloud.log" 2>&1 &
  CLOUD_PID=$!
  for _ in $(seq 1 200); do [[ -s "$DATA/listen.json" ]] && return 0; sleep 0.05; done
  echo "cloud did not start; see $WORK/cloud.log" >&2
  exit 1
}

start_cloud
API_PORT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api"].rsplit(":",1)[1])' "$DATA/listen.json")
LINK_PORT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["link"].rsplit(":",1)[1])' "$DATA/listen.json")

# The restart command loadgen runs: SIGKILL, DOWN seconds of outage, a new cloud on the same ports.
cat >"$WORK/restart.sh" <<EOF
#!/usr/bin/env bash
set -e
pid=\$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$DATA/listen.json")
kill -KILL "\$pid"
while kill -0 "\$pid" 2>/dev/null; do sleep 0.05; done
sleep $DOWN
rm -f "$DATA/listen.json"
"$BIN/verge-cloud" --data-dir "$DATA" --api-listen "127.0.0.1:$API_PORT" \
  --link-listen "127.0.0.1:$LINK_PORT" --log-level warn >>"$WORK/cloud.log" 2>&1 &
for _ in \$(seq 1 400); do [[ -s "$DATA/listen.json" ]] && exit 0; sleep 0.05; done
exit 1
EOF
chmod +x "$WORK/restart.sh"

echo "reconnect storm: $NODES links, $RUNS runs, cloud down ${DOWN}s; $(nproc) CPUs; $(uname -r)" >&2
for run in $(seq 1 "$RUNS"); do
  extra=()
  [[ $run -gt 1 ]] && extra=(--reuse)
  "$BIN/verge-loadgen" --cloud-dir "$DATA" --nodes "$NODES" --work-dir "$WORK/ids" \
    --heartbeat "$HB" --duration 1s --settle 1s --ramp-per-sec 500 --io-threads 1 \
    --storm "$WORK/restart.sh" "${extra[@]}" >"$WORK/run$run.json" 2>"$WORK/run$run.log" || true
  python3 - "$WORK/run$run.json" "$run" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
s = d.get("storm", {})
print(f"run {sys.argv[2]}: links {s.get('links')} back {s.get('seconds_until_back')} "
      f"all_back {s.get('all_back')} cloud_cpu_s {s.get('cloud_cpu_seconds')} "
      f"peak_cpu_1s {s.get('cloud_peak_cpu_percent_1s')}% "
      f"peak_rss_kb {s.get('cloud_peak_rss_kb')} restart_s {s.get('restart_seconds')}")
PY
done
