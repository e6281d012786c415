//! `host2mqtt check`: collect and show, no broker needed.

mod common;

use common::*;

fn check(args: &[&str]) -> (String, String) {
    let dir = open_tempdir();
    let conf = dir.path().join("c.toml");
    // A broker port nothing listens on: check must not need one.
    write_file(&conf, &test_config(free_port(), "t_check", ""));
    let out = std::process::Command::new(bin())
        .arg("--config")
        .arg(&conf)
        .args(args)
        .output()
        .expect("run check");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

#[test]
fn check_prints_a_table_of_every_entity_with_rates() {
    let (out, _) = check(&["check"]);
    assert!(out.contains("ENTITY"), "{out}");
    for needle in [
        "sensor.t_check_cpu_usage",
        "CPU usage",
        "%",
        "sensor.t_check_boot_time",
        "Memory used",
    ] {
        assert!(out.contains(needle), "missing {needle}:\n{out}");
    }
    let cpu = out
        .lines()
        .find(|l| l.starts_with("sensor.t_check_cpu_usage "))
        .expect("cpu row");
    assert!(
        !cpu.contains("none yet"),
        "check takes two samples for rates: {cpu}"
    );
}

#[test]
fn check_json_prints_the_exact_topics_and_payloads() {
    let (out, _) = check(&["check", "--json"]);
    let msgs = json(&out);
    let msgs = msgs.as_array().expect("array");
    let topics: Vec<&str> = msgs.iter().map(|m| m["topic"].as_str().expect("topic")).collect();
    assert_eq!(
        topics,
        [
            "host2mqtt/t_check/availability",
            "homeassistant/device/t_check/config",
            "host2mqtt/t_check/info",
            "host2mqtt/t_check/state"
        ]
    );
    assert_eq!(msgs[0]["payload"], "online");
    assert_eq!(msgs[1]["retain"], true);
    assert_eq!(msgs[2]["retain"], true);
    assert_eq!(msgs[3]["retain"], false);
    assert!(msgs[1]["payload"]["cmps"]["cpu_usage"].is_object());
    assert!(msgs[2]["payload"]["kernel"].is_string());
    assert!(msgs[3]["payload"]["cpu_usage"].is_number());
}
