//! Containers and pending image updates, end to end: the real binary
//! against a private Mosquitto and a private rootful Podman (its API
//! service on a socket the test owns), and `podman auto-update` output
//! from small scripts that print captured fixtures.
//!
//! The Podman tests skip (with a message) where podman or root is missing,
//! unless CI=true, where that is a failure.

mod common;
mod podman_env;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use podman_env::PodmanEnv;
use serde_json::{json, Value};

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn topics(node: &str) -> (String, String, String) {
    (
        format!("homeassistant/device/{node}/config"),
        format!("host2mqtt/{node}/state"),
        format!("host2mqtt/{node}/command"),
    )
}

/// Waits for a state message, with the info's steady values and `attrs`
/// merged in, whose JSON satisfies `pred`; returns the JSON.
fn state_where(rec: &Recorder, node: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    rec.wait_for_host(node, timeout, pred)
}

/// Waits for a discovery payload whose JSON satisfies `pred`.
fn discovery_where(rec: &Recorder, node: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    let (disc, _, _) = topics(node);
    json(&rec.wait_for(&disc, timeout, |m| pred(&json(&m.payload))).payload)
}

fn count_lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

fn containers_config(socket: &Path, extra: &str) -> String {
    format!(
        "[containers]\nsocket = \"{}\"\n{extra}\n[collectors.disk]\nenabled = false\n",
        socket.display()
    )
}

#[test]
fn libpod_counts_and_opted_in_containers_reach_a_subscriber() {
    let Some(env) = PodmanEnv::start("libpod_counts_and_opted_in_containers_reach_a_subscriber") else {
        return;
    };
    env.create_one_of_each("a_");
    let broker = Broker::start();
    let rec = Recorder::start(broker.port, "#");
    let node = "t_ctr_libpod";
    let config = containers_config(&env.socket, "include = [\"a_sick\"]");
    let agent = Agent::start(&test_config(broker.port, node, &config), &[]);

    // CPU % needs two stats samples, so this is at least the second cycle.
    let s = state_where(&rec, node, SECS(20), |s| {
        s["containers_total"] == 5 && s["container_a_run_cpu"].is_number()
    });
    assert_eq!(s["avail"]["containers"], true, "{s}");
    for (key, want) in [
        ("containers_running", 2),
        ("containers_exited", 1),
        ("containers_paused", 1),
        ("containers_other", 1),
        ("containers_unhealthy", 1),
    ] {
        assert_eq!(s[key], want, "{key}: {s}");
    }
    // Opted in by label (a_run) and by name glob (a_sick); nothing else.
    assert_eq!(s["container_a_run_state"], "running");
    assert_eq!(s["container_a_sick_state"], "running");
    assert_eq!(s["container_a_sick_health"], true);
    assert!(
        s["container_a_run_health"].is_null(),
        "no health check is unknown: {s}"
    );
    assert!(s["container_a_run_memory"].as_f64().is_some(), "{s}");
    assert!(s["container_a_sick_cpu"].as_f64().is_some(), "{s}");
    for other in ["a_exit", "a_pause", "a_created"] {
        assert!(
            s.get(format!("container_{other}_state")).is_none(),
            "{other} not opted in: {s}"
        );
    }
    assert_eq!(
        s["attrs"]["container_a_run_state"]["image"],
        "localhost/bb:latest"
    );
    assert_eq!(s["attrs"]["container_a_sick_state"]["health"], "unhealthy");

    let d = discovery_where(&rec, node, SECS(10), |d| {
        d["cmps"].get("container_a_sick_health").is_some()
    });
    let cmps = &d["cmps"];
    assert_eq!(cmps["containers_running"]["p"], "sensor");
    assert_eq!(cmps["containers_running"]["state_class"], "measurement");
    let avail = cmps["containers_running"]["availability"].to_string();
    assert!(avail.contains("value_json.avail.containers"), "{avail}");
    let state = &cmps["container_a_run_state"];
    assert_eq!(state["device_class"], "enum");
    let options = state["options"].as_array().expect("options");
    for word in ["created", "running", "paused", "exited", "stopped"] {
        assert!(options.contains(&json!(word)), "{word} in {options:?}");
    }
    assert_eq!(state["json_attributes_topic"], format!("host2mqtt/{node}/info"));
    assert_eq!(cmps["container_a_sick_health"]["p"], "binary_sensor");
    assert_eq!(cmps["container_a_sick_health"]["device_class"], "problem");
    assert_eq!(cmps["container_a_run_cpu"]["unit_of_measurement"], "%");
    assert_eq!(cmps["container_a_run_memory"]["device_class"], "data_size");

    // Discovery goes out when the entity set changes, not every cycle.
    rec.clear();
    std::thread::sleep(SECS(3));
    let (disc, _, _) = topics(node);
    assert!(
        rec.on(&disc).is_empty(),
        "discovery re-sent while nothing changed"
    );

    // A container that goes away loses its entities: HA's removal stub.
    env.podman(&["rm", "--force", "--time", "0", "a_run"]);
    discovery_where(&rec, node, SECS(15), |d| {
        d["cmps"]["container_a_run_state"] == json!({"p": "sensor"})
    });
    let s = state_where(&rec, node, SECS(10), |s| s["containers_total"] == 4);
    assert!(s.get("container_a_run_state").is_none(), "{s}");
    drop(agent);
}

