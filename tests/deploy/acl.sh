#!/usr/bin/env bash
# The README's Mosquitto ACL (tests/deploy/mosquitto.acl), for real: a
# private Mosquitto on a free loopback port with users homeassistant, alpha
# and beta. The real agent logged in as alpha publishes its discovery,
# state and availability and hears HA's birth; as beta pretending to be
# alpha (node_id alpha) it is denied everything; alpha can neither write
# nor read beta's topics, nor fake HA's birth; commands reach only their host.
#
#   tests/deploy/acl.sh
# Env: HOST2MQTT_BIN  the binary to run (default: cargo build --release)
set -uo pipefail
source "$(dirname "$0")/lib.sh"

need mosquitto mosquitto
need mosquitto_passwd mosquitto
need mosquitto_sub mosquitto-clients

deploy_work h2m-acl

h2m_binary "$WORK" # BIN: $HOST2MQTT_BIN, or a fresh cargo build --release

PORT=$(free_port)
mkdir -p "$WORK/broker"
readme_broker "$WORK/broker" "$PORT" homeassistant:ha-secret alpha:alpha-secret beta:beta-secret ||
  { fail "mosquitto starts" "$(cat "$WORK/broker/mosquitto.log" 2>/dev/null)"; exit 1; }
BLOG=$WORK/broker/mosquitto.log
log "mosquitto on 127.0.0.1:$PORT with the ACL"

# sub NAME USER PASS FILTER: a subscriber printing "topic|retain|payload"
# lines to $WORK/NAME.out, ready once the broker logged its SUBSCRIBE.
sub() {
  local name=$1 user=$2 pass=$3 filter=$4 i
  mosquitto_sub -h 127.0.0.1 -p "$PORT" -i "sub-$name" -u "$user" -P "$pass" -q 1 \
    -t "$filter" -F '%t|%r|%p' >"$WORK/$name.out" 2>"$WORK/$name.err" &
  on_exit "stop_pid $!"
  for i in $(seq 1 100); do
    # (the client id is the user name where use_username_as_clientid is on)
    grep -qE "Received SUBSCRIBE from (sub-$name|$user)\$" "$BLOG" && return 0
    sleep 0.1
  done
  return 1
}
pub() { # pub USER PASS TOPIC PAYLOAD [ARGS...]
  local user=$1 pass=$2 topic=$3 payload=$4
  shift 4
  mosquitto_pub -h 127.0.0.1 -p "$PORT" -i "pub-$user" -u "$user" -P "$pass" -q 1 -t "$topic" -m "$payload" "$@"
}
# seen NAME REGEX [SECONDS]: a line of NAME's output matches within SECONDS.
seen() {
  local i
  for i in $(seq 1 $((${3:-5} * 10))); do
    grep -qE "$2" "$WORK/$1.out" && return 0
    sleep 0.1
  done
  echo "no line matching '$2' in $1's output:"
  cut -c1-160 "$WORK/$1.out"
  return 1
}
not_seen() { # not_seen NAME REGEX: no line matches (call after a wait)
  ! grep -E "$2" "$WORK/$1.out" | cut -c1-160 | grep .
}
denied() { # denied CLIENT_ID TOPIC: the broker logged a denied publish
  grep -F "Denied PUBLISH from $1 " "$BLOG" | grep -qF "'$2'" || {
    echo "no denied publish from $1 on $2 in the broker log; its last lines:"
    tail -15 "$BLOG"
    return 1
  }
}

agent_conf() { # agent_conf USER NODE_ID -> config path
  printf '%s-secret\n' "$1" >"$WORK/$1.pw"
  cat >"$WORK/$1-$2.toml" <<EOF
interval = "2s"
node_id = "$2"
[mqtt]
host = "127.0.0.1"
port = $PORT
username = "$1"
password_file = "$WORK/$1.pw"
reconnect_min = "1s"
reconnect_max = "2s"
EOF
  echo "$WORK/$1-$2.toml"
}
AGENT_PID=""
start_agent() { # start_agent USER NODE_ID
  HOST2MQTT_LOG=info "$BIN" --config "$(agent_conf "$1" "$2")" run >"$WORK/agent-$1.log" 2>&1 &
  AGENT_PID=$!
  on_exit "stop_pid $AGENT_PID"
}
stop_agent() {
  kill -TERM "$AGENT_PID" 2>/dev/null
  wait "$AGENT_PID" 2>/dev/null
}

log "subscribers: Home Assistant on #, beta on alpha's topics"
sub ha homeassistant ha-secret '#' || fail "HA's subscriber is set up"
sub beta-spy beta beta-secret 'host2mqtt/alpha/#' || fail "beta's subscriber is set up"
sub beta-disc beta beta-secret 'homeassistant/device/alpha/config' || fail "beta's discovery subscriber is set up"

log "the agent as alpha, node_id alpha"
start_agent alpha alpha
check "alpha announces its device" seen ha '^homeassistant/device/alpha/config\|0\|\{.*"cmps"' 10
check "alpha's availability: online" seen ha '^host2mqtt/alpha/availability\|0\|online$'
check "alpha publishes its state" seen ha '^host2mqtt/alpha/state\|0\|\{' 8
check "alpha publishes its info" seen ha '^host2mqtt/alpha/info\|0\|\{' 8
# A live message reaches a subscriber with the retain flag cleared (MQTT
# 3.1.1); a late subscriber gets the retained copies, flagged.
sub ha-late homeassistant ha-secret 'homeassistant/device/alpha/config' && sub ha-late2 homeassistant ha-secret 'host2mqtt/alpha/availability'
check "alpha's discovery is retained" seen ha-late '^homeassistant/device/alpha/config\|1\|\{'
check "alpha's availability is retained" seen ha-late2 '^host2mqtt/alpha/availability\|1\|online$'
check "the broker denied alpha's agent nothing" bash -c "! grep -E 'Denied .* host2mqtt-alpha ' '$BLOG'"

