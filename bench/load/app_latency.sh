#!/usr/bin/env bash
# Apply -> running latency of apps across many real verge-nodes (issue 5's target: p99 <= 300 ms).
#
# Starts one verge-cloud and NODES verge-nodes on 127.0.0.1 (each its own data dir, MQTT off),
# then, RUNS times for each app type (function, native): applies an app with one replica on
# every node (antiAffinity to itself), and measures for each replica the time from just before
# the PUT to when the cloud received the node's report that the replica runs (the placement's
# reportedMs: statuses are written through as they arrive). Then deletes the app and waits until
# every node stopped it. Prints the per-run p50/p99/max and the median over runs.
#
# Native replicas need root (cgroups, namespaces). Knobs: NODES (100) RUNS (3) BIN (build/bin)
# TYPES ("function native"). Needs python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-build/bin}
NODES=${NODES:-100}
RUNS=${RUNS:-3}
TYPES=${TYPES:-function native}
PY=${PY:-python3}
# shellcheck source=bench/load/dataplane_common.sh
source bench/load/dataplane_common.sh

dp_snapshot app-latency verge-cloud verge-node vergectl
CLOUD_DIR=$WORK/cloud
API_PORT=$(dp_free_port)
LINK_PORT=$(dp_free_port)
NODE_PIDS=()
cleanup() {
  for p in "${NODE_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${NODE_PIDS[@]}"; do dp_reap "$p" 20; done
  dp_cleanup
}
trap cleanup EXIT
chmod o+x "$WORK"

cat >"$WORK/cloud.yaml" <<EOF
appReconcileInterval: 2s
EOF
rm -f "$CLOUD_DIR/listen.json"
mkdir -p "$CLOUD_DIR"
"$BIN/verge-cloud" --config "$WORK/cloud.yaml" --data-dir "$CLOUD_DIR" \
  --api-listen "127.0.0.1:$API_PORT" --link-listen "127.0.0.1:$LINK_PORT" >>"$CLOUD_DIR.log" 2>&1 &
DP_CLOUD_PID=$!
API=127.0.0.1:$API_PORT
dp_wait_cloud
TOKEN=$(head -1 "$CLOUD_DIR/bootstrap.token")
cat >"$WORK/node.yaml" <<EOF
heartbeat: 5s
mqttListen: "off"
appsOnExit: stop
EOF
dp_log "starting $NODES verge-nodes"
for ((i = 1; i <= NODES; i++)); do
  name=$(printf 'n%03d' "$i")
  "$BIN/verge-node" --config "$WORK/node.yaml" --data-dir "$WORK/$name" \
    --cloud "127.0.0.1:$LINK_PORT" --token "$TOKEN" --name "$name" --http-listen 127.0.0.1:0 \
    >>"$WORK/$name.log" 2>&1 &
  NODE_PIDS+=($!)
done
for ((t = 0; t < 600; t++)); do
  online=$(dp_api /api/v1/status | dp_json 'd["online"]' 2>/dev/null || echo 0)
  [[ "$online" -ge "$NODES" ]] && break
  sleep 0.2
done
[[ "$online" -ge "$NODES" ]] || dp_die "only $online of $NODES nodes online"
dp_log "$NODES nodes online (load $(dp_load))"

doc() {  # TYPE NAME
  local spec
  if [[ $1 == function ]]; then
    spec='"type": "function", "source": "function handle(e) return e end"'
  else
    spec='"type": "native", "command": ["/bin/sh", "-c", "while true; do sleep 10; done"]'
  fi
  printf '{"apiVersion": "verge/v1", "kind": "App", "metadata": {"name": "%s"}, "spec": {%s, "replicas": %d, "placement": {"antiAffinity": ["%s"]}}}' \
    "$2" "$spec" "$NODES" "$2"
}

put() {  # NAME BODY
  curl -sS --fail-with-body --cacert "$CLOUD_DIR/pki/ca.crt" \
    -H "Authorization: Bearer $(head -1 "$CLOUD_DIR/admin.token")" -X PUT \
    --data-binary "$2" "https://$API/api/v1/apps/$1" >/dev/null
}
del() {
  curl -sS --fail-with-body --cacert "$CLOUD_DIR/pki/ca.crt" \
    -H "Authorization: Bearer $(head -1 "$CLOUD_DIR/admin.token")" -X DELETE \
    "https://$API/api/v1/apps/$1" >/dev/null
}

RESULTS=()
for type in $TYPES; do
  for ((r = 1; r <= RUNS; r++)); do
    name="lat-$type-$r"
    t0=$(($(date +%s%N) / 1000000))
    put "$name" "$(doc "$type" "$name")"
    ok=0
    for ((t = 0; t < 600; t++)); do
      ready=$(dp_api "/api/v1/apps/$name" | dp_json 'sum(1 for p in d["placements"] if p["status"] in ("running", "ready"))')
      if [[ "$ready" -ge "$NODES" ]]; then ok=1; break; fi
      sleep 0.1
    done
    [[ $ok == 1 ]] || dp_die "$name: only $ready of $NODES replicas running after 60 s"
    line=$(dp_api "/api/v1/apps/$name" | "$PY" -c '
import json, sys
t0 = int(sys.argv[1])
d = json.load(sys.stdin)
lat = sorted(p["reportedMs"] - t0 for p in d["placements"])
q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))]
print(f"{q(0.5)} {q(0.99)} {lat[-1]}")' "$t0")
    read -r p50 p99 max <<<"$line"
    dp_log "$type run $r: p50 ${p50} ms, p99 ${p99} ms, max ${max} ms over $NODES replicas (load $(dp_load))"
    RESULTS+=("$type $p50 $p99 $max")
    del "$name"
    for ((t = 0; t < 600; t++)); do
      left=$(dp_api /api/v1/apps | dp_json 'len(d)')
      [[ "$left" == 0 ]] && break
      sleep 0.1
    done
    sleep 2  # nodes stop the replicas
  done
done

echo
echo "apply -> running across $NODES nodes, $RUNS runs each (ms): type p50 p99 max"
for type in $TYPES; do
  printf '%s\n' "${RESULTS[@]}" | awk -v t="$type" '$1 == t' | sort -n -k3 |
    awk -v n="$RUNS" '{a[NR] = $0} END {print "median run by p99: " a[int((n + 1) / 2)]}'
done
echo "machine: $(nproc) CPUs, $(uname -r); binaries built $BUILT"
