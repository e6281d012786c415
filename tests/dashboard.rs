//! `host2mqtt dashboard` against a private Mosquitto: it finds every
//! host2mqtt host from the retained discovery (and nothing else) and
//! prints a section per host.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn dashboard_lists_every_host_with_retained_discovery() {
    let broker = Broker::start();
    let rec = Recorder::start(broker.port, "homeassistant/#");
    let agents: Vec<Agent> = ["alpha", "beta", "gamma"]
        .iter()
        .map(|n| {
            Agent::start(
                &test_config(
                    broker.port,
                    n,
                    &format!("area = \"Servers\"\ndevice_name = \"{n}\""),
                ),
                &[],
            )
        })
        .collect();
    for n in ["alpha", "beta", "gamma"] {
        let m = rec.wait_for(
            &format!("homeassistant/device/{n}/config"),
            Duration::from_secs(20),
            |_| true,
        );
        assert_eq!(json(&m.payload)["dev"]["suggested_area"], "Servers");
    }
    // Someone else's device on the same prefix is left out.
    rec.publish(
        "homeassistant/device/bulb/config",
        r#"{"dev":{"ids":["zb1"],"name":"Bulb"},"o":{"name":"zigbee2mqtt"},"cmps":{}}"#,
        true,
    );
    let dir = open_tempdir();
    let conf = dir.path().join("c.toml");
    write_file(&conf, &test_config(broker.port, "dash", ""));
    let out = Command::new(bin())
        .arg("--config")
        .arg(&conf)
        .args(["dashboard", "--wait", "2s"])
        .output()
        .expect("run dashboard");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("3 hosts: alpha, beta, gamma"), "{stderr}");
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert_eq!(yaml.matches("- type: \"grid\"").count(), 3, "{yaml}");
    assert!(yaml.contains("entity: \"sensor.beta_cpu_usage\""), "{yaml}");
    assert!(!yaml.contains("Bulb"), "{yaml}");
    drop(agents);
}

#[test]
fn dashboard_without_hosts_says_so_and_fails() {
    let broker = Broker::start();
    let dir = open_tempdir();
    let conf = dir.path().join("c.toml");
    write_file(&conf, &test_config(broker.port, "dash", ""));
    let out = Command::new(bin())
        .arg("--config")
        .arg(&conf)
        .args(["dashboard", "--wait", "1s"])
        .output()
        .expect("run dashboard");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no host2mqtt device"));
}
