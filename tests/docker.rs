//! The Docker Engine API path against a real dockerd (Debian's docker.io,
//! started privately by `tests/env/docker.sh`), and Compose projects made
//! by Debian's docker-compose against it: the real binary publishes to a
//! private Mosquitto.
//!
//! Skips (with a message) where dockerd, docker-compose or root is
//! missing, unless CI=true, where that is a failure.

mod common;
mod docker_env;

use std::time::Duration;

use common::*;
use docker_env::DockerEnv;
use serde_json::Value;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A state with the info's steady values and `attrs` merged in.
fn state_where(rec: &Recorder, node: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    rec.wait_for_host(node, timeout, pred)
}

fn discovery_where(rec: &Recorder, node: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    let topic = format!("homeassistant/device/{node}/config");
    json(&rec.wait_for(&topic, timeout, |m| pred(&json(&m.payload))).payload)
}

#[test]
fn docker_engine_states_health_oom_kills_and_a_degraded_compose_project_reach_a_subscriber() {
    let test = "docker_engine_states_health_oom_kills_and_a_degraded_compose_project_reach_a_subscriber";
    let Some(env) = DockerEnv::start(test) else {
        return;
    };
    let run = |name: &str, extra: &[&str], cmd: &[&str]| {
        let mut a = vec!["run", "-d", "--network", "none", "--name", name];
        a.extend_from_slice(extra);
        a.push("h2m-bb:latest");
        a.extend_from_slice(cmd);
        env.docker(&a);
    };
    run("d_run", &["--label", "host2mqtt.enable=true"], &["sleep", "1000"]);
    run("d_exit", &[], &["sh", "-c", "exit 3"]);
    run("d_pause", &[], &["sleep", "1000"]);
    env.docker(&["pause", "d_pause"]);
    // Fails at once, again and again: between tries it is "restarting".
    run("d_restart", &["--restart", "always"], &["sh", "-c", "exit 1"]);
    run(
        "d_sick",
        &[
            "--health-cmd",
            "false",
            "--health-interval",
            "1s",
            "--health-retries",
            "1",
        ],
        &["sleep", "1000"],
    );
    // Doubles a string until the 8 MiB limit: the kernel's OOM killer ends it.
    run(
        "d_oom",
        &[
            "-m",
            "8m",
            "--memory-swap",
            "8m",
            "--label",
            "host2mqtt.enable=true",
        ],
        &["sh", "-c", "x=a; while true; do x=$x$x; done"],
    );
    env.docker(&["wait", "d_exit"]);
    env.docker(&["wait", "d_oom"]);
    // A Compose project with a service that runs and one that fails.
    let project = format!("h2m{}", std::process::id());
    let compose_file = env.dir.join("docker-compose.yml");
    write_file(
        &compose_file,
        "version: \"3\"\nservices:\n  web:\n    image: h2m-bb:latest\n    command: sleep 1000\n    network_mode: none\n  \
         worker:\n    image: h2m-bb:latest\n    command: sh -c 'exit 2'\n    network_mode: none\n",
    );
    let file = compose_file.display().to_string();
    env.compose(&["-p", &project, "-f", &file, "up", "-d"]);
    let worker = format!("{project}_worker_1");
    env.docker(&["wait", &worker]);

    let broker = Broker::start();
    let rec = Recorder::start(broker.port, "#");
    let node = "t_docker";
    let config = format!(
        "[containers]\nsocket = \"{}\"\ninclude = [\"d_restart\", \"d_exit\", \"d_sick\", \"d_pause\"]\n[collectors.disk]\nenabled = false\n",
        env.socket.display()
    );
    let agent = Agent::start(&test_config(broker.port, node, &config), &[]);
    let degraded = format!("compose_{project}_degraded");
    let running = format!("compose_{project}_running");

    let s = state_where(&rec, node, SECS(60), |s| {
        s["containers_total"] == 8
            && s["container_d_sick_health"] == true
            && s["container_d_restart_state"] == "restarting"
            && s[degraded.as_str()] == true
    });
    assert!(agent.log().contains("api=\"docker\""), "{}", agent.log());
    assert_eq!(s["avail"]["containers"], true, "{s}");
    // Running: d_run, d_sick, web. Exited: d_exit, d_oom, worker. Paused: d_pause. Other: d_restart.
    assert_eq!(s["containers_running"], 3, "{s}");
    assert_eq!(s["containers_exited"], 3, "{s}");
    assert_eq!(s["containers_paused"], 1, "{s}");
    assert_eq!(s["containers_other"], 1, "{s}");
    assert_eq!(s["containers_unhealthy"], 1, "{s}");
    assert_eq!(s["container_d_pause_state"], "paused");
    assert_eq!(s["container_d_exit_state"], "exited");
    assert_eq!(s["attrs"]["container_d_exit_state"]["exit_code"], 3);
    assert_eq!(
        s["container_d_exit_oom_killed"], false,
        "exit 3 is not an OOM kill: {s}"
    );
    assert_eq!(s["container_d_oom_state"], "exited");
    assert_eq!(s["attrs"]["container_d_oom_state"]["exit_code"], 137);
    // What the engine says, whichever way: dockerd 20.10 on this machine
    // kind flags some memcg OOM kills and misses others (the kernel log
    // shows the kill, `docker events` no "oom"); the unit tests cover a
    // flagged one (tests/fixtures/docker/20.10.24/inspect-oom.json).
    let flagged = env.docker(&["inspect", "-f", "{{.State.OOMKilled}}", "d_oom"]);
    assert_eq!(s["container_d_oom_oom_killed"], flagged.trim() == "true", "{s}");
    assert_eq!(s["container_d_run_oom_killed"], false);
    // Running ones are not inspected (the engine clears OOMKilled on
    // start); a restarting one is, and carries its restart count.
    assert!(
        s["attrs"]["container_d_run_state"]["restart_count"].is_null(),
        "only stopped or restarting ones are inspected: {s}"
    );
    assert!(
        s["attrs"]["container_d_restart_state"]["restart_count"].is_u64(),
        "a restarting container's restart count: {s}"
    );
    assert_eq!(s[running.as_str()], 1, "{s}");
    let attrs = &s["attrs"][degraded.as_str()];
    assert_eq!(attrs["total"], 2, "{s}");
    assert_eq!(
        attrs["problems"],
        serde_json::json!([format!("{worker}: exited (2)")])
    );

    let d = discovery_where(&rec, node, SECS(10), |d| {
        d["cmps"].get(degraded.as_str()).is_some()
    });
    let cmps = &d["cmps"];
    assert_eq!(cmps[degraded.as_str()]["p"], "binary_sensor");
    assert_eq!(cmps[degraded.as_str()]["device_class"], "problem");
    assert_eq!(cmps["container_d_oom_oom_killed"]["device_class"], "problem");
    assert_eq!(cmps[running.as_str()]["icon"], "mdi:docker");

    // The failed worker removed: the project is whole again.
    env.docker(&["rm", "-f", &worker]);
    let s = state_where(&rec, node, SECS(20), |s| s[degraded.as_str()] == false);
    assert_eq!(s["attrs"][degraded.as_str()]["total"], 1);
    drop(agent);
}
