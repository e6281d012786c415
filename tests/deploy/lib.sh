# What only the tests/deploy/*.sh scripts share (sourced, never run). It
# sources tests/lib.sh, the project's one shell library (check, pass/fail,
# skip/skip_all, need, start_broker, temp_dir, on_exit, ...), and adds:
#
#   deploy_work PREFIX [WHY_ROOT]   WORK = a temp dir the rootless test user may read;
#                                   with WHY_ROOT: root and podman needed (skip_all
#                                   otherwise), CONTAINERS_CONF set for this machine
#   readme_broker DIR PORT USER:PW...   start_broker with those logins and the
#                                   README's ACL (mosquitto.acl), every log line
#   host_node_id                    the node_id host2mqtt derives from the host name
#   build_dist STEP...              ARCHES=amd64 packaging/build.sh STEP... (fatal when it fails)
#   static_binary                   BIN = $HOST2MQTT_STATIC_BIN, else build_dist bin's x86_64 binary
#   ensure_quadlet, quadlet_dryrun DIR, generated_unit OUTPUT NAME, exec_start UNIT
#                                   the real Quadlet generator (Debian forky's
#                                   podman in the HA harness's chroot)

# shellcheck source=../lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
DEPLOY_DIR=$PROJECT/tests/deploy
# The image the scripts build and run; not the name users pull.
TEST_IMAGE=${TEST_IMAGE:-localhost/host2mqtt:deploy-test}

deploy_work() {
  if [ -n "${2:-}" ]; then
    [ "$(id -u)" = 0 ] || skip_all "needs root ($2)"
    need podman podman runc uidmap slirp4netns fuse-overlayfs
  fi
  temp_dir WORK "$1" || fatal "temp dir"
  chmod 755 "$WORK"
  # The podman settings that work on this machine kind (tests/env's), in a
  # copy the rootless test user can read wherever the clone is.
  install -m 644 "$PROJECT/tests/env/systemd-containers.conf" "$WORK/containers.conf"
  export CONTAINERS_CONF=$WORK/containers.conf
}

readme_broker() {
  local dir=$1 port=$2
  shift 2
  BROKER_USERS="$*" BROKER_ACL=$DEPLOY_DIR/mosquitto.acl BROKER_CONF="log_type all
${BROKER_CONF:-}" start_broker "$dir" "$port"
}

host_node_id() { tr -c 'A-Za-z0-9_\n-' '_' </proc/sys/kernel/hostname; }

# VERSION: Cargo.toml's, as packaging/build.sh names the artifacts.
VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$PROJECT/Cargo.toml" | head -1)

build_dist() {
  local out
  log "packaging/build.sh $* (amd64)"
  out=$(cd "$PROJECT" && ARCHES=amd64 INSTALL=1 packaging/build.sh "$@" 2>&1) || fatal "packaging/build.sh $*" "$(tail -n 40 <<<"$out")"
}

static_binary() {
  if [ -n "${HOST2MQTT_STATIC_BIN:-}" ]; then
    BIN=$(realpath "$HOST2MQTT_STATIC_BIN")
  else
    build_dist bin
    BIN=$PROJECT/dist/host2mqtt-x86_64
  fi
}

# --- the Quadlet generator -------------------------------------------------------
# Debian forky's podman (5.x) installed once in the chroot of the HA harness
# (tests/ha/harness; its cache is $H2M_HA_DIR): marked by /.h2m-podman there.
QUADLET=/usr/libexec/podman/quadlet
in_forky() { "$HA_HARNESS" chroot "$@"; }

# ensure_quadlet: the chroot (harness.sh setup when missing: minutes, once)
# and podman in it. Non-zero, with the reason on stdout, when it can't be had.
ensure_quadlet() {
  if ! in_forky -- true >/dev/null 2>&1; then
    log "making the forky chroot: tests/ha/harness/harness.sh setup (minutes, first time only)" >&2
    "$HA_HARNESS" setup >"$WORK/setup.log" 2>&1 || {
      tail -n 5 "$WORK/setup.log"
      return 1
    }
  fi
  in_forky -- test -f /.h2m-podman && return 0
  log "installing podman (for its Quadlet generator) in the forky chroot, once" >&2
  local i
  for i in 1 2 3 4 5 6; do
    in_forky -- flock /.h2m-podman.lock sh -c '[ -f /.h2m-podman ] || {
      apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends podman &&
      test -x '"$QUADLET"' && touch /.h2m-podman; }' >"$WORK/chroot-apt.log" 2>&1 && break
    sleep 5
  done
  in_forky -- test -f /.h2m-podman || {
    tail -n 5 "$WORK/chroot-apt.log"
    return 1
  }
}

# quadlet_dryrun DIR: the generator's whole output for the units in DIR.
quadlet_dryrun() {
  in_forky --bind "$1:/tmp/quadlet-units" -- sh -c "QUADLET_UNIT_DIRS=/tmp/quadlet-units $QUADLET -dryrun -user 2>&1"
}

# generated_unit OUTPUT NAME: the text of NAME.service in a dry run's output.
generated_unit() {
  awk -v want="---$2.service---" '$0 == want { on = 1; next } /^---.*---$/ { on = 0 } on' <<<"$1"
}

# exec_start UNIT_TEXT: ExecStart's words, one per line (no quoting in ours).
exec_start() {
  sed -n 's/^ExecStart=//p' <<<"$1" | tr ' ' '\n' | sed '/^$/d'
}
