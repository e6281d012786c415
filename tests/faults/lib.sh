# The fault suite's helpers (sourced by tests/faults/run, on top of
# tests/deploy/lib.sh: log, check/pass/fail, summary, free_port, cleanups).
#
# Messages are recorded by mosquitto_sub into a file, one line each:
#   <unix time with ns> <retain 0|1> <topic> <payload>
# and waited for with `wait_msg`.

FAULTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../deploy/lib.sh
. "$FAULTS_DIR/../deploy/lib.sh"

BIN=${HOST2MQTT_BIN:-$PROJECT/target/debug/host2mqtt}
export HOST2MQTT_BIN=$BIN
WORK=$(mktemp -d /tmp/m-faults.XXXXXX)
chmod 755 "$WORK" # mosquitto drops to its own user
[ -n "${FAULTS_KEEP:-}" ] || on_exit "rm -rf '$WORK'"

now() { printf '%s' "$EPOCHREALTIME"; }
# secs_since T: seconds (with ms) from T to now.
secs_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }'; }

# mosquitto_start NAME PORT [EXTRA CONFIG LINES] -> sets MQ_PID[NAME]; log NAME.log
declare -A MQ_PID
mosquitto_start() {
  local name=$1 port=$2 extra=${3:-} addr=${MQ_ADDR:-127.0.0.1}
  mkdir -p "$WORK/$name" && chmod 777 "$WORK/$name"
  cat >"$WORK/$name/mosquitto.conf" <<EOF
per_listener_settings false
persistence false
log_dest file $WORK/$name/mosquitto.log
log_type all
connection_messages true
allow_anonymous true
listener $port $addr
$extra
EOF
  chmod 644 "$WORK/$name/mosquitto.conf"
  mosquitto -c "$WORK/$name/mosquitto.conf" >/dev/null 2>&1 &
  MQ_PID[$name]=$!
  on_exit "kill -9 ${MQ_PID[$name]}"
  [ "$addr" = 127.0.0.1 ] && wait_port "$port"
  return 0
}
mosquitto_kill() { kill -9 "${MQ_PID[$1]}" 2>/dev/null; wait "${MQ_PID[$1]}" 2>/dev/null; return 0; }

# record FILE PORT FILTER [HOST]: a subscriber writing FILE; sets REC_PID.
record() {
  local file=$1 port=$2 filter=$3 host=${4:-127.0.0.1}
  : >"$file"
  # -R drops stale retained? no: we want retained; --retained-only not used.
  mosquitto_sub -V mqttv311 -h "$host" -p "$port" -t "$filter" -F '%U %r %t %p' >>"$file" 2>/dev/null &
  REC_PID=$!
  on_exit "kill $REC_PID"
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
    [ "$(secs_since "$t0" | cut -d. -f1)" -ge "$timeout" ] && return 1
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
  on_exit "kill -9 $AGENT_PID"
}

# agent_config NODE_ID PORT [HOST] [EXTRA MQTT LINES]
agent_config() {
  printf 'interval = "1s"\nnode_id = "%s"\n[mqtt]\nhost = "%s"\nport = %s\nkeepalive = "5s"\nreconnect_min = "200ms"\nreconnect_max = "5s"\n%s\n' \
    "$1" "${3:-127.0.0.1}" "$2" "${4:-}"
}

# cpu_ticks PID: utime + stime in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

# connects LOG CLIENT_ID: how often the broker saw CLIENT_ID connect.
connects() { grep -ac "New client connected.* as $2 " "$1" || true; }
