#!/usr/bin/env bash
# MQTT ingest rate through Mosquitto into the node vs Mosquitto's own raw pub->sub rate, in the
# same run, on the same broker, with the same messages and QoS (issue 3's target: >= 90 %).
#
#   bench/load/mqtt_ingest.sh                  # 10 devices x 20,000 readings, QoS 1
#   DEVICES=4 PER_DEVICE=5000 bench/load/mqtt_ingest.sh
#
# One broker: `verge-mqtt-bench broker` runs the node's MosquittoBroker (generated config,
# ACL, the gate) on loopback. Two subscribers with persistent sessions on devices/+/telemetry,
# QoS 1, logged in as the node's account:
#   raw   mosquitto_sub (Mosquitto's own client: receive, PUBACK, print to /dev/null);
#   node  verge-mqtt-bench sub: the node's MqttSubscriber into a sink that only counts
#         (SINK=noop, default) or that also runs the node's payload parser (SINK=parse).
# Phases:
#   1. queued: with both subscribers away, verge-devsim publishes DEVICES x PER_DEVICE
#      messages (one reading each) at full speed, QoS 1; the broker queues every message in
#      both sessions. Then each subscriber in turn drains its session: the rate is the number
#      of messages over the subscriber's wall time (connect included). This is the delivery
#      path alone, not limited by the publisher: the capacity comparison.
#   2. live: each subscriber in turn is connected while verge-devsim publishes at LIVE_RATE
#      messages/s per device (default 2,000: 20,000/s in all); the rate is messages over the
#      time until the subscriber got the last one. Both should keep up with the publisher.
#      (Unpaced, the publisher outruns the broker on a busy 2-core machine and gives up on
#      acknowledgements after 5 s.)
# Output: one line per measurement and the node/raw ratios; raw JSON stays in $OUT.
#
# Needs a build with verge-devsim and verge-mqtt-bench (BIN, default build/bin; use a Release
# build: sanitizers slow the node's side only), mosquitto, mosquitto_sub, python3.
# It kills only the processes it started (by pid).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/build/bin}
DEVICES=${DEVICES:-10}
PER_DEVICE=${PER_DEVICE:-20000}
SINK=${SINK:-noop}
LIVE_RATE=${LIVE_RATE:-2000}
SUB_TIMEOUT=${SUB_TIMEOUT:-180}  # seconds a subscriber may wait for its messages
TOTAL=$((DEVICES * PER_DEVICE))
OUT=${OUT:-$(mktemp -d /tmp/verge-mqtt-bench-XXXXXX)}
PY=${PY:-$(command -v python3)}

for tool in "$BIN/verge-devsim" "$BIN/verge-mqtt-bench" "$(command -v mosquitto_sub || true)"; do
  [[ -x "$tool" ]] || { echo "mqtt_ingest.sh: missing $tool" >&2; exit 1; }
done

PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BROKER_PID=
LIVE_PID=
cleanup() {
  if [[ -n "$LIVE_PID" ]] && kill -0 "$LIVE_PID" 2>/dev/null; then kill -TERM "$LIVE_PID"; fi
  if [[ -n "$BROKER_PID" ]] && kill -0 "$BROKER_PID" 2>/dev/null; then
    kill -TERM "$BROKER_PID"
    wait "$BROKER_PID" 2>/dev/null || true
  fi
}
trap cleanup EXIT

device_flags=()
for ((i = 0; i < DEVICES; i++)); do device_flags+=(--device "bench$i=token-bench$i"); done

"$BIN/verge-mqtt-bench" broker --work-dir "$OUT/mqtt" --listen "127.0.0.1:$PORT" \
  --account-out "$OUT/account.json" "${device_flags[@]}" 2>"$OUT/broker.err" &