#[test]
fn engine_gone_makes_container_entities_unavailable_while_the_rest_keeps_publishing() {
    let Some(mut env) =
        PodmanEnv::start("engine_gone_makes_container_entities_unavailable_while_the_rest_keeps_publishing")
    else {
        return;
    };
    env.podman(&[
        "run",
        "-d",
        "--network=none",
        "--name",
        "b_web",
        "--label",
        "host2mqtt.enable=true",
        "localhost/bb:latest",
        "sleep",
        "1000",
    ]);
    let broker = Broker::start();
    let rec = Recorder::start(broker.port, "#");
    let node = "t_ctr_gone";
    let agent = Agent::start(
        &test_config(
            broker.port,
            node,
            &containers_config(&env.socket, "timeout = \"500ms\""),
        ),
        &[],
    );
    state_where(&rec, node, SECS(20), |s| {
        s["avail"]["containers"] == true && s["containers_total"] == 1
    });

    // From here on only what comes after each step counts.
    rec.clear();
    env.kill_service();
    let down = state_where(&rec, node, SECS(10), |s| s["avail"]["containers"] == false);
    assert!(down["containers_total"].is_null(), "{down}");
    assert!(
        down["container_b_web_state"].is_null(),
        "entity kept, value gone: {down}"
    );
    // The rest of the host keeps coming, cycle after cycle.
    let (_, state_topic, _) = topics(node);
    let before = rec.on(&state_topic).len();
    let later = state_where(&rec, node, SECS(10), |s| {
        s["avail"]["containers"] == false && s["cpu_usage"].is_number()
    });
    assert!(later["last_seen"].is_string(), "{later}");
    std::thread::sleep(SECS(3));
    let after = rec.on(&state_topic).len();
    assert!(
        after >= before + 3,
        "states stopped coming: {before} before, {after} 3 s later; the agent's log:\n{}",
        agent.log()
    );
    // The entities stay: no new discovery (no removal stubs), just values gone.
    let (disc, _, _) = topics(node);
    assert!(
        rec.on(&disc).is_empty(),
        "discovery changed while the engine was away"
    );
    // One log line for the outage, not one per cycle.
    assert_eq!(
        count_lines(&agent.log(), "container engine not answering"),
        1,
        "{}",
        agent.log()
    );

    rec.clear();
    env.serve();
    let up = state_where(&rec, node, SECS(15), |s| s["avail"]["containers"] == true);
    assert_eq!(up["container_b_web_state"], "running", "{up}");
    assert_eq!(count_lines(&agent.log(), "container engine answering again"), 1);
}

#[test]
fn the_docker_api_against_podmans_compatible_endpoint_gives_the_same_counts() {
    let Some(env) =
        PodmanEnv::start("the_docker_api_against_podmans_compatible_endpoint_gives_the_same_counts")
    else {
        return;
    };
    env.create_one_of_each("c_");
    let broker = Broker::start();
    let rec = Recorder::start(broker.port, "#");
    let node = "t_ctr_docker";
    let agent = Agent::start(
        &test_config(
            broker.port,
            node,
            &containers_config(&env.socket, "api = \"docker\""),
        ),
        &[],
    );
    let s = state_where(&rec, node, SECS(20), |s| {
        s["containers_total"] == 5 && s["container_c_run_cpu"].is_number()
    });
    for (key, want) in [
        ("containers_running", 2),
        ("containers_exited", 1),
        ("containers_paused", 1),
        ("containers_other", 1),
        // Podman's Docker-compatible list carries no health (Docker's own
        // does); the libpod API, which `auto` picks for Podman, has it.
        ("containers_unhealthy", 0),
    ] {
        assert_eq!(s[key], want, "{key}: {s}");
    }
    assert_eq!(s["container_c_run_state"], "running");
    assert!(s["container_c_run_memory"].as_f64().is_some(), "{s}");
    assert!(agent.log().contains("api=\"docker\""), "{}", agent.log());
}

