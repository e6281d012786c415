# The fault suite's helpers (sourced by tests/faults/run), on top of
# tests/lib.sh, the project's shell library (log, check/pass/fail, skip,
# summary, free_port, start_broker, wait_port, track/stop_pid, on_exit,
# temp_dir, elapsed).
#
# Messages are recorded by mosquitto_sub into a file, one line each:
#   <unix time with ns> <retain 0|1> <topic> <payload>
# and waited for with `wait_msg`.

FAULTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TEST_NAME=faults
# shellcheck source=../lib.sh
. "$FAULTS_DIR/../lib.sh"

BIN=${HOST2MQTT_BIN:-$PROJECT/target/debug/host2mqtt}
export HOST2MQTT_BIN=$BIN
if [ -n "${FAULTS_KEEP:-}" ]; then WORK=$(mktemp -d /tmp/faults.XXXXXX); else temp_dir WORK faults; fi
chmod 755 "$WORK"

now() { printf '%s' "$EPOCHREALTIME"; }

# mosquitto_start NAME PORT [ADDRESS]: tests/lib.sh's start_broker in
# $WORK/NAME, listening on 127.0.0.1 and ADDRESS too (a veth's); restarted
# on the same PORT by calling it again. Sets MQ_PID[NAME].
declare -A MQ_PID
mosquitto_start() {
  local name=$1 port=$2
  BROKER_CONF=${3:+"listener $port $3"} start_broker "$WORK/$name" "$port" || return 1
  MQ_PID[$name]=$BROKER_PID
}
mosquitto_kill() { kill -9 "${MQ_PID[$1]}" 2>/dev/null; wait "${MQ_PID[$1]}" 2>/dev/null; return 0; }

# record FILE PORT FILTER [HOST]: a subscriber writing FILE; sets REC_PID.
record() {
  local file=$1 port=$2 filter=$3 host=${4:-127.0.0.1}
  : >"$file"
  mosquitto_sub -V mqttv311 -h "$host" -p "$port" -t "$filter" -F '%U %r %t %p' >>"$file" 2>/dev/null &
  REC_PID=$!
  track "$REC_PID"
  sleep 0.3
}

# wait_msg FILE TOPIC REGEX AFTER TIMEOUT: prints the time of the first
# message on TOPIC whose payload matches REGEX, received after AFTER.
wait_msg() {
  local file=$1 topic=$2 re=$3 after=$4 timeout=$5 t0=$EPOCHREALTIME hit
  while :; do
    hit=$(awk -v t="$topic" -v re="$re" -v after="$after" \
      '$3 == t && $1 > after { p = $0; sub(/^[^ ]+ [^ ]+ [^ ]+ ?/, "", p); if (p ~ re) { print $1; exit } }' "$file")
    if [ -n "$hit" ]; then printf '%s' "$hit"; return 0; fi
    [ "$(elapsed "$t0" | cut -d. -f1)" -ge "$timeout" ] && return 1
    sleep 0.05
  done
}

# agent_start NAME CONFIG_TEXT [NETNS]: starts the agent; sets AGENT_PID; log NAME.log
agent_start() {
  local name=$1 conf=$WORK/$1.toml
  printf '%s\n' "$2" >"$conf"
  if [ -n "${3:-}" ]; then
    HOST2MQTT_LOG=debug ip netns exec "$3" "$BIN" --config "$conf" run 2>"$WORK/$name.log" &
  else
    HOST2MQTT_LOG=debug "$BIN" --config "$conf" run 2>"$WORK/$name.log" &
  fi
  AGENT_PID=$!
  track "$AGENT_PID"
}

# agent_config NODE_ID PORT [HOST] [EXTRA MQTT LINES]
agent_config() {
  printf 'interval = "1s"\nnode_id = "%s"\n[mqtt]\nhost = "%s"\nport = %s\nkeepalive = "5s"\nreconnect_min = "200ms"\nreconnect_max = "5s"\n%s\n' \
    "$1" "${3:-127.0.0.1}" "$2" "${4:-}"
}

# setup NAME NODE_ID [EXTRA MQTT LINES]: a broker NAME on a free port
# (PORT), a recorder of host2mqtt/NODE_ID/# into $WORK/NAME.rec, the agent
# (agent_config; its log $WORK/NAME.log). Returns 1, after a failed check
# NAME, unless the agent is online within 15 s.
setup() {
  local name=$1 node=$2
  PORT=$(free_port)
  mosquitto_start "$name" "$PORT" || { fail "$name: the broker did not start"; return 1; }
  record "$WORK/$name.rec" "$PORT" "host2mqtt/$node/#"
  agent_start "$name" "$(agent_config "$node" "$PORT" 127.0.0.1 "${3:-}")"
  wait_msg "$WORK/$name.rec" "host2mqtt/$node/availability" '^online$' 0 15 >/dev/null && return 0
  fail "$name: agent never online" "$(agent_log "$name")"
  return 1
}

# agent_log NAME: the last 20 lines of the agent's log NAME.log that are
# not collector cycles (what a failure shows).
agent_log() { grep -av ' cycle elapsed_ms=' "$WORK/$1.log" | tail -20; }

# cpu_ticks PID: utime + stime in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

# connects LOG CLIENT_ID: how often the broker saw CLIENT_ID connect.
connects() { grep -ac "New client connected.* as $2 " "$1" || true; }
