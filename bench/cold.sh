#!/usr/bin/env bash
# The price of cold memory on this machine, for reading bench/touch.sh's
# counts as time: three copies of bench/cold.c wake every INTERVAL seconds
# (2) for CYCLES wake-ups (30), started a second apart: one touching a
# single line (the wake-up itself), one 1024 lines packed in 16 pages,
# one 256 lines one a page. Prints each one's CPU per wake-up and the
# derived cost of a cold line and of a cold page (its TLB miss and page
# walk beyond the line). The loads depend on each other (no prefetch, no
# overlap), so the line figure is an upper bound for code, which the CPU
# fetches ahead. Run it a few times: this VM's figures move from run to
# run. A measurement, not a test.
#
#   bench/cold.sh
set -euo pipefail
cd "$(dirname "$0")/.."
INTERVAL=${BENCH_INTERVAL:-2}
CYCLES=${BENCH_CYCLES:-30}
work=$(mktemp -d /tmp/h2m-cold.XXXXXX)
cc -O2 -o "$work/cold" bench/cold.c
pids=()
i=0
for args in "1 64" "1024 64" "256 4096"; do
    (sleep "$i"; exec "$work/cold" $args "$INTERVAL" "$CYCLES" > "$work/out.$i") &
    pids+=($!)
    i=$((i + 1))
done
wait "${pids[@]}"
read -r _ _ base _ < "$work/out.0"
read -r _ _ dense _ < "$work/out.1"
read -r _ _ sparse _ < "$work/out.2"
awk -v b="$base" -v d="$dense" -v s="$sparse" -v iv="$INTERVAL" -v c="$CYCLES" 'BEGIN {
    line = (d - b) / 1024
    page = (s - b) / 256 - line
    printf "every %d s, %d wake-ups: 1 line %.1f us; 1024 lines in 16 pages %.1f us; 256 lines in 256 pages %.1f us\n", iv, c, b, d, s
    printf "a cold line: %.3f us; a cold page beyond its line: %.3f us\n", line, page
}'
