#!/usr/bin/env bash
# Every deployment test, in order: units.sh, actionlint.sh, artifacts.sh
# (after packaging/build.sh built everything once), container.sh,
# service.sh, native.sh (.deb and sysext), quadlet.sh (the shipped Quadlet
# end to end), acl.sh. Prints each script's output, then one line per
# script and the total "N passed, M failed"; exits non-zero if any failed.
#
#   tests/deploy/all.sh          (as root; ARCHES="amd64 arm64" by default)
set -uo pipefail
cd "$(dirname "$0")/../.."
T0=$SECONDS
export ARCHES=${ARCHES:-amd64 arm64}

echo "== packaging/build.sh (ARCHES=$ARCHES)"
if ! INSTALL=1 packaging/build.sh; then
  echo "packaging/build.sh failed"
  echo "0 passed, 1 failed"
  exit 1
fi
VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)
export HOST2MQTT_STATIC_BIN=dist/host2mqtt-x86_64 HOST2MQTT_BIN=$PWD/dist/host2mqtt-x86_64 SKIP_BUILD=1 H2M_IMAGE=localhost/host2mqtt:$VERSION-amd64

pass=0 fail=0 lines=()
for s in units actionlint artifacts container service native quadlet acl; do
  echo "== $s.sh"
  t=$SECONDS
  out=$(tests/deploy/$s.sh 2>&1 | tee -a /dev/stderr)
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
