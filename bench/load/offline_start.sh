#!/usr/bin/env bash
# Offline start (issue 6): how long a node that boots with no link takes until all its local
# work runs again from its own disk. Setup: a cloud and one node with a device, a streaming
# rule, a native app and a Lua function; then the cloud goes away for good and the node's host
# "reboots" (the agent and every workload are killed with SIGKILL). Measured from the agent's
# exec to each of: the local API answering, GET /status saying autonomous, the device's reading
# accepted (POST /data 200), the rule running, and both app replicas running (native: a new
# process; function: loaded). RUNS reboots; medians at the end.
#
#   bench/load/offline_start.sh            # 5 reboots
#   RUNS=10 bench/load/offline_start.sh
#
# Needs root (native workloads run in their own cgroup as `nobody`), python3, curl.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/build/bin}
RUNS=${RUNS:-5}
for b in verge-cloud verge-node vergectl; do
  [[ -x "$BIN/$b" ]] || { echo "offline_start.sh: $BIN/$b missing; build with: make build" >&2; exit 2; }
done
WORK=$(mktemp -d "${TMPDIR:-/tmp}/verge-offline.XXXXXX")
chmod 711 "$WORK"
MARK="verge-offline-bench-$$"
CLOUD_PID=""
NODE_PID=""
cleanup() {
  set +e
  [[ -n "$NODE_PID" ]] && kill -KILL "$NODE_PID" 2>/dev/null
  [[ -n "$CLOUD_PID" ]] && kill -KILL "$CLOUD_PID" 2>/dev/null
  pkill -KILL -f "$MARK" 2>/dev/null
  [[ "${KEEP:-0}" == 1 ]] || rm -rf "$WORK"
}
trap cleanup EXIT
now_ms() { date +%s%3N; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }

"$BIN/verge-cloud" --data-dir "$WORK/cloud" --api-listen 127.0.0.1:0 --link-listen 127.0.0.1:0 \
  --log-level warn >"$WORK/cloud.log" 2>&1 &
CLOUD_PID=$!
for _ in $(seq 1 200); do [[ -s "$WORK/cloud/listen.json" ]] && break; sleep 0.05; done
LINK=$(json 'd["link"]' <"$WORK/cloud/listen.json")
CTL=("$BIN/vergectl" --config "$WORK/cloud/vergectl.yaml")
TOKEN=$(cat "$WORK/cloud/bootstrap.token")
cat >"$WORK/node.yaml" <<EOF
reconnectInitial: 200ms
reconnectMax: 2s
appsOnExit: keep
mqttListen: "off"
EOF
start_node() {
  rm -f "$WORK/node/listen.json"
  "$BIN/verge-node" --data-dir "$WORK/node" --cloud "$LINK" --name bench-node --labels site=bench \
    --http-listen 127.0.0.1:0 --config "$WORK/node.yaml" "$@" >>"$WORK/node.log" 2>&1 &
  NODE_PID=$!
}
start_node --token "$TOKEN"
for _ in $(seq 1 400); do [[ -s "$WORK/node/listen.json" ]] && break; sleep 0.05; done
for _ in $(seq 1 400); do "${CTL[@]}" nodes get bench-node >/dev/null 2>&1 && break; sleep 0.05; done
DEV_TOKEN=$("${CTL[@]}" devices add meter --node bench-node -o json | json 'd["token"]')
cat >"$WORK/docs.yaml" <<EOF
apiVersion: verge/v1
kind: Rule
metadata: {name: hot}
spec:
  nodeSelector: {site: bench}
  sql: "SELECT device_id, temp FROM telemetry WHERE temp > 80"
  actions:
    - log: {}
---
apiVersion: verge/v1
kind: App
metadata: {name: keeper}
spec:
  type: native
  command: ["/bin/sh", "-c", "while true; do sleep 1; done", "$MARK"]
---
apiVersion: verge/v1
kind: App
metadata: {name: double}
spec:
  type: function
  source: "function handle(e) return {v = e.v * 2} end"
