#!/usr/bin/env bash
# Every deployment test, in order: units.sh, actionlint.sh, artifacts.sh
# (after packaging/build.sh built everything once), container.sh,
# service.sh, native.sh (.deb and sysext), quadlet.sh (the shipped Quadlet
# end to end), acl.sh. Prints each script's output, then one line per
# script and the total "N passed, M failed, K skipped"; exits non-zero if
# any failed (or, with CI=true, skipped).
#
#   tests/deploy/all.sh          (as root; ARCHES="amd64 arm64" by default)
set -uo pipefail
cd "$(dirname "$0")/../.."
TEST_NAME=deploy/all
# shellcheck source=lib.sh
source tests/deploy/lib.sh
export ARCHES=${ARCHES:-amd64 arm64}

log "packaging/build.sh (ARCHES=$ARCHES)"
INSTALL=1 packaging/build.sh || fatal "packaging/build.sh"
export HOST2MQTT_STATIC_BIN=dist/host2mqtt-x86_64 HOST2MQTT_BIN=$PWD/dist/host2mqtt-x86_64 SKIP_BUILD=1 H2M_IMAGE=localhost/host2mqtt:$VERSION-amd64

LINES=()
for s in units actionlint artifacts container service native quadlet acl; do
  echo
  log "=== $s.sh"
  t=$EPOCHREALTIME
  out=$(tests/deploy/$s.sh 2>&1 | tee -a /dev/stderr)
  rc=$?
  last=$(grep -E '^[0-9]+ passed, [0-9]+ failed' <<<"$out" | tail -n 1)
  if [[ $last =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)? ]]; then
    PASS=$((PASS + BASH_REMATCH[1]))
    FAIL=$((FAIL + BASH_REMATCH[2]))
    SKIP=$((SKIP + ${BASH_REMATCH[4]:-0}))
    ((rc == 0)) || ((BASH_REMATCH[2])) || FAIL=$((FAIL + 1))
  else
    FAIL=$((FAIL + 1)) # died before its summary
    last="no summary (exit $rc)"
  fi
  ((rc == 0)) || FAILED+=("$s.sh")
  mapfile -t skipped < <(sed -n 's/^  SKIPPED  //p' <<<"$out")
  ((${#skipped[@]} == 0)) || SKIPPED+=("${skipped[@]/#/$s.sh: }")
  LINES+=("$(printf '%-14s %5ss  %s' "$s.sh" "$(elapsed "$t" | cut -d. -f1)" "$last")")
done
echo
log "=== per script"
printf '%s\n' "${LINES[@]}"
exit 0
