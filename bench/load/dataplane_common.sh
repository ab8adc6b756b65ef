# shellcheck shell=bash
# Shared by the data-plane benchmarks (bench/load/drain.sh, bench/load/uplink_bytes.sh); sourced,
# not run. It starts one verge-cloud and one verge-node on 127.0.0.1 (random free ports, a fresh
# temporary directory per run), declares devices, runs verge-devsim against the node, reads the
# node's /stats and the cloud's /api/v1/status, and counts bytes with nftables. It keeps the pid
# of every process it starts and stops only those (dp_cleanup), and deletes only its own
# nftables table.
#
# The caller sets BIN (directory with verge-cloud, verge-node, vergectl, verge-devsim) and PY
# (python3), and WORK (a fresh directory of its own, e.g. from dp_snapshot) before using the
# functions.

DP_CLOUD_PID=""
DP_NODE_PID=""
DP_DEVSIM_PID=""
DP_NFT_TABLE=verge_dpbench_$$
DP_HAVE_NFT=0

dp_log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# dp_snapshot NAME BINARY...: checks that BIN has every BINARY, makes WORK (a fresh
# $TMPDIR/verge-NAME.XXXXXX) and copies them to WORK/bin, which becomes BIN: a rebuild during the
# run must not change what is measured. Sets BUILT to their build times, for the report.
dp_snapshot() {
  local name=$1 b
  shift
  for b in "$@"; do
    [[ -x "$BIN/$b" ]] || { echo "$(basename "$0"): $BIN/$b missing" >&2; exit 2; }
  done
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/verge-$name.XXXXXX")
  mkdir -p "$WORK/bin"
  for b in "$@"; do cp "$BIN/$b" "$WORK/bin/$b"; done
  BUILT=$(cd "$BIN" && ls -l --time-style=+%FT%T "$@" | awk '{printf "%s %s; ", $7, $6}')
  BIN=$WORK/bin
}
dp_die() { echo "$(basename "$0"): $*" >&2; exit 1; }
dp_now_ns() { date +%s%N; }
dp_load() { cut -d' ' -f1-3 /proc/loadavg; }

