#!/usr/bin/env bash
# Everything a user installs, built from a clean clone into dist/:
#
#   dist/host2mqtt-x86_64, -aarch64, -armv7   static (musl) binaries
#   dist/host2mqtt_<version>_<arch>.deb        binary, native unit, example config
#   dist/host2mqtt_<version>_<arch>.raw        systemd/Flatcar system extension (squashfs)
#   dist/host2mqtt-image-<arch>.tar            the OCI image per arch (podman load)
#   dist/host2mqtt.transfer                    systemd-sysupdate transfer for the sysext
#   dist/SHA256SUMS                            of all the above (sysupdate reads it too)
#   and in Podman's storage: $IMAGE:<version>-<arch> per arch and the
#   multi-arch manifest $IMAGE:<version>.
#
#   packaging/build.sh                     # everything, for ARCHES
#   packaging/build.sh bin image           # only these steps (and what they need)
#   ARCHES=amd64 packaging/build.sh image  # the image for this machine only
#   PUSH_TO=ghcr.io/host2mqtt/host2mqtt packaging/build.sh push   # manifest -> :<version>, :latest
#
# Steps: bin (binaries, CA roots), image, deb, sysext, sums, push (only
# when named). Env: ARCHES (default "amd64 arm64"; armv7 too where rustup
# has its target), VERSION (default: Cargo.toml's), IMAGE (default
# localhost/host2mqtt), INSTALL=1 apt-gets missing tools.
#
# Needs: rustup + cargo; a C compiler per target for ring (musl-gcc from
# musl-tools; gcc-aarch64-linux-gnu; gcc-arm-linux-gnueabihf), which also
# links (Rust's musl targets bring their own libc); podman (image);
# dpkg-deb (deb); mksquashfs from squashfs-tools (sysext).
set -euo pipefail
cd "$(dirname "$0")/.."

ARCHES=${ARCHES:-amd64 arm64}
ARCHES=${ARCHES//,/ }
VERSION=${VERSION:-$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)}
IMAGE=${IMAGE:-localhost/host2mqtt}
DIST=dist
STEPS=("$@")
((${#STEPS[@]})) || STEPS=(bin image deb sysext sums)
want() { local s; for s in "${STEPS[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }
say() { printf '== %s\n' "$*" >&2; }

apt_install() { # waits while another apt holds the lock
  local i
  for i in $(seq 1 30); do
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null && return 0
    echo "apt-get busy or failed; retrying in 5 s ($i/30)" >&2
    sleep 5
  done
  return 1
}
need_tool() { # need_tool COMMAND PACKAGE
  command -v "$1" >/dev/null && return 0
  if [ "${INSTALL:-0}" = 1 ]; then apt_install "$2"; command -v "$1" >/dev/null && return 0; fi
  echo "missing $1: apt-get install $2 (or rerun with INSTALL=1)" >&2
  return 1
}

# Per arch: Rust target, release file suffix, Debian arch, systemd arch, OCI arch.
triple() { case $1 in amd64) echo x86_64-unknown-linux-musl ;; arm64) echo aarch64-unknown-linux-musl ;; armv7) echo armv7-unknown-linux-musleabihf ;; *) echo "unknown arch $1 (amd64, arm64, armv7)" >&2; return 2 ;; esac; }
suffix() { case $1 in amd64) echo x86_64 ;; arm64) echo aarch64 ;; armv7) echo armv7 ;; esac; }
debarch() { case $1 in armv7) echo armhf ;; *) echo "$1" ;; esac; }
sdarch() { case $1 in amd64) echo x86-64 ;; arm64) echo arm64 ;; armv7) echo arm ;; esac; }
ociplat() { case $1 in armv7) echo linux/arm/v7 ;; *) echo "linux/$1" ;; esac; }
bin_of() { echo "$DIST/host2mqtt-$(suffix "$1")"; }

mkdir -p "$DIST"