: >"$WORK/ha.out"
pub homeassistant ha-secret homeassistant/status online
check "alpha hears Home Assistant's birth" bash -c "for i in \$(seq 50); do grep -q 'Home Assistant came online' '$WORK/agent-alpha.log' && exit 0; sleep 0.1; done; tail -5 '$WORK/agent-alpha.log'; exit 1"
check "... and announces again" seen ha '^homeassistant/device/alpha/config\|' 6

check "beta cannot read alpha's state or availability" not_seen beta-spy '.'
check "beta cannot read alpha's discovery" not_seen beta-disc '.'

log "alpha writing where it must not"
: >"$WORK/ha.out"
pub alpha alpha-secret host2mqtt/beta/state '{"forged":1}'
pub alpha alpha-secret host2mqtt/beta/info '{"forged":1}' -r
pub alpha alpha-secret host2mqtt/beta/availability offline -r
pub alpha alpha-secret homeassistant/device/beta/config '{"forged":1}' -r
pub alpha alpha-secret homeassistant/sensor/beta/x/config '{"forged":1}' -r
pub alpha alpha-secret homeassistant/status online
pub alpha alpha-secret host2mqtt/alpha/command 'self-command'
sleep 1
check "alpha cannot write beta's state, info, availability or discovery" not_seen ha '^(host2mqtt/beta/|homeassistant/device/beta/)'
check "alpha cannot write classic discovery either" not_seen ha '^homeassistant/sensor/'
check "alpha cannot fake Home Assistant's birth" not_seen ha '^homeassistant/status\|'
check "alpha cannot command itself" not_seen ha '^host2mqtt/alpha/command\|'
check "the broker logged those denials" denied pub-alpha host2mqtt/beta/state

log "commands reach only their host"
sub alpha-cmd alpha alpha-secret 'host2mqtt/alpha/command' || fail "alpha's command subscriber is set up"
sub beta-cmd beta beta-secret 'host2mqtt/alpha/command' || fail "beta's command subscriber is set up"
pub homeassistant ha-secret host2mqtt/alpha/command 'reboot'
check "alpha receives Home Assistant's command to alpha" seen alpha-cmd '^host2mqtt/alpha/command\|0\|reboot$'
check "beta does not receive alpha's command" not_seen beta-cmd '.'

log "alpha stops (SIGTERM): offline"
: >"$WORK/ha.out"
stop_agent
check "alpha publishes offline on SIGTERM" seen ha '^host2mqtt/alpha/availability\|[01]\|offline$'

log "the agent as beta pretending to be alpha (node_id alpha)"
: >"$WORK/ha.out"
: >"$WORK/beta-spy.out"
start_agent beta alpha
sleep 4
check "beta's agent connected (the ACL, not the login, stops it)" grep -q "New client connected .* u'beta'" "$BLOG"
check "beta cannot announce alpha's device or publish its state" not_seen ha '^(homeassistant/device/alpha/config|host2mqtt/alpha/state)\|'
check "beta cannot set alpha's availability" not_seen ha '^host2mqtt/alpha/availability\|'
check "the broker logged beta's denied publishes" denied host2mqtt-alpha homeassistant/device/alpha/config
kill -9 "$AGENT_PID" 2>/dev/null
wait "$AGENT_PID" 2>/dev/null
sleep 0.5
check "beta's will on alpha's availability is refused too" not_seen ha '^host2mqtt/alpha/availability\|'

log "client ids: one host taking over another's session"
: >"$WORK/ha.out"
start_agent alpha alpha
ALPHA_PID=$AGENT_PID
seen ha '^host2mqtt/alpha/state\|' 8 >/dev/null
start_agent beta alpha
IMPOSTOR_PID=$AGENT_PID
sleep 3
check "with client ids of their choosing, beta's agent kicks alpha's off (hence use_username_as_clientid)" \
  grep -q "Client host2mqtt-alpha already connected, closing old connection" "$BLOG"
kill -9 "$ALPHA_PID" "$IMPOSTOR_PID" 2>/dev/null
wait "$ALPHA_PID" "$IMPOSTOR_PID" 2>/dev/null

PORT2=$(free_port)
mkdir -p "$WORK/broker2"
PORT_SAVED=$PORT
BROKER_CONF="use_username_as_clientid true" readme_broker "$WORK/broker2" "$PORT2" homeassistant:ha-secret alpha:alpha-secret beta:beta-secret ||
  fail "the second mosquitto starts"
PORT=$PORT2
BLOG=$WORK/broker2/mosquitto.log
log "second broker, use_username_as_clientid true, on 127.0.0.1:$PORT2"
sub ha2 homeassistant ha-secret '#' || fail "HA's subscriber on the second broker is set up"
start_agent alpha alpha
ALPHA_PID=$AGENT_PID
check "alpha's agent publishes there" seen ha2 '^host2mqtt/alpha/state\|' 8
start_agent beta alpha
IMPOSTOR_PID=$AGENT_PID
sleep 3
: >"$WORK/ha2.out"
check "beta's agent no longer kicks alpha's off" bash -c "! grep -E 'already connected, closing old connection|Client alpha (closed|disconnected)' '$BLOG'"
check "alpha keeps publishing" seen ha2 '^host2mqtt/alpha/state\|' 5
check "beta is still denied alpha's topics" denied beta host2mqtt/alpha/state
kill -9 "$ALPHA_PID" "$IMPOSTOR_PID" 2>/dev/null
wait "$ALPHA_PID" "$IMPOSTOR_PID" 2>/dev/null
PORT=$PORT_SAVED

exit 0