/// A stand-in `podman` that prints captured `auto-update` output: the
/// program path is the runner's seam. It records each call in `calls`.
fn fake_podman(dir: &Path, body: &str) -> PathBuf {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/autoupdate");
    let path = dir.join("podman");
    let text = format!(
        "#!/bin/sh\nF={}\nD={}\necho \"$*\" >> \"$D/calls\"\n{body}\n",
        fixtures.display(),
        dir.display()
    );
    std::fs::write(&path, text).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn updates_config(program: &Path, extra: &str) -> String {
    format!(
        "[containers]\nenabled = false\n[containers.updates]\nsource = \"command\"\ncommand = \"{}\"\nfirst_check_after = \"0s\"\n{extra}\n",
        program.display()
    )
}

#[test]
fn a_pending_image_update_is_published_and_the_apply_button_runs_podman_auto_update() {
    let dir = open_tempdir();
    // Pending until applied; the apply run reports the update and takes a
    // moment, so the progress is visible.
    let podman = fake_podman(
        dir.path(),
        "case \"$*\" in\n\
         *--dry-run*) if [ -e \"$D/applied\" ]; then cat \"$F/4.3.1-up-to-date.json\"; else cat \"$F/4.3.1-pending.json\"; fi ;;\n\
         *) sleep 1; touch \"$D/applied\"; cat \"$F/4.3.1-updated.json\" ;;\n\
         esac",
    );
    let broker = Broker::start();
    let rec = Recorder::start(broker.port, "#");
    let node = "t_upd_apply";
    let (_, _, command) = topics(node);
    let agent = Agent::start(
        &test_config(
            broker.port,
            node,
            &updates_config(&podman, "apply_from_ha = true"),
        ),
        &[],
    );

    let s = state_where(&rec, node, SECS(15), |s| s["updates_pending"] == 1);
    assert_eq!(s["avail"]["updates"], true);
    assert_eq!(s["updates_available"], true);
    assert_eq!(
        s["container_autoapp_update"],
        json!({
            "installed_version": "current",
            "latest_version": "newer",
            "title": "127.0.0.1:5000/app:latest",
            "in_progress": false,
        })
    );
    assert_eq!(s["attrs"]["updates_available"]["containers"], json!(["autoapp"]));
    assert_eq!(
        s["attrs"]["updates_available"]["images"],
        json!(["127.0.0.1:5000/app:latest"])
    );
    let d = discovery_where(&rec, node, SECS(10), |d| {
        d["cmps"].get("container_autoapp_update").is_some()
    });
    let update = &d["cmps"]["container_autoapp_update"];
    assert_eq!(update["p"], "update");
    assert_eq!(update["payload_install"], "apply_container_updates");
    assert_eq!(update["command_topic"], command);
    let button = &d["cmps"]["updates_apply"];
    assert_eq!(button["p"], "button");
    assert_eq!(button["payload_press"], "apply_container_updates");
    assert_eq!(d["cmps"]["updates_available"]["device_class"], "update");

    // Anything but the announced word triggers nothing.
    rec.publish(&command, "reboot", false);
    let deadline = std::time::Instant::now() + SECS(5);
    while !agent.log().contains("ignoring a command no entity announced") {
        assert!(std::time::Instant::now() < deadline, "{}", agent.log());
        std::thread::sleep(Duration::from_millis(50));
    }

    rec.clear();
    rec.publish(&command, "apply_container_updates", false);
    state_where(&rec, node, SECS(10), |s| {
        s["container_autoapp_update"]["in_progress"] == true
    });
    let done = state_where(&rec, node, SECS(15), |s| {
        s["updates_pending"] == 0 && s["container_autoapp_update"]["in_progress"] == false
    });
    assert_eq!(done["updates_available"], false);
    assert_eq!(done["container_autoapp_update"]["latest_version"], "current");
    let last_apply = &done["attrs"]["updates_available"]["last_apply"];
    assert_eq!(last_apply["ok"], true, "{last_apply}");
    assert_eq!(last_apply["updated"], json!(["autoapp"]));

    let calls = std::fs::read_to_string(dir.path().join("calls")).expect("calls");
    let applies = calls
        .lines()
        .filter(|l| *l == "auto-update --format json")
        .count();
    let checks = calls
        .lines()
        .filter(|l| *l == "auto-update --dry-run --format json")
        .count();
    assert_eq!(applies, 1, "{calls}");
    assert_eq!(checks, 2, "the check, and the re-check after applying: {calls}");
}

#[test]
fn a_failing_hanging_garbled_or_missing_update_check_is_unknown_never_no_updates() {
    let dir = open_tempdir();
    let mk = |name: &str, body: &str| {
        let sub = dir.path().join(name);
        std::fs::create_dir(&sub).expect("mkdir");
        fake_podman(&sub, body)
    };
    let cases = [
        (
            "t_upd_fail",
            mk(
                "fail",
                "echo 'Error: dial unix /run/systemd/private: connect: no such file or directory' >&2; exit 125",
            ),
            "exited with 125: Error: dial unix",
        ),
        (
            "t_upd_hang",
            mk("hang", "echo $$ > \"$D/pid\"; sleep 60; cat \"$F/4.3.1-pending.json\""),
            "killed after 1s",
        ),
        ("t_upd_garbage", mk("garbage", "cat \"$F/garbage.txt\""), "malformed auto-update JSON"),
        ("t_upd_missing", dir.path().join("no/such/podman"), "not found"),
    ];
    let broker = Broker::start();
    let rec = Recorder::start(broker.port, "#");
    let agents: Vec<Agent> = cases
        .iter()
        .map(|(node, program, _)| {
            Agent::start(
                &test_config(broker.port, node, &updates_config(program, "timeout = \"1s\"")),
                &[],
            )
        })
        .collect();
    for ((node, _, why), agent) in cases.iter().zip(&agents) {
        let s = state_where(&rec, node, SECS(15), |s| s["avail"]["updates"] == false);
        assert!(s["updates_pending"].is_null(), "{node}: {s}");
        assert!(s["updates_available"].is_null(), "{node}: {s}");
        let error = s["attrs"]["updates_available"]["error"].as_str().unwrap_or("");
        assert!(error.contains(why), "{node}: {error:?} should say {why:?}");
        assert_eq!(
            count_lines(&agent.log(), "container update check failed"),
            1,
            "{}",
            agent.log()
        );
    }
    // The hung check was killed, not left behind.
    let pid = std::fs::read_to_string(dir.path().join("hang/pid")).expect("pid");
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.split(' ').nth(2) == Some("Z"),
        "still running: {stat}"
    );
}

