#!/usr/bin/env bash
# What packaging/build.sh makes, checked without installing it:
# - every binary built here is static and runs `check` (aarch64 under
#   qemu-aarch64-static; armv7 is built by the release workflow only: rustup
#   has no armv7-unknown-linux-musleabihf here);
# - SHA256SUMS covers and verifies every release file;
# - the image per arch: <= 8 MiB, numeric non-root USER, its arch; the
#   multi-arch manifest lists each; the saved OCI archives load;
# - the .deb per arch: binary at /usr/bin, the native unit running it, the
#   example config as a conffile, the maintainer scripts;
# - the sysext per arch: /usr only, extension-release with ID=_any and the
#   arch, the unit, the sysusers entry.
# Sizes are printed (the README's table).
#
#   tests/deploy/artifacts.sh          (ARCHES="amd64 arm64" by default; SKIP_BUILD=1 reuses dist/)
set -uo pipefail
source "$(dirname "$0")/lib.sh"

deploy_work h2m-artifacts "podman, apt-get"
need mksquashfs squashfs-tools
need dpkg-deb dpkg
need file file
export ARCHES=${ARCHES:-amd64 arm64}
D=$PROJECT/dist

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "packaging/build.sh (ARCHES=$ARCHES)"
  out=$(cd "$PROJECT" && INSTALL=1 packaging/build.sh 2>&1)
  rc=$?
  printf '%s\n' "$out" | indent
  ((rc == 0)) || { fail "packaging/build.sh" "$out"; exit 1; }
  pass "packaging/build.sh"
fi

declare -A SUF=([amd64]=x86_64 [arm64]=aarch64 [armv7]=armv7) SD=([amd64]=x86-64 [arm64]=arm64 [armv7]=arm) \
  DEB=([amd64]=amd64 [arm64]=arm64 [armv7]=armhf) QEMU=([arm64]=qemu-aarch64-static [armv7]=qemu-arm-static)
printf 'cat >%s/c.toml <<X\ninterval = "1s"\nX\n' "$WORK" | bash
for a in $ARCHES; do
  bin=$D/host2mqtt-${SUF[$a]}
  check "[$a] $(basename "$bin") is static ($(stat -c %s "$bin" 2>/dev/null) bytes)" bash -c "file -b '$bin' | grep -qE 'static(-pie)? linked|statically linked'"
  run=("$bin")
  [ "$a" = amd64 ] || { need "${QEMU[$a]}" qemu-user-static; run=("${QEMU[$a]}" "$bin"); }
  check "[$a] ${run[*]##*/} check runs and prints this host's readings" \
    bash -c '"$@" check --json | jq -e "map(.topic) | any(endswith(\"/state\"))" >/dev/null' _ "${run[@]}"

  img=localhost/host2mqtt:$VERSION-$a
  size=$(podman image inspect --format '{{.Size}}' "$img" 2>/dev/null || echo 0)
  check "[$a] image $img: $size bytes ($(awk -v s="$size" 'BEGIN { printf "%.2f", s / 1048576 }') MiB) <= 8 MiB" \
    bash -c "[ $size -gt 0 ] && [ $size -le $((8 * 1048576)) ]"
  check "[$a] image: arch $a, USER 65532:65532" \
    test "$(podman image inspect --format '{{.Architecture}} {{.Config.User}}' "$img")" = "$a 65532:65532"
  check "[$a] the saved image (dist/host2mqtt-image-$a.tar) is an OCI archive podman can read" \
    bash -c "tar -tf '$D/host2mqtt-image-$a.tar' | grep -qx 'index.json'"

  deb=$D/host2mqtt_${VERSION}_${DEB[$a]}.deb
  contents=$(dpkg-deb -c "$deb" 2>&1 | awk '{ print $6 }')
  check "[$a] $(basename "$deb") ($(stat -c %s "$deb") bytes): binary, unit, config, user units" bash -c '
    for f in ./usr/bin/host2mqtt ./lib/systemd/system/host2mqtt.service ./etc/host2mqtt/host2mqtt.toml \
      ./usr/lib/systemd/user/host2mqtt-updates.timer; do grep -qx "$f" <<<"$1" || { echo "missing $f"; exit 1; }; done' _ "$contents"
  check "[$a] .deb: Architecture ${DEB[$a]}, the config is a conffile, postinst/prerm/postrm" bash -c "
    [ \"\$(dpkg-deb -f '$deb' Architecture)\" = ${DEB[$a]} ] &&
    dpkg-deb --ctrl-tarfile '$deb' | tar -xO ./conffiles | grep -qx /etc/host2mqtt/host2mqtt.toml &&
    dpkg-deb --ctrl-tarfile '$deb' | tar -t | grep -c -E '^\./(postinst|prerm|postrm)$' | grep -qx 3"
  check "[$a] .deb: the unit runs /usr/bin/host2mqtt" \
    bash -c "dpkg-deb --fsys-tarfile '$deb' | tar -xO ./lib/systemd/system/host2mqtt.service | grep -qx 'ExecStart=/usr/bin/host2mqtt run'"

  raw=$D/host2mqtt_${VERSION}_${SD[$a]}.raw
  rm -rf "$WORK/sx" && unsquashfs -q -d "$WORK/sx" "$raw" >/dev/null 2>&1
  check "[$a] $(basename "$raw") ($(stat -c %s "$raw") bytes): /usr only" test "$(ls "$WORK/sx")" = usr
  check "[$a] sysext: extension-release ID=_any ARCHITECTURE=${SD[$a]}" bash -c "
    f='$WORK/sx/usr/lib/extension-release.d/extension-release.host2mqtt'
    grep -qx ID=_any \$f && grep -qx ARCHITECTURE=${SD[$a]} \$f"
  check "[$a] sysext: binary, unit, sysusers" bash -c "
    [ -x '$WORK/sx/usr/bin/host2mqtt' ] && grep -qx 'ExecStart=/usr/bin/host2mqtt run' '$WORK/sx/usr/lib/systemd/system/host2mqtt.service' &&
    grep -q '^u host2mqtt ' '$WORK/sx/usr/lib/sysusers.d/host2mqtt.conf'"
done
for a in $ARCHES; do
  check "manifest localhost/host2mqtt:$VERSION lists $a" \
    bash -c "podman manifest inspect localhost/host2mqtt:$VERSION | jq -e '.manifests | any(.platform.architecture == \"$a\")'"
done
check "SHA256SUMS verifies" bash -c "cd '$D' && sha256sum -c --quiet SHA256SUMS"
check "SHA256SUMS covers binaries, .deb, .raw, image archives" bash -c "
  for f in '$D'/host2mqtt-* '$D'/*.deb '$D'/*.raw; do grep -q \" \$(basename \$f)\$\" '$D/SHA256SUMS' || { echo \"not in SHA256SUMS: \$f\"; exit 1; }; done"
log "sizes:"
(cd "$D" && ls -l host2mqtt-* ./*.deb ./*.raw | awk '{ printf "%10d  %s\n", $5, $9 }') | indent
for a in $ARCHES; do
  printf '%10d  image localhost/host2mqtt:%s-%s\n' "$(podman image inspect --format '{{.Size}}' "localhost/host2mqtt:$VERSION-$a")" "$VERSION" "$a" | indent
done