BROKER_PID=$!
for _ in $(seq 1 200); do [[ -s "$OUT/account.json" ]] && break; sleep 0.05; done
[[ -s "$OUT/account.json" ]] || { cat "$OUT/broker.err" >&2; exit 1; }
field() { "$PY" -c "import json,sys; print(json.load(open('$OUT/account.json'))['$1'])"; }
USER_=$(field username)
PASS_=$(field password)
NODE_ID=$(field client_id)
RAW_ID=bench-raw

now_ns() { date +%s%N; }
rate() { "$PY" -c "print(round($1 * 1e9 / $2))"; }

raw_sub() {  # extra mosquitto_sub flags...
  mosquitto_sub -h 127.0.0.1 -p "$PORT" -u "$USER_" -P "$PASS_" -i "$RAW_ID" -c -q 1 \
    -t 'devices/+/telemetry' -W "$SUB_TIMEOUT" "$@"
}
node_sub() {
  "$BIN/verge-mqtt-bench" sub --broker "127.0.0.1:$PORT" --username "$USER_" --password "$PASS_" \
    --client-id "$NODE_ID" --count "$TOTAL" --sink "$SINK" --timeout "${SUB_TIMEOUT}s" "$@"
}
publish() {  # log-name rate
  "$BIN/verge-devsim" mqtt --broker "127.0.0.1:$PORT" --count "$PER_DEVICE" --rate "$2" \
    --batch 1 --qos 1 "${device_flags[@]}" >"$OUT/$1.json" 2>"$OUT/$1.err"
  local accepted
  accepted=$("$PY" -c "import json; print(json.load(open('$OUT/$1.json'))['accepted'])")
  if [[ "$accepted" != "$TOTAL" ]]; then
    echo "mqtt_ingest.sh: devsim: only $accepted of $TOTAL acknowledged ($OUT/$1.json)" >&2
    exit 1
  fi
}

# The raw subscriber's session (the node's was made by the broker's gate).
raw_sub -E

echo "MQTT ingest, $DEVICES devices x $PER_DEVICE messages (1 reading each), QoS 1, sink=$SINK"

# Phase 1: queued.
t0=$(now_ns); publish queued-pub 0; t1=$(now_ns)
pub_rate=$(rate "$TOTAL" $((t1 - t0)))
t0=$(now_ns); raw_sub -C "$TOTAL" >/dev/null; t1=$(now_ns)
raw_q=$(rate "$TOTAL" $((t1 - t0)))
t0=$(now_ns); node_sub >"$OUT/queued-node.json"; t1=$(now_ns)
node_q=$(rate "$TOTAL" $((t1 - t0)))
echo "queued: publish ${pub_rate} msg/s; drain: raw mosquitto_sub ${raw_q} msg/s, node ${node_q} msg/s"

# Phase 2: live, one subscriber at a time (the other's session queues; drained afterwards).
live() {  # name command... ; sets live_rate
  local name=$1
  shift
  "$@" >"$OUT/live-$name.out" &
  LIVE_PID=$!
  sleep 0.5  # connected before the publisher starts (messages would queue anyway)
  local start
  start=$(now_ns)
  publish "live-$name-pub" "$LIVE_RATE"
  wait "$LIVE_PID"
  LIVE_PID=
  live_rate=$(rate "$TOTAL" $(($(now_ns) - start)))
}
live raw raw_sub -C "$TOTAL"
raw_l=$live_rate
node_sub >/dev/null  # drain what queued for the node meanwhile
live node node_sub
node_l=$live_rate
raw_sub -C "$TOTAL" >/dev/null
echo "live at $((LIVE_RATE * DEVICES)) msg/s offered: raw mosquitto_sub ${raw_l} msg/s, node ${node_l} msg/s"

"$PY" - "$raw_q" "$node_q" "$raw_l" "$node_l" <<'EOF'
import sys
raw_q, node_q, raw_l, node_l = map(float, sys.argv[1:])
print(f"node/raw: queued {100 * node_q / raw_q:.0f} %, live {100 * node_l / raw_l:.0f} % "
      "(target >= 90 %)")
EOF
echo "raw output in $OUT"