# --- bin: static binaries and the CA roots --------------------------------
build_bin() {
  local arch=$1 target
  target=$(triple "$arch")
  case $arch in
    amd64)
      need_tool musl-gcc musl-tools
      # cc-rs looks for x86_64-linux-musl-gcc; Debian names it musl-gcc.
      export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-musl-gcc} ;;
    arm64)
      need_tool aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu
      export CC_aarch64_unknown_linux_musl=${CC_aarch64_unknown_linux_musl:-aarch64-linux-gnu-gcc}
      export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER:-aarch64-linux-gnu-gcc} ;;
    armv7)
      need_tool arm-linux-gnueabihf-gcc gcc-arm-linux-gnueabihf
      export CC_armv7_unknown_linux_musleabihf=${CC_armv7_unknown_linux_musleabihf:-arm-linux-gnueabihf-gcc}
      export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_MUSLEABIHF_LINKER=${CARGO_TARGET_ARMV7_UNKNOWN_LINUX_MUSLEABIHF_LINKER:-arm-linux-gnueabihf-gcc} ;;
  esac
  rustup target list --installed | grep -qx "$target" || rustup target add "$target"
  say "cargo build --release --target $target"
  cargo build --release --locked --quiet --target "$target"
  install -m 755 "target/$target/release/host2mqtt" "$(bin_of "$arch")"
  printf '%s: %s bytes, %s\n' "$(bin_of "$arch")" "$(stat -c %s "$(bin_of "$arch")")" \
    "$(file -b "$(bin_of "$arch")" | cut -d, -f1,2,4,6)" >&2
}

