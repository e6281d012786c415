#!/usr/bin/env bash
# Builds the fully static release binaries (musl) and stages what the
# Containerfile copies:
#
#   target/static/amd64/host2mqtt        x86_64-unknown-linux-musl
#   target/static/arm64/host2mqtt        aarch64-unknown-linux-musl (with ARCHES=amd64,arm64)
#   target/static/ca-certificates.crt    Mozilla's roots only (see below)
#
#   tests/deploy/build-static.sh                 # amd64
#   ARCHES=amd64,arm64 tests/deploy/build-static.sh
#   ARCHES=none tests/deploy/build-static.sh     # the CA bundle only
#
# ring (rustls' crypto provider) compiles C and assembly, so each target
# needs a C compiler for it: musl-gcc (Debian: musl-tools) for x86_64, and
# any aarch64 gcc for aarch64 (Debian: gcc-aarch64-linux-gnu, which also
# links: Rust's musl targets bring their own libc and start files).
# INSTALL=1 lets this script apt-get them when missing.
# Prints one line per binary: target, size, `file`'s verdict.
set -euo pipefail
cd "$(dirname "$0")/../.."

ARCHES=${ARCHES:-amd64}
OUT=target/static

# apt-get may be locked by a concurrent install: wait for it.
apt_install() {
  local i
  for i in $(seq 1 30); do
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" && return 0
    echo "apt-get busy or failed; retrying in 5 s ($i/30)" >&2
    sleep 5
  done
  return 1
}

need_tool() { # need_tool COMMAND PACKAGE
  command -v "$1" >/dev/null && return 0
  if [ "${INSTALL:-0}" = 1 ]; then
    apt_install "$2" >/dev/null
  else
    echo "missing $1: apt-get install $2 (or rerun with INSTALL=1)" >&2
    return 1
  fi
}

mkdir -p "$OUT"
for arch in ${ARCHES//,/ }; do
  case $arch in
    amd64)
      target=x86_64-unknown-linux-musl
      need_tool musl-gcc musl-tools
      # cc-rs looks for x86_64-linux-musl-gcc; Debian names it musl-gcc.
      export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-musl-gcc}
      ;;
    arm64)
      target=aarch64-unknown-linux-musl
      need_tool aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu
      export CC_aarch64_unknown_linux_musl=${CC_aarch64_unknown_linux_musl:-aarch64-linux-gnu-gcc}
      export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER:-aarch64-linux-gnu-gcc}
      ;;
    none) continue ;; # only the CA bundle
    *) echo "unknown arch $arch (amd64, arm64, none)" >&2; exit 2 ;;
  esac
  rustup target list --installed | grep -qx "$target" || rustup target add "$target"
  cargo build --release --locked --quiet --target "$target"
  mkdir -p "$OUT/$arch"
  cp "target/$target/release/host2mqtt" "$OUT/$arch/host2mqtt"
  printf '%s %s bytes: %s\n' "$target" "$(stat -c %s "$OUT/$arch/host2mqtt")" \
    "$(file -b "$OUT/$arch/host2mqtt" | cut -d, -f1,2,4,6)"
done

# The image's trust store for mqtt.tls with the system roots: Mozilla's set
# as Debian ships it, without this machine's local additions
# (/usr/local/share/ca-certificates, e.g. a proxy's CA) that the merged
# /etc/ssl/certs/ca-certificates.crt would carry into every image.
if [ -d /usr/share/ca-certificates/mozilla ]; then
  cat /usr/share/ca-certificates/mozilla/*.crt > "$OUT/ca-certificates.crt"
else
  need_tool update-ca-certificates ca-certificates
  cat /usr/share/ca-certificates/mozilla/*.crt > "$OUT/ca-certificates.crt"
fi
echo "ca-certificates.crt: $(grep -c 'BEGIN CERTIFICATE' "$OUT/ca-certificates.crt") roots"