dp_free_port() {
  "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Evaluates a Python expression on the JSON document on stdin, bound to `d`.
dp_json() { "$PY" -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }

# Waits (bounded) for a process this script started to exit; SIGKILL after the deadline.
dp_reap() {
  local pid=$1 secs=$2
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# ---- cloud --------------------------------------------------------------------------------
# Uses CLOUD_DIR, API_PORT, LINK_PORT; sets DP_CLOUD_PID, API, and DP_CLOUD_EXEC_NS (just before
# the process was started).
dp_start_cloud() {
  rm -f "$CLOUD_DIR/listen.json"
  mkdir -p "$CLOUD_DIR"
  # shellcheck disable=SC2034  # read by the caller (drain.sh: the cloud's start-up time)
  DP_CLOUD_EXEC_NS=$(dp_now_ns)
  "$BIN/verge-cloud" --data-dir "$CLOUD_DIR" --api-listen "127.0.0.1:$API_PORT" \
    --link-listen "127.0.0.1:$LINK_PORT" --log-level "${CLOUD_LOG_LEVEL:-info}" \
    >>"$CLOUD_DIR.log" 2>&1 &
  DP_CLOUD_PID=$!
  API=127.0.0.1:$API_PORT
}

# Waits until the cloud started by dp_start_cloud wrote its listen.json.
dp_wait_cloud() {
  for ((i = 0; i < 600; i++)); do
    if [[ -s "$CLOUD_DIR/listen.json" ]] && grep -q "\"pid\":$DP_CLOUD_PID" "$CLOUD_DIR/listen.json"; then
      return 0
    fi
    kill -0 "$DP_CLOUD_PID" 2>/dev/null || { tail -5 "$CLOUD_DIR.log" >&2; dp_die "verge-cloud exited"; }
    sleep 0.05
  done
  dp_die "verge-cloud did not write listen.json in 30 s"
}

dp_stop_cloud() {
  [[ -n "$DP_CLOUD_PID" ]] || return 0
  kill -TERM "$DP_CLOUD_PID" 2>/dev/null || true
  dp_reap "$DP_CLOUD_PID" 60
  DP_CLOUD_PID=""
}

dp_api() {  # PATH
  curl -sf --max-time 60 --cacert "$CLOUD_DIR/pki/ca.crt" \
    -H "Authorization: Bearer $(head -1 "$CLOUD_DIR/admin.token")" "https://$API$1"
}

dp_ctl() { "$BIN/vergectl" --config "$CLOUD_DIR/vergectl.yaml" "$@"; }

# ---- node ---------------------------------------------------------------------------------
# Uses NODE_DIR, NODE_NAME, NODE_HTTP_PORT, LINK_PORT and NODE_CONFIG (a YAML file, may be
# empty); joins with the cloud's bootstrap token on the first start. Sets DP_NODE_PID and
# LOCAL_TOKEN once the node's local API answers.
dp_start_node() {
  mkdir -p "$NODE_DIR"
  local token_flag=()
  [[ -f "$NODE_DIR/identity/identity.json" ]] || token_flag=(--token "$(head -1 "$CLOUD_DIR/bootstrap.token")")
  "$BIN/verge-node" --config "$NODE_CONFIG" --data-dir "$NODE_DIR" --cloud "127.0.0.1:$LINK_PORT" \
    --name "$NODE_NAME" --http-listen "127.0.0.1:$NODE_HTTP_PORT" --log-level "${NODE_LOG_LEVEL:-info}" \
    "${token_flag[@]}" >>"$NODE_DIR.log" 2>&1 &
  DP_NODE_PID=$!
  for ((i = 0; i < 600; i++)); do
    if [[ -s "$NODE_DIR/data/local.token" ]]; then
      LOCAL_TOKEN=$(head -1 "$NODE_DIR/data/local.token")
      dp_stats >/dev/null 2>&1 && return 0
    fi
    kill -0 "$DP_NODE_PID" 2>/dev/null || { tail -5 "$NODE_DIR.log" >&2; dp_die "verge-node exited"; }
    sleep 0.1
  done
  dp_die "verge-node's local API did not answer in 60 s"
}

dp_stop_node() {
  [[ -n "$DP_NODE_PID" ]] || return 0
  kill -TERM "$DP_NODE_PID" 2>/dev/null || true
  dp_reap "$DP_NODE_PID" 60
  DP_NODE_PID=""
}

dp_stats() {
  curl -sf --max-time 30 -H "Authorization: Bearer $LOCAL_TOKEN" "http://127.0.0.1:$NODE_HTTP_PORT/stats"
}

# Polls until the Python expression over the node's /stats (bound to `d`) is true.
dp_wait_stats() {  # EXPR TIMEOUT_S WHAT
  local deadline=$(($(date +%s) + $2))
  while (($(date +%s) < deadline)); do
    [[ "$(dp_stats 2>/dev/null | dp_json "$1" 2>/dev/null)" == True ]] && return 0
    kill -0 "$DP_NODE_PID" 2>/dev/null || dp_die "verge-node exited while waiting for $3"
    sleep 0.2
  done
  dp_die "timed out after $2 s waiting for $3 (node stats: $(dp_stats 2>/dev/null))"
}

# Declares dev0..dev<N-1> on the node (with the spec file SPEC if not empty), writes their
# tokens to OUT (vergectl's JSON, one object per device) and waits until the node applied them.
dp_add_devices() {  # N SPEC OUT
  local n=$1 spec=$2 out=$3 i
  : >"$out"
  for ((i = 0; i < n; i++)); do
    if [[ -n "$spec" ]]; then
      dp_ctl devices add "dev$i" --node "$NODE_NAME" -f "$spec" -o json >>"$out"
    else
      dp_ctl devices add "dev$i" --node "$NODE_NAME" -o json >>"$out"
    fi
  done
  dp_wait_stats "d['desiredState']['appliedVersion'] >= $n" 60 "the node to apply $n devices"
}

# verge-devsim http against the node; its summary line goes to OUT. Extra flags follow.
dp_devsim() {  # OUT DEVICES_JSON flags...
  local out=$1 devices=$2
  shift 2
  "$BIN/verge-devsim" --log-level warn http --url "http://127.0.0.1:$NODE_HTTP_PORT/data" \
    --devices "$devices" "$@" >"$out" 2>"$out.err" &
  DP_DEVSIM_PID=$!
  local rc=0
  wait "$DP_DEVSIM_PID" || rc=$?
  DP_DEVSIM_PID=""
  return "$rc"
}

# user+system CPU seconds of a process so far (clock ticks of /proc/PID/stat).
dp_cpu_s() {
  awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat"
}

# ---- nftables byte counters on lo (input hook: every packet once, IP and TCP headers counted)
# Named counters to_<name> (tcp dport PORT) and from_<name> (tcp sport PORT) per NAME=PORT.
dp_nft_setup() {  # NAME=PORT ...
  nft delete table inet "$DP_NFT_TABLE" 2>/dev/null || true
  DP_HAVE_NFT=0
  nft add table inet "$DP_NFT_TABLE" 2>/dev/null || { dp_log "nftables not usable (not root?): no IP-level bytes"; return 0; }
  nft add chain inet "$DP_NFT_TABLE" in '{ type filter hook input priority -150; policy accept; }'
  local kv
  for kv in "$@"; do
    nft add counter inet "$DP_NFT_TABLE" "to_${kv%%=*}"
    nft add counter inet "$DP_NFT_TABLE" "from_${kv%%=*}"
    nft add rule inet "$DP_NFT_TABLE" in iif lo tcp dport "${kv#*=}" counter name "to_${kv%%=*}"
    nft add rule inet "$DP_NFT_TABLE" in iif lo tcp sport "${kv#*=}" counter name "from_${kv%%=*}"
  done
  DP_HAVE_NFT=1
}

# Prints {"to_link": [packets, bytes], ...} (empty object without nftables).
dp_nft_read() {
  if ((DP_HAVE_NFT == 0)); then echo '{}'; return 0; fi
  nft -j list counters table inet "$DP_NFT_TABLE" | "$PY" -c '
import json, sys
out = {}
for item in json.load(sys.stdin)["nftables"]:
    c = item.get("counter")
    if c: out[c["name"]] = [c["packets"], c["bytes"]]
print(json.dumps(out))'
}

dp_nft_teardown() {
  ((DP_HAVE_NFT)) && nft delete table inet "$DP_NFT_TABLE" 2>/dev/null
  DP_HAVE_NFT=0
  return 0
}

dp_cleanup() {
  set +e
  [[ -n "$DP_DEVSIM_PID" ]] && kill -TERM "$DP_DEVSIM_PID" 2>/dev/null && dp_reap "$DP_DEVSIM_PID" 10
  dp_stop_node
  dp_stop_cloud
  dp_nft_teardown
}
