#!/usr/bin/env bash
# Every deployment test, in order: units.sh, container.sh, service.sh,
# acl.sh (see the README's "Deployment tests"). Builds the static binary
# once for the two that run it; acl.sh runs $HOST2MQTT_BIN, else
# `cargo build --release`'s. Prints each script's output, then one line per
# script and the total "N passed, M failed"; exits non-zero if any failed.
#
#   tests/deploy/all.sh          (as root)
set -uo pipefail
cd "$(dirname "$0")/../.."
T0=$SECONDS

echo "== build-static.sh"
if ! INSTALL=1 tests/deploy/build-static.sh; then
  echo "the static build failed"
  echo "0 passed, 1 failed"
  exit 1
fi
export HOST2MQTT_STATIC_BIN=target/static/amd64/host2mqtt

pass=0 fail=0 lines=()
for s in units container service acl; do
  echo "== $s.sh"
  t=$SECONDS
  out=$(tests/deploy/$s.sh 2>&1 | tee /dev/stderr)
  rc=$?
  last=$(tail -1 <<<"$out")
  if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed ]]; then
    pass=$((pass + BASH_REMATCH[1]))
    fail=$((fail + BASH_REMATCH[2]))
  else
    fail=$((fail + 1)) # died before its summary
  fi
  ((rc == 0)) || [[ $last =~ [1-9][0-9]*\ failed ]] || fail=$((fail + 1))
  lines+=("$(printf '%-14s %4ss  %s' "$s.sh" $((SECONDS - t)) "$(grep -m1 '^SKIP' <<<"$out" || echo "$last")")")
done
echo "== summary ($((SECONDS - T0))s)"
printf '%s\n' "${lines[@]}"
echo "$pass passed, $fail failed"
((fail == 0))