/// Replaces `path` the way the timer does: write aside, rename over.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[test]
fn updates_from_the_timers_file_follow_the_file_and_a_bad_or_stale_file_is_unknown() {
    let dir = open_tempdir();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/autoupdate");
    let fixture = |name: &str| std::fs::read_to_string(fixtures.join(name)).expect("fixture");
    let file = dir.path().join("auto-update.json");
    write_atomically(&file, &fixture("5.x-docs-mixed.json"));
    let broker = Broker::start();
    let rec = Recorder::start(broker.port, "#");
    let node = "t_upd_file";
    let config = format!(
        "[containers]\nenabled = false\n[containers.updates]\nsource = \"file\"\nfile = \"{}\"\n",
        file.display()
    );
    let _agent = Agent::start(&test_config(broker.port, node, &config), &[]);

    // One pending, one rolled back (still not on the new image), one failed:
    // updates are available, but how many is not known.
    let s = state_where(&rec, node, SECS(10), |s| s["updates_available"] == true);
    assert!(s["updates_pending"].is_null(), "{s}");
    assert_eq!(s["container_systemd_web_update"]["latest_version"], "newer");
    assert_eq!(s["container_systemd_proxy_update"]["latest_version"], "newer");
    assert_eq!(s["container_systemd_db_update"]["latest_version"], "current");
    assert_eq!(
        s["attrs"]["updates_available"]["unknown"],
        json!(["systemd-cache"])
    );

    rec.clear();
    write_atomically(&file, &fixture("truncated.json"));
    let s = state_where(&rec, node, SECS(10), |s| s["avail"]["updates"] == false);
    let error = s["attrs"]["updates_available"]["error"].as_str().unwrap_or("");
    assert!(error.contains("auto-update.json"), "{error}");

    rec.clear();
    write_atomically(&file, &fixture("4.3.1-up-to-date.json"));
    let s = state_where(&rec, node, SECS(10), |s| s["avail"]["updates"] == true);
    assert_eq!(s["updates_pending"], 0);
    assert_eq!(s["updates_available"], false);
    assert!(
        s.get("container_systemd_web_update").is_none(),
        "gone from the report: {s}"
    );

    rec.clear();
    write_atomically(&file, &fixture("timer-error.json"));
    let s = state_where(&rec, node, SECS(10), |s| s["avail"]["updates"] == false);
    let error = s["attrs"]["updates_available"]["error"].as_str().unwrap_or("");
    assert!(error.contains("exited with 125"), "{error}");

    // The timer stopped: an old file is unknown, not "no updates".
    rec.clear();
    write_atomically(&file, &fixture("4.3.1-up-to-date.json"));
    state_where(&rec, node, SECS(10), |s| s["avail"]["updates"] == true);
    let ok = std::process::Command::new("touch")
        .args(["-d", "2 days ago"])
        .arg(&file)
        .status()
        .expect("touch")
        .success();
    assert!(ok);
    rec.clear();
    let s = state_where(&rec, node, SECS(10), |s| s["avail"]["updates"] == false);
    let error = s["attrs"]["updates_available"]["error"].as_str().unwrap_or("");
    assert!(error.contains("host2mqtt-updates.timer"), "{error}");
}