# The image's trust store for mqtt.tls with the system roots: Mozilla's set
# as Debian ships it, without this machine's local additions
# (/usr/local/share/ca-certificates, e.g. a proxy's CA).
ca_roots() {
  [ -d /usr/share/ca-certificates/mozilla ] || need_tool update-ca-certificates ca-certificates
  cat /usr/share/ca-certificates/mozilla/*.crt >"$DIST/ca-certificates.crt"
}

have_bin() { [ -x "$(bin_of "$1")" ] || build_bin "$1"; }

if want bin; then
  for a in $ARCHES; do build_bin "$a"; done
  ca_roots
fi

# --- image: one per arch (FROM scratch: nothing pulled) + the manifest ------
# The Containerfile copies dist/oci/<TARGETARCH>/host2mqtt and the CA roots;
# .containerignore keeps everything else out of the context.
if want image; then
  need_tool podman podman
  [ -s "$DIST/ca-certificates.crt" ] || ca_roots
  rm -rf "$DIST/oci" && mkdir -p "$DIST/oci"
  cp "$DIST/ca-certificates.crt" "$DIST/oci/"
  podman manifest exists "$IMAGE:$VERSION" 2>/dev/null && podman manifest rm "$IMAGE:$VERSION" >/dev/null
  podman image exists "$IMAGE:$VERSION" && podman rmi "$IMAGE:$VERSION" >/dev/null
  podman manifest create "$IMAGE:$VERSION" >/dev/null
  for a in $ARCHES; do
    have_bin "$a"
    oarch=$(ociplat "$a"); oarch=${oarch#linux/}; oarch=${oarch%%/*}
    mkdir -p "$DIST/oci/$oarch"
    cp "$(bin_of "$a")" "$DIST/oci/$oarch/host2mqtt"
    say "podman build --platform $(ociplat "$a") -t $IMAGE:$VERSION-$a"
    podman build --quiet --layers=false --platform "$(ociplat "$a")" -f Containerfile \
      -t "$IMAGE:$VERSION-$a" . >/dev/null
    podman manifest add "$IMAGE:$VERSION" "containers-storage:$IMAGE:$VERSION-$a" >/dev/null
    rm -f "$DIST/host2mqtt-image-$a.tar"
    podman save --quiet --format oci-archive -o "$DIST/host2mqtt-image-$a.tar" "$IMAGE:$VERSION-$a"
    printf '%s:%s-%s: %s bytes\n' "$IMAGE" "$VERSION" "$a" \
      "$(podman image inspect --format '{{.Size}}' "$IMAGE:$VERSION-$a")" >&2
  done
fi

# --- deb: binary, native unit, example config (a conffile), system user ---
if want deb; then
  need_tool dpkg-deb dpkg
  for a in $ARCHES; do
    have_bin "$a"
    root=$DIST/deb-$a
    rm -rf "$root"
    install -D -m 755 "$(bin_of "$a")" "$root/usr/bin/host2mqtt"
    install -d "$root/lib/systemd/system" "$root/usr/lib/systemd/user" "$root/DEBIAN"
    sed 's#^ExecStart=/usr/local/bin/host2mqtt#ExecStart=/usr/bin/host2mqtt#' units/host2mqtt.service \
      >"$root/lib/systemd/system/host2mqtt.service"
    install -m 644 units/host2mqtt-updates.service units/host2mqtt-updates.timer "$root/usr/lib/systemd/user/"
    install -D -m 644 config/host2mqtt.toml "$root/etc/host2mqtt/host2mqtt.toml"
    install -D -m 644 units/host2mqtt.container "$root/usr/share/doc/host2mqtt/examples/host2mqtt.container"
    install -m 644 packaging/deb/copyright "$root/usr/share/doc/host2mqtt/copyright"
    echo /etc/host2mqtt/host2mqtt.toml >"$root/DEBIAN/conffiles"
    for s in postinst prerm postrm; do install -m 755 "packaging/deb/$s" "$root/DEBIAN/$s"; done
    sed -e "s/@VERSION@/$VERSION/" -e "s/@ARCH@/$(debarch "$a")/" \
      -e "s/@SIZE@/$(du -sk --exclude=DEBIAN "$root" | cut -f1)/" packaging/deb/control >"$root/DEBIAN/control"
    deb=$DIST/host2mqtt_${VERSION}_$(debarch "$a").deb
    dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
    rm -rf "$root"
    printf '%s: %s bytes\n' "$deb" "$(stat -c %s "$deb")" >&2
  done
fi

# --- sysext: /usr only, merged by systemd-sysext (Flatcar, any systemd) ---
if want sysext; then
  need_tool mksquashfs squashfs-tools
  for a in $ARCHES; do
    have_bin "$a"
    root=$DIST/sysext-$a
    rm -rf "$root"
    install -D -m 755 "$(bin_of "$a")" "$root/usr/bin/host2mqtt"
    install -d "$root/usr/lib/systemd/system" "$root/usr/lib/systemd/system/host2mqtt.service.d"
    sed 's#^ExecStart=/usr/local/bin/host2mqtt#ExecStart=/usr/bin/host2mqtt#' units/host2mqtt.service \
      >"$root/usr/lib/systemd/system/host2mqtt.service"
    install -m 644 packaging/sysext/10-sysusers.conf "$root/usr/lib/systemd/system/host2mqtt.service.d/"
    install -m 644 packaging/sysext/host2mqtt-sysusers.service "$root/usr/lib/systemd/system/"
    install -D -m 644 packaging/sysext/sysusers.conf "$root/usr/lib/sysusers.d/host2mqtt.conf"
    install -D -m 644 config/host2mqtt.toml "$root/usr/share/host2mqtt/host2mqtt.toml"
    install -D -m 644 /dev/null "$root/usr/lib/extension-release.d/extension-release.host2mqtt"
    printf 'ID=_any\nARCHITECTURE=%s\nVERSION_ID=%s\n' "$(sdarch "$a")" "$VERSION" \
      >"$root/usr/lib/extension-release.d/extension-release.host2mqtt"
    raw=$DIST/host2mqtt_${VERSION}_$(sdarch "$a").raw
    rm -f "$raw"
    mksquashfs "$root" "$raw" -all-root -noappend -quiet >/dev/null
    rm -rf "$root"
    printf '%s: %s bytes\n' "$raw" "$(stat -c %s "$raw")" >&2
  done
  cp packaging/sysupdate/host2mqtt.transfer "$DIST/host2mqtt.transfer"
fi

# --- sums: every release file (systemd-sysupdate verifies the .raw by it) ---
if want sums; then
  (cd "$DIST" && find . -maxdepth 1 -type f \( -name 'host2mqtt-*' -o -name '*.deb' -o -name '*.raw' \
    -o -name '*.transfer' \) -printf '%f\n' | sort | xargs -r sha256sum >SHA256SUMS)
  say "$DIST/SHA256SUMS: $(wc -l <"$DIST/SHA256SUMS") files"
fi

# --- push: the multi-arch manifest to a registry (the release workflow) ----
if want push; then
  : "${PUSH_TO:?set PUSH_TO, e.g. ghcr.io/host2mqtt/host2mqtt}"
  for tag in "$VERSION" latest; do
    say "podman manifest push --all $IMAGE:$VERSION docker://$PUSH_TO:$tag"
    podman manifest push --all "$IMAGE:$VERSION" "docker://$PUSH_TO:$tag"
  done
fi
