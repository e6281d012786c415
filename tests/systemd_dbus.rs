//! systemd over D-Bus against a REAL systemd: Debian bookworm booted in a
//! Podman container (`tests/env/systemd-image.sh` builds the image once),
//! its system bus reached from here through a bind-mounted directory. The
//! real binary publishes to a private Mosquitto; a recorder checks what
//! Home Assistant would get. systemd is never started on this machine.
//!
//! Needs root, podman, debootstrap and dbus-daemon. Without them the tests
//! say so and pass, unless `CI=true`, where they fail.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{json, open_tempdir, write_file, Broker, Msg, Recorder, TempDir};
use serde_json::Value as Json;

const SECS: fn(u64) -> Duration = Duration::from_secs;
const ENV_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/env");

// ---------------------------------------------------------------- harness

/// Whether podman & co. are here; skips (or, under CI, fails) otherwise.
fn tools_present(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    let root = running_as_root();
    if missing.is_empty() && root {
        return true;
    }
    let why = format!(
        "missing {missing:?}{}; apt-get install -y podman runc uidmap slirp4netns fuse-overlayfs debootstrap dbus-daemon",
        if root { "" } else { ", not root" }
    );
    common::skip("systemd D-Bus tests", &why);
    false
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn podman() -> Command {
    let mut c = Command::new("podman");
    c.env(
        "CONTAINERS_CONF",
        Path::new(ENV_DIR).join("systemd-containers.conf"),
    );
    c
}

/// The image, built once per run (the script caches it across runs).
fn image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let out = Command::new(Path::new(ENV_DIR).join("systemd-image.sh"))
            .env(
                "CONTAINERS_CONF",
                Path::new(ENV_DIR).join("systemd-containers.conf"),
            )
            .output()
            .expect("run tests/env/systemd-image.sh");
        assert!(
            out.status.success(),
            "building the systemd image failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    })
}

/// A real systemd in a container, removed on drop.
struct Systemd {
    name: String,
    dir: TempDir,
}

impl Systemd {
    /// Boots one; `tag` makes the container name unique per test.
    fn boot(tag: &str) -> Systemd {
        let image = image();
        let dir = open_tempdir();
        for sub in ["dbus", "user"] {
            let d = dir.path().join(sub);
            std::fs::create_dir(&d).expect("mkdir");
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        }
        let name = format!("h2m-sd-{tag}-{}", std::process::id());
        let out = podman()
            .args(["run", "-d", "--name", &name, "--systemd=always", "--network=none"])
            .arg("-v")
            .arg(format!("{}:/run/dbus", dir.path().join("dbus").display()))
            .arg("-v")
            .arg(format!("{}:/run/h2m-user", dir.path().join("user").display()))
            .args([image, "/sbin/init"])
            .output()
            .expect("podman run");
        assert!(
            out.status.success(),
            "podman run: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sd = Systemd { name, dir };
        sd.wait_booted();
        sd
    }

    fn wait_booted(&self) {
        let deadline = Instant::now() + SECS(60);
        loop {
            let out = podman()
                .args(["exec", &self.name, "systemctl", "is-system-running", "--wait"])
                .output()
                .expect("podman exec");
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if state == "running" || state == "degraded" {
                return;
            }
            assert!(Instant::now() < deadline, "systemd did not boot: {state:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The system bus, as seen from here.
    fn address(&self) -> String {
        format!(
            "unix:path={}",
            self.dir.path().join("dbus/system_bus_socket").display()
        )
    }

    /// The user `h2m`'s bus (uid 1000), as seen from here.
    fn user_address(&self) -> String {
        format!("unix:path={}", self.dir.path().join("user/bus").display())
    }

    /// Runs a shell script inside; its stdout.
    fn sh(&self, script: &str) -> String {
        let out = podman()
            .args(["exec", &self.name, "sh", "-c", script])
            .output()
            .expect("podman exec");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Writes a file inside.
    fn write(&self, path: &str, text: &str) {
        let mut child = podman()
            .args([
                "exec",
                "-i",
                &self.name,
                "sh",
                "-c",
                &format!("mkdir -p \"$(dirname {path})\" && cat > {path}"),
            ])
            .stdin(Stdio::piped())
            .spawn()
            .expect("podman exec");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
        assert!(child.wait().expect("wait").success(), "writing {path}");
    }

    /// Installs a system unit (and reloads).
    fn install(&self, unit: &str, text: &str) {
        self.write(&format!("/etc/systemd/system/{unit}"), text);
        self.sh("systemctl daemon-reload");
    }

    /// A unit property, as `systemctl show` prints it.
    fn show(&self, unit: &str, property: &str) -> String {
        self.sh(&format!("systemctl show -P {property} {unit}"))
    }

    fn stop(&self) {
        let ok = podman()
            .args(["stop", "-t", "2", &self.name])
            .output()
            .expect("podman stop")
            .status
            .success();
        assert!(ok, "podman stop");
    }

    fn start(&self) {
        let ok = podman()
            .args(["start", &self.name])
            .output()
            .expect("podman start")
            .status
            .success();
        assert!(ok, "podman start");
        self.wait_booted();
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        let _ = podman().args(["rm", "-f", "-t", "0", &self.name]).output();
    }
}

/// A crash-looping service: restarted by systemd 100 ms after each death.
const FLAKY: &str = "[Service]\nExecStart=/bin/sleep infinity\nRestart=always\nRestartSec=100ms\n";
/// A oneshot that always fails.
const FAILING: &str = "[Service]\nType=oneshot\nExecStart=/bin/false\n";

/// The agent's config: broker, node, interval, and the `[systemd]` part.
fn config(port: u16, node: &str, interval: &str, systemd: &str) -> String {
    format!(
        "interval = \"{interval}\"\nnode_id = \"{node}\"\n\n[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nreconnect_min = \"200ms\"\nreconnect_max = \"2s\"\n\n[containers]\nenabled = false\n\n[systemd]\nreconnect_max = \"2s\"\n{systemd}\n"
    )
}

/// The agent as a child process, optionally as another user.
struct Agent {
    child: Child,
    log: PathBuf,
    _dir: TempDir,
}

impl Agent {
    fn start(config: &str, uid: Option<u32>) -> Agent {
        let dir = open_tempdir();
        let conf = dir.path().join("host2mqtt.toml");
        write_file(&conf, config);
        let log = dir.path().join("agent.log");
        let stderr = std::fs::File::create(&log).expect("log file");
        // Another user may not reach the build directory (a checkout under
        // /root): run a copy from the world-readable temp directory.
        let bin = match uid {
            Some(_) => {
                let copy = dir.path().join("host2mqtt");
                std::fs::copy(common::bin(), &copy).expect("copy the binary");
                std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("chmod");
                copy
            }
            None => PathBuf::from(common::bin()),
        };
        let mut cmd = Command::new(bin);
        cmd.arg("--config")
            .arg(&conf)
            .arg("run")
            .env("HOST2MQTT_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("JOURNAL_STREAM")
            .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .stdout(Stdio::null())
            .stderr(stderr);
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        Agent {
            child: cmd.spawn().expect("spawn host2mqtt"),
            log,
            _dir: dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn state_topic(node: &str) -> String {
    format!("host2mqtt/{node}/state")
}

/// The first state after `after` that satisfies `pred`.
fn wait_state(
    rec: &Recorder,
    node: &str,
    after: Instant,
    timeout: Duration,
    pred: impl Fn(&Json) -> bool,
) -> (Msg, Json) {
    // The state with the info's `attrs` merged in, as HA combines them.
    rec.wait_for_host_msg(node, timeout, |m, v| m.at >= after && pred(v))
}

/// The latest discovery components.
fn components(rec: &Recorder, node: &str) -> serde_json::Map<String, Json> {
    let topic = format!("homeassistant/device/{node}/config");
    let last = rec.on(&topic).pop().expect("discovery");
    json(&last.payload)["cmps"].as_object().expect("cmps").clone()
}

fn warnings_matching(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

// ------------------------------------------------------------------ tests

#[test]
fn a_failed_unit_is_counted_and_named_and_the_system_turns_degraded() {
    if !tools_present(&["podman", "runc", "debootstrap"]) {
        return;
    }
    let sd = Systemd::boot("failed");
    let broker = Broker::start();
    let rec = Recorder::start(broker.port, "#");
    let node = "sd_failed";
    // A long interval: what arrives promptly was pushed by systemd's signals.
    let systemd = format!(
        "[systemd.system]\naddress = \"{}\"\nwatch = [\"h2m-*.service\", \"dbus.service\"]\n",
        sd.address()
    );
    let agent = Agent::start(&config(broker.port, node, "30s", &systemd), None);
    let start = Instant::now();
    let (_, s) = wait_state(&rec, node, start, SECS(15), |s| {
        s["avail"]["systemd_system"] == true
    });
    assert_eq!(s["systemd_system_state"], "running", "{s}");
    assert_eq!(s["systemd_system_failed_units"], 0);
    assert_eq!(s["unit_dbus_service_state"], "active");
    assert_eq!(s["unit_dbus_service_running"], true);
    assert_eq!(
        s["attrs"]["systemd_system_failed_units"]["units"],
        serde_json::json!([])
    );

    sd.install("h2m-fail.service", FAILING);
    let asked = Instant::now();
    sd.sh("systemctl start h2m-fail.service");
    let (m, s) = wait_state(&rec, node, asked, SECS(10), |s| {
        s["systemd_system_failed_units"] == 1
    });
    assert!(m.at - asked < SECS(2), "took {:?}", m.at - asked);
    assert_eq!(s["systemd_system_state"], "degraded", "{s}");
    assert_eq!(
        s["attrs"]["systemd_system_failed_units"]["units"],
        serde_json::json!(["h2m-fail.service"])
    );
    rec.wait_for(&state_topic(node), SECS(5), |m| {
        json(&m.payload)["unit_h2m_fail_service_state"] == "failed"
    });

    // What HA is told: valid for its MQTT schemas (enum with options and
    // no unit/state_class; a total without unit; binary_sensor; the
    // systemd group's availability on top of the agent's).
    let c = components(&rec, node);
    let st = &c["unit_h2m_fail_service_state"];
    assert_eq!(st["p"], "sensor");
    assert_eq!(st["device_class"], "enum");
    assert!(st["options"]
        .as_array()
        .expect("options")
        .contains(&Json::from("failed")));
    assert!(st.get("unit_of_measurement").is_none() && st.get("state_class").is_none());
    assert_eq!(
        c["unit_h2m_fail_service_restarts"]["state_class"],
        "total_increasing"
    );
    assert_eq!(c["unit_h2m_fail_service_running"]["p"], "binary_sensor");
    assert_eq!(c["systemd_system_state"]["options"][3], "degraded");
    assert_eq!(c["systemd_system_failed_units"]["availability_mode"], "all");
    assert!(
        c["systemd_system_failed_units"]["availability"][1]["value_template"]
            .as_str()
            .expect("template")
            .contains("value_json.avail.systemd_system")
    );

    // The unit goes away for good: its entities are removed from HA.
    let removed = Instant::now();
    sd.sh("systemctl reset-failed h2m-fail.service; rm /etc/systemd/system/h2m-fail.service; systemctl daemon-reload");
    let (_, s) = wait_state(&rec, node, removed, SECS(10), |s| {
        s["systemd_system_failed_units"] == 0
    });
    assert_eq!(s["systemd_system_state"], "running", "{s}");
    assert!(s.get("unit_h2m_fail_service_state").is_none(), "{s}");
    let topic = format!("homeassistant/device/{node}/config");
    rec.wait_for(&topic, SECS(10), |m| {
        json(&m.payload)["cmps"]["unit_h2m_fail_service_state"] == serde_json::json!({"p": "sensor"})
    });
    assert!(agent.log().contains("connected to systemd"), "{}", agent.log());
}

#[test]
fn a_watched_unit_that_restarts_is_pushed_to_the_broker_before_the_next_cycle() {
    if !tools_present(&["podman", "runc", "debootstrap"]) {
        return;
    }
    let sd = Systemd::boot("restarts");
    sd.install("h2m-flaky.service", FLAKY);
    sd.sh("systemctl start h2m-flaky.service");
    let broker = Broker::start();
    let rec = Recorder::start(broker.port, "#");
    let node = "sd_restarts";
    let systemd = format!(
        "[systemd.system]\naddress = \"{}\"\nwatch = [\"h2m-flaky.service\"]\n",
        sd.address()
    );
    let _agent = Agent::start(&config(broker.port, node, "30s", &systemd), None);
    let (_, s) = wait_state(&rec, node, Instant::now(), SECS(15), |s| {
        s["avail"]["systemd_system"] == true
    });
    assert_eq!(s["unit_h2m_flaky_service_restarts"], 0, "{s}");
    assert_eq!(s["unit_h2m_flaky_service_state"], "active");
    // Let the signal-driven rate limit (a snapshot per 0.5 s at most) settle.
    std::thread::sleep(Duration::from_millis(1500));

    for expected in [1, 2] {
        // Timed from before `podman exec`, so its own start-up counts too.
        let killed = Instant::now();
        sd.sh("systemctl kill -s KILL h2m-flaky.service");
        let (m, _) = wait_state(&rec, node, killed, SECS(10), |s| {
            s["unit_h2m_flaky_service_restarts"] == expected
        });
        eprintln!(
            "restart {expected} reached the broker {:?} after the kill was asked",
            m.at - killed
        );
        // Not a timing assertion (a loaded machine is slow): the interval is
        // 30 s, so a state well before it was pushed by systemd's signal, not
        // by the next cycle. The figure is printed above.
        assert!(
            m.at - killed < SECS(15),
            "restart {expected} took {:?} to reach the broker: not pushed by the signal",
            m.at - killed
        );
        assert_eq!(sd.show("h2m-flaky.service", "NRestarts"), expected.to_string());
        // Caught mid-restart (`activating`) or already back: it ends up running.
        wait_state(&rec, node, killed, SECS(10), |s| {
            s["unit_h2m_flaky_service_restarts"] == expected && s["unit_h2m_flaky_service_running"] == true
        });
        std::thread::sleep(Duration::from_millis(1200));
    }
}

#[test]
fn the_bus_going_away_makes_only_systemd_entities_unavailable_until_it_returns() {
    if !tools_present(&["podman", "runc", "debootstrap"]) {
        return;
    }
    let sd = Systemd::boot("outage");
    let broker = Broker::start();
    let rec = Recorder::start(broker.port, "#");
    let node = "sd_outage";
    let systemd = format!(
        "[systemd.system]\naddress = \"{}\"\nwatch = [\"dbus.service\"]\n",
        sd.address()
    );
    let agent = Agent::start(&config(broker.port, node, "1s", &systemd), None);
    wait_state(&rec, node, Instant::now(), SECS(15), |s| {
        s["avail"]["systemd_system"] == true
    });

    let gone = Instant::now();
    sd.stop();
    let (_, s) = wait_state(&rec, node, gone, SECS(10), |s| {
        s["avail"]["systemd_system"] == false
    });
    assert!(s["systemd_system_state"].is_null(), "{s}");
    assert!(
        s["unit_dbus_service_state"].is_null(),
        "the unit's entity stays, without a value: {s}"
    );
    // The rest keeps publishing, every interval.
    std::thread::sleep(SECS(4));
    let during: Vec<Json> = rec
        .on(&state_topic(node))
        .iter()
        .filter(|m| m.at > gone)
        .map(|m| json(&m.payload))
        .collect();
    assert!(
        during.len() >= 3,
        "{} states while systemd was away",
        during.len()
    );
    let last = during.last().expect("a state");
    assert!(last["cpu_usage"].is_number(), "{last}");
    assert_eq!(last["avail"]["systemd_system"], false);
    assert_eq!(
        last["avail"]["reboot"], true,
        "the reboot sensor needs no D-Bus: {last}"
    );
    // One log line for the outage, however many reconnects failed.
    let log = agent.log();
    assert_eq!(warnings_matching(&log, "systemd unreachable"), 1, "{log}");

    let back = Instant::now();
    sd.start();
    let (_, s) = wait_state(&rec, node, back, SECS(20), |s| {
        s["avail"]["systemd_system"] == true
    });
    assert_eq!(s["unit_dbus_service_state"], "active", "{s}");
    let log = agent.log();
    assert_eq!(warnings_matching(&log, "systemd reachable again"), 1, "{log}");
    assert_eq!(warnings_matching(&log, "systemd unreachable"), 1, "{log}");
}

#[test]
fn the_restart_button_restarts_an_allow_listed_unit_and_nothing_else() {
    if !tools_present(&["podman", "runc", "debootstrap"]) {
        return;
    }
    let sd = Systemd::boot("button");
    sd.install("h2m-flaky.service", FLAKY);
    sd.install("h2m-other.service", FLAKY);
    sd.sh("systemctl start h2m-flaky.service h2m-other.service");
    let broker = Broker::start();
    let rec = Recorder::start(broker.port, "#");
    let node = "sd_button";
    let systemd = format!(
        "[systemd.system]\naddress = \"{}\"\nwatch = [\"h2m-*.service\"]\nrestart = [\"h2m-flaky.service\"]\n",
        sd.address()
    );
    let agent = Agent::start(&config(broker.port, node, "30s", &systemd), None);
    wait_state(&rec, node, Instant::now(), SECS(15), |s| {
        s["avail"]["systemd_system"] == true
    });
    let c = components(&rec, node);
    let button = &c["unit_h2m_flaky_service_restart"];
    assert_eq!(button["p"], "button");
    assert_eq!(button["command_topic"], format!("host2mqtt/{node}/command"));
    assert_eq!(button["payload_press"], "unit_h2m_flaky_service_restart");
    assert!(button.get("value_template").is_none() && button.get("expire_after").is_none());
    assert!(
        !c.contains_key("unit_h2m_other_service_restart"),
        "not allow-listed"
    );

    // One automatic restart, so the count has something to lose: a restart
    // by hand (or by button) starts the unit afresh and resets NRestarts.
    let killed = Instant::now();
    sd.sh("systemctl kill -s KILL h2m-flaky.service");
    wait_state(&rec, node, killed, SECS(10), |s| {
        s["unit_h2m_flaky_service_restarts"] == 1
    });
    let before = sd.show("h2m-flaky.service", "InvocationID");
    let other_before = sd.show("h2m-other.service", "InvocationID");

    let pressed = Instant::now();
    rec.publish(
        &format!("host2mqtt/{node}/command"),
        "unit_h2m_flaky_service_restart",
        false,
    );
    let (_, s) = wait_state(&rec, node, pressed, SECS(10), |s| {
        s["unit_h2m_flaky_service_restarts"] == 0
    });
    assert_eq!(s["unit_h2m_flaky_service_state"], "active", "{s}");
    assert_ne!(sd.show("h2m-flaky.service", "InvocationID"), before, "restarted");

    // A word for a unit outside the allow-list, and one for a unit that is
    // not watched at all: nothing happens.
    rec.publish(
        &format!("host2mqtt/{node}/command"),
        "unit_h2m_other_service_restart",
        false,
    );
    rec.publish(
        &format!("host2mqtt/{node}/command"),
        "unit_dbus_service_restart",
        false,
    );
    std::thread::sleep(SECS(2));
    assert_eq!(sd.show("h2m-other.service", "InvocationID"), other_before);
    let log = agent.log();
    assert!(log.contains("restarting, as asked from Home Assistant"), "{log}");
    // Both refused; the warning is rate-limited (one a minute, with a
    // count of the ones not logged), so the second is counted, not logged.
    assert_eq!(
        warnings_matching(&log, "ignoring a command no entity announced"),
        1,
        "{log}"
    );
}

#[test]
fn the_user_manager_answers_its_own_user_and_refuses_root() {
    if !tools_present(&["podman", "runc", "debootstrap"]) {
        return;
    }
    let sd = Systemd::boot("user");
    // The lingering user's manager starts at boot; its bus appears in the
    // mounted directory once its dbus.socket listens.
    let deadline = Instant::now() + SECS(30);
    while !sd.dir.path().join("user/bus").exists() {
        assert!(Instant::now() < deadline, "no user bus");
        std::thread::sleep(Duration::from_millis(200));
    }
    sd.write(
        "/home/h2m/.config/systemd/user/h2m-app.service",
        "[Service]\nExecStart=/bin/sleep infinity\n",
    );
    sd.sh("chown -R h2m:h2m /home/h2m/.config && systemctl --user -M h2m@ daemon-reload && systemctl --user -M h2m@ start h2m-app.service");
    let broker = Broker::start();
    let rec = Recorder::start(broker.port, "#");
    let systemd = format!(
        "[systemd.system]\nenabled = false\n\n[systemd.user]\nenabled = true\naddress = \"{}\"\nwatch = [\"h2m-*.service\"]\n",
        sd.user_address()
    );

    let node = "sd_user";
    let _agent = Agent::start(&config(broker.port, node, "30s", &systemd), Some(1000));
    let (_, s) = wait_state(&rec, node, Instant::now(), SECS(15), |s| {
        s["avail"]["systemd_user"] == true
    });
    assert_eq!(s["systemd_user_state"], "running", "{s}");
    assert_eq!(s["user_unit_h2m_app_service_state"], "active", "{s}");
    assert_eq!(s["user_unit_h2m_app_service_running"], true);
    assert!(
        s.get("systemd_system_state").is_none(),
        "system manager is off: {s}"
    );
    let c = components(&rec, node);
    assert_eq!(
        c["user_unit_h2m_app_service_state"]["name"],
        "h2m-app.service (user) state"
    );

    // Root is not let onto another user's bus: unavailable, said once.
    let node = "sd_user_root";
    let agent = Agent::start(&config(broker.port, node, "1s", &systemd), None);
    wait_state(&rec, node, Instant::now(), SECS(15), |s| {
        s["avail"]["systemd_user"] == false
    });
    std::thread::sleep(SECS(4));
    let log = agent.log();
    assert_eq!(warnings_matching(&log, "systemd unreachable"), 1, "{log}");
    assert!(log.contains(&sd.user_address()), "the log names the bus: {log}");
}

// ------------------------------------------------- update_engine (Flatcar)

/// A private bus: `dbus-daemon --session` on a socket in `dir`.
struct PrivateBus {
    address: String,
    pid: String,
}

impl PrivateBus {
    fn start(dir: &Path) -> PrivateBus {
        let out = Command::new("dbus-daemon")
            .args(["--session", "--fork", "--print-address=1", "--print-pid=1"])
            .arg(format!("--address=unix:path={}", dir.join("bus").display()))
            .output()
            .expect("dbus-daemon");
        assert!(
            out.status.success(),
            "dbus-daemon: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut lines = BufReader::new(&out.stdout[..]).lines().map_while(Result::ok);
        let address = lines.next().expect("address");
        let pid = lines.next().expect("pid");
        PrivateBus { address, pid }
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(&self.pid).status();
    }
}

/// A stand-in for Flatcar's update_engine: answers `GetStatus` on
/// `com.coreos.update1.Manager` with `operation`, and nothing else.
fn fake_update_engine(address: String, operation: &'static str, version: &'static str) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            use futures_util::StreamExt;
            let conn = zbus::connection::Builder::address(address.as_str())
                .build()
                .await
                .expect("connect");
            let mut calls = zbus::MessageStream::from(&conn);
            conn.request_name("com.coreos.update1").await.expect("name");
            ready_tx.send(()).expect("ready");
            while let Some(Ok(msg)) = calls.next().await {
                if msg.message_type() != zbus::message::Type::MethodCall {
                    continue;
                }
                let h = msg.header();
                let is_status = h.path().is_some_and(|p| p.as_str() == "/com/coreos/update1")
                    && h.interface()
                        .is_some_and(|i| i.as_str() == "com.coreos.update1.Manager")
                    && h.member().is_some_and(|m| m.as_str() == "GetStatus");
                if is_status {
                    let body = (1_763_700_000_i64, 0.0_f64, operation, version, 0_i64);
                    conn.reply(&h, &body).await.expect("reply");
                } else {
                    let name = "org.freedesktop.DBus.Error.UnknownMethod";
                    conn.reply_error(&h, name, &"only GetStatus here")
                        .await
                        .expect("reply error");
                }
            }
        });
    });
    ready_rx.recv_timeout(SECS(10)).expect("fake update_engine ready");
}

#[test]
fn update_engine_waiting_for_a_reboot_turns_reboot_required_on_with_its_reason() {
    if !tools_present(&["dbus-daemon"]) {
        return;
    }
    let dir = open_tempdir();
    let bus = PrivateBus::start(dir.path());
    fake_update_engine(
        bus.address.clone(),
        "UPDATE_STATUS_UPDATED_NEED_REBOOT",
        "4081.2.1",
    );
    // A Flatcar-like root: update_engine's D-Bus policy is installed.
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("usr/share/dbus-1/system.d")).expect("mkdir");
    std::fs::create_dir_all(root.join("run")).expect("mkdir");
    write_file(
        &root.join("usr/share/dbus-1/system.d/com.coreos.update1.conf"),
        "<busconfig/>\n",
    );

    let broker = Broker::start();
    let rec = Recorder::start(broker.port, "#");
    let node = "sd_flatcar";
    let systemd = format!(
        "[systemd.system]\nenabled = false\naddress = \"{}\"\n\n[host]\nroot = \"{}\"\n",
        bus.address,
        root.display()
    );
    // `[host]` after `[systemd]` in the same file: TOML allows any order.
    let _agent = Agent::start(&config(broker.port, node, "1s", &systemd), None);
    let (_, s) = wait_state(&rec, node, Instant::now(), SECS(15), |s| {
        s["reboot_required"] == true
    });
    assert_eq!(
        s["attrs"]["reboot_required"]["reason"], "update_engine: 4081.2.1 is installed",
        "{s}"
    );
    assert_eq!(s["avail"]["reboot"], true);

    // Debian's flag file, read through the host root, adds its reason.
    let flagged = Instant::now();
    write_file(
        &root.join("run/reboot-required"),
        "*** System restart required ***\n",
    );
    let (_, s) = wait_state(&rec, node, flagged, SECS(5), |s| {
        s["attrs"]["reboot_required"]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("/run/reboot-required; update_engine"))
    });
    assert_eq!(s["reboot_required"], true);
    let c = components(&rec, node);
    assert_eq!(c["reboot_required"]["p"], "binary_sensor");
    assert_eq!(
        c["reboot_required"]["json_attributes_template"],
        "{{value_json.attrs.reboot_required|tojson}}"
    );
}

#[test]
fn a_host_without_a_system_bus_gets_no_systemd_entities_and_no_warning() {
    if Path::new("/run/dbus/system_bus_socket").exists() {
        eprintln!("SKIPPED: this machine has a system bus");
        return;
    }
    let broker = Broker::start();
    let rec = Recorder::start(broker.port, "#");
    let node = "sd_nobus";
    // Nobody asked for a bus: no address, no $DBUS_SYSTEM_BUS_ADDRESS.
    let agent = Agent::start(&config(broker.port, node, "1s", ""), None);
    let (_, s) = wait_state(&rec, node, Instant::now(), SECS(15), |s| {
        s["cpu_usage"].is_number()
    });
    assert!(s.get("systemd_system_state").is_none(), "{s}");
    assert_eq!(s["reboot_required"], false, "the reboot sensor still works: {s}");
    let c = components(&rec, node);
    assert!(c.keys().all(|k| !k.starts_with("systemd_")), "{:?}", c.keys());
    let log = agent.log();
    assert!(log.contains("no system bus here"), "{log}");
    assert!(!log.contains("WARN"), "{log}");
}