#[test]
fn the_update_timer_writes_podmans_answer_atomically_under_a_real_systemd() {
    // A real systemd user manager, in a container booted from the systemd
    // tests' image (built once by tests/env/systemd-image.sh, then cached).
    let test = "the_update_timer_writes_podmans_answer_atomically_under_a_real_systemd";
    if !podman_env::available(test) {
        return;
    }
    let has_debootstrap = std::process::Command::new("sh")
        .args(["-c", "command -v debootstrap"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_debootstrap {
        let why = "debootstrap is missing (apt-get install -y debootstrap): no systemd image to boot";
        common::skip(test, why);
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/env/updates-timer.sh");
    let out = std::process::Command::new(script)
        .output()
        .expect("run updates-timer.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("passed, 0 failed"), "{text}");
}

#[test]
fn a_socket_the_agent_may_not_use_is_unavailable_with_one_clear_log_line() {
    let test = "a_socket_the_agent_may_not_use_is_unavailable_with_one_clear_log_line";
    // Root is let into any socket: run the agent as `nobody` against a
    // socket only root may use.
    let as_nobody = |args: &[&str]| {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", bin()])
            .args(args);
        c
    };
    let usable = rustix::process::geteuid().is_root()
        && as_nobody(&["--version"])
            .output()
            .is_ok_and(|o| o.status.success());
    if !usable {
        let why = "needs root and setpriv, and a binary user nobody may run";
        common::skip(test, why);
        return;
    }
    let dir = open_tempdir();
    let socket = dir.path().join("podman.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let broker = Broker::start();
    let rec = Recorder::start(broker.port, "#");
    let node = "t_ctr_denied";
    let conf = dir.path().join("h2m.toml");
    write_file(
        &conf,
        &test_config(broker.port, node, &containers_config(&socket, "")),
    );
    let log_path = dir.path().join("agent.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut child = as_nobody(&["--config", conf.to_str().expect("utf-8"), "run"])
        .env("HOST2MQTT_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn agent as nobody");

    let s = state_where(&rec, node, SECS(10), |s| {
        s["avail"]["containers"] == false && s["cpu_usage"].is_number()
    });
    assert!(s["containers_total"].is_null(), "{s}");
    std::thread::sleep(SECS(2));
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = child.kill();
    let _ = child.wait();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("container engine not answering"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert!(
        lines[0].contains("permission denied") && lines[0].contains("podman.sock"),
        "{}",
        lines[0]
    );
}
