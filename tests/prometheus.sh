#!/usr/bin/env bash
# The opt-in Prometheus endpoint against the real tools (Debian's
# `prometheus` package):
#   * off by default: the agent has no listening socket;
#   * on: GET /metrics answers, `promtool check metrics` finds no problem,
#     node_exporter's names are there;
#   * a real Prometheus (a child with its own config, data dir and port)
#     scrapes it: up == 1 and node_load1 / node_filesystem_avail_bytes
#     queryable.
# The agent needs no broker for this (it collects every interval while it
# reconnects), so none is started.
#
#   tests/prometheus.sh           # about 15 s; tests/run runs it
#
# Env: HOST2MQTT_BIN (else `cargo build --release`).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TEST_NAME=prometheus
# shellcheck source=lib.sh
source "$HERE/lib.sh"
need promtool prometheus
temp_dir WORK h2m-prometheus
h2m_binary "$WORK"
listening() { # PID: its listening TCP sockets
  local pid=$1 inode
  for inode in $(ls -l "/proc/$pid/fd" 2> /dev/null | sed -n 's/.*socket:\[\([0-9]*\)\]/\1/p'); do
    awk -v i="$inode" '$4 == "0A" && $10 == i { print $2 }' /proc/net/tcp /proc/net/tcp6
  done
}

clear_agent_env
NO_BROKER=$(free_port)
printf 'interval = "2s"\n[mqtt]\nhost = "127.0.0.1"\nport = %s\n[containers]\nenabled = false\n[systemd.system]\nenabled = false\n' \
  "$NO_BROKER" > "$WORK/h.toml"

echo "== off by default"
"$BIN" --config "$WORK/h.toml" run > "$WORK/off.log" 2>&1 &
OFF=$!
track $OFF
sleep 3 # a cycle: the endpoint, were it on, would be listening by then
check "no listening socket without prometheus.enabled" test -z "$(listening "$OFF")"
stop_pid "$OFF"

echo "== on"
PORT=$(free_port)
HOST2MQTT__PROMETHEUS__ENABLED=true HOST2MQTT__PROMETHEUS__LISTEN="127.0.0.1:$PORT" \
  "$BIN" --config "$WORK/h.toml" run > "$WORK/on.log" 2>&1 &
track $!
for _ in $(seq 50); do
  curl -fsS "http://127.0.0.1:$PORT/metrics" -o "$WORK/metrics.txt" 2> /dev/null && grep -q node_load1 "$WORK/metrics.txt" && break
  sleep 0.2
done
check "GET /metrics answers with node_exporter names" grep -E '^(node_load1|node_memory_MemAvailable_bytes|node_filesystem_avail_bytes\{mountpoint="/"\}) ' "$WORK/metrics.txt"
# promtool's lint wants snake_case names; node_exporter's own
# node_memory_MemAvailable_bytes fails it too, and we keep its name on
# purpose (dashboards query it). Any other finding, or a parse error, fails.
check "promtool check metrics: parses, and no lint finding but node_exporter's own camelCase names ($(grep -vc '^#' "$WORK/metrics.txt") samples)" \
  bash -c "promtool check metrics < '$WORK/metrics.txt' > '$WORK/lint.txt' 2>&1; rc=\$?; cat '$WORK/lint.txt'; \
    [ \$rc = 0 ] || { [ \$rc = 3 ] && ! grep -v '^node_memory_[A-Za-z]*_bytes metric names should be written in .snake_case. not .camelCase.\$' '$WORK/lint.txt'; }"
check "listens on 127.0.0.1:$PORT only" bash -c "[ \"\$(ss -ltnH \"sport = :$PORT\" | awk '{print \$4}')\" = 127.0.0.1:$PORT ]"
check "a bad listen address is a config error naming the key (exit 78)" bash -c \
  "HOST2MQTT__PROMETHEUS__LISTEN=nowhere '$BIN' --config '$WORK/h.toml' check > /dev/null 2> '$WORK/bad.err'; rc=\$?; cat '$WORK/bad.err'; [ \$rc = 78 ] && grep -q prometheus.listen '$WORK/bad.err'"

echo "== scraped by a real Prometheus"
if command -v prometheus > /dev/null; then
  PP=$(free_port)
  cat > "$WORK/prometheus.yml" << EOF
global:
  scrape_interval: 2s
scrape_configs:
  - job_name: host2mqtt
    static_configs:
      - targets: ["127.0.0.1:$PORT"]
EOF
  prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/data" \
    --web.listen-address="127.0.0.1:$PP" > "$WORK/prometheus.log" 2>&1 &
  track $!
  q() { curl -fsS "http://127.0.0.1:$PP/api/v1/query" --data-urlencode "query=$1" 2> /dev/null; }
  ok=0
  for _ in $(seq 60); do
    if q 'up{job="host2mqtt"}' | grep -q '"value":\[[0-9.]*,"1"\]'; then ok=1; break; fi
    sleep 0.5
  done
  check "Prometheus $(prometheus --version 2>&1 | head -n 1 | awk '{print $3}') scrapes it: up == 1" test $ok = 1
  sleep 3
  check "node_load1 and node_filesystem_avail_bytes{mountpoint=\"/\"} queryable" bash -c \
    "curl -fsS 'http://127.0.0.1:$PP/api/v1/query' --data-urlencode 'query=node_load1' | grep -q '\"result\":\[{' && \
     curl -fsS 'http://127.0.0.1:$PP/api/v1/query' --data-urlencode 'query=node_filesystem_avail_bytes{mountpoint=\"/\"}' | grep -q '\"result\":\[{'"
  check "no scrape error in Prometheus' targets" bash -c \
    "curl -fsS 'http://127.0.0.1:$PP/api/v1/targets' | grep -o '\"lastError\":\"[^\"]*\"' | sort -u | tee /dev/stderr | grep -qx '\"lastError\":\"\"'"
else
  skip "scraped by a real Prometheus" "no prometheus binary (apt-get install -y prometheus)"
fi