EOF
"${CTL[@]}" apply -f "$WORK/docs.yaml" >/dev/null
API=$(json 'd["http"]' <"$WORK/node/listen.json")
LOCAL=$(cat "$WORK/node/data/local.token")
for _ in $(seq 1 600); do
  n=$(curl -s "http://$API/status" | json 'sum(1 for a in d["apps"] if a["status"] in ("running","ready"))' 2>/dev/null || echo 0)
  [[ "$n" == 2 ]] && break
  sleep 0.1
done
[[ "$n" == 2 ]] || { echo "apps did not start; see $WORK/node.log" >&2; KEEP=1; exit 1; }
# The cloud goes away for good.
kill -KILL "$CLOUD_PID"; CLOUD_PID=""

echo "offline start: $RUNS reboots; $(nproc) CPUs; $(uname -r); binaries $(ls -l --time-style=+%FT%T "$BIN/verge-node" | awk '{print $6}')" >&2
results=()
for run in $(seq 1 "$RUNS"); do
  # The reboot: the agent and every workload (and its supervisor: everything in the node's
  # cgroups) die at once.
  kill -KILL "$NODE_PID"; pkill -KILL -f "$MARK" || true
  find /sys/fs/cgroup -path '*verge/bench-node*' -name cgroup.procs -exec cat {} + 2>/dev/null |
    xargs -r kill -KILL 2>/dev/null || true
  sleep 0.5
  t0=$(now_ms)
  start_node
  api_ms="" auto_ms="" data_ms="" rule_ms="" apps_ms=""
  while true; do
    t=$(( $(now_ms) - t0 ))
    (( t > 60000 )) && { echo "run $run: timed out" >&2; break; }
    if [[ -z "$api_ms" ]]; then
      [[ -s "$WORK/node/listen.json" ]] || { sleep 0.005; continue; }
      API=$(json 'd["http"]' <"$WORK/node/listen.json")
      curl -sf "http://$API/healthz" >/dev/null 2>&1 || { sleep 0.005; continue; }
      api_ms=$t
    fi
    st=$(curl -s "http://$API/status")
    [[ -z "$auto_ms" && "$(echo "$st" | json 'd["linkState"]')" == autonomous ]] && auto_ms=$t
    if [[ -z "$data_ms" ]]; then
      code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $DEV_TOKEN" \
        -d "{\"metric\":\"temp\",\"value\":20,\"timestamp\":$(now_ms)}" "http://$API/data")
      [[ "$code" == 200 ]] && data_ms=$t
    fi
    if [[ -z "$rule_ms" ]]; then
      rs=$(curl -s -H "Authorization: Bearer $LOCAL" "http://$API/rules" | json '[r["status"] for r in d if r["name"]=="hot"][0]' 2>/dev/null || true)
      [[ "$rs" == running ]] && rule_ms=$t
    fi
    if [[ -z "$apps_ms" ]]; then
      n=$(echo "$st" | json 'sum(1 for a in d["apps"] if a["status"] in ("running","ready"))' 2>/dev/null || echo 0)
      [[ "$n" == 2 ]] && apps_ms=$t
    fi
    [[ -n "$auto_ms" && -n "$data_ms" && -n "$rule_ms" && -n "$apps_ms" ]] && break
    sleep 0.005
  done
  all=$(printf '%s\n' "$api_ms" "$auto_ms" "$data_ms" "$rule_ms" "$apps_ms" | sort -n | tail -1)
  echo "run $run: api ${api_ms} ms, autonomous ${auto_ms} ms, ingest ${data_ms} ms, rule ${rule_ms} ms, apps ${apps_ms} ms; all local work ${all} ms" >&2
  results+=("$api_ms $auto_ms $data_ms $rule_ms $apps_ms $all")
done
printf '%s\n' "${results[@]}" | python3 -c '
import sys, statistics
rows = [list(map(int, l.split())) for l in sys.stdin if l.strip()]
names = ["api", "autonomous", "ingest", "rule", "apps", "all local work"]
print("medians over %d reboots (ms): " % len(rows) + ", ".join(
    "%s %d" % (n, statistics.median(r[i] for r in rows)) for i, n in enumerate(names)))'
