//! The bad-config matrix: every case exits 78 (EX_CONFIG) naming the key,
//! from `check` and `run` alike, and never panics.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// One bad config: TOML for the root, the `[mqtt]` table and any other
/// tables, and the key the error must name.
struct Case {
    what: &'static str,
    root: String,
    mqtt: String,
    tables: String,
    key: &'static str,
}

fn case(what: &'static str, root: &str, mqtt: &str, tables: &str, key: &'static str) -> Case {
    Case {
        what,
        root: root.into(),
        mqtt: mqtt.into(),
        tables: tables.into(),
        key,
    }
}

/// Runs `host2mqtt <command>` on `config`; kills it (and fails) if it is
/// still running after 30 s, which for a bad config means it was accepted.
/// The binary under test: `CONFIG_ERRORS_BIN` (the fault suite's hook
/// passes the suite's binary) or the one cargo built.
fn exit_of(command: &str, config: &std::path::Path) -> (Option<i32>, String) {
    let bin = std::env::var("CONFIG_ERRORS_BIN")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| bin().to_string());
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(config)
        .arg(command)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            return (status.code(), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return (
                None,
                format!("`{command}` still running after 30s: the config was accepted"),
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_bad_config_exits_78_naming_the_key_from_check_and_run() {
    let dir = open_tempdir();
    let garbage_ca = dir.path().join("garbage-ca.pem");
    write_file(&garbage_ca, "this is not a certificate\n");
    let garbage_ca = garbage_ca.display().to_string();
    let long = |n: usize| "a".repeat(n);
    let cases = [
        case(
            "keepalive wraps at 65536s",
            "",
            "keepalive = \"65536s\"",
            "",
            "mqtt.keepalive",
        ),
        case(
            "keepalive of 100000h",
            "",
            "keepalive = \"100000h\"",
            "",
            "mqtt.keepalive",
        ),
        case(
            "a 65535-character node_id",
            &format!("node_id = \"{}\"", long(65535)),
            "",
            "",
            "node_id",
        ),
        case(
            "a node_id longer than HA's object ids",
            &format!("node_id = \"{}\"", long(65)),
            "",
            "",
            "node_id",
        ),
        case(
            "a device name longer than 255",
            &format!("device_name = \"{}\"", long(300)),
            "",
            "",
            "device_name",
        ),
        case(
            "a base topic longer than MQTT allows",
            "",
            &format!("base_topic = \"{}\"", long(70000)),
            "",
            "mqtt.base_topic",
        ),
        case(
            "a discovery prefix longer than MQTT allows",
            "",
            "",
            &format!("[homeassistant]\ndiscovery_prefix = \"{}\"", long(70000)),
            "homeassistant.discovery_prefix",
        ),
        case("port 0", "", "port = 0", "", "mqtt.port"),
        case(
            "an interval of 100 years",
            "interval = \"100y\"",
            "",
            "",
            "interval",
        ),
        case(
            "a client id with NUL",
            "",
            "client_id = \"a\\u0000b\"",
            "",
            "mqtt.client_id",
        ),
        case(
            "a client id longer than MQTT allows",
            "",
            &format!("client_id = \"{}\"", long(70000)),
            "",
            "mqtt.client_id",
        ),
        case(
            "expire_after shorter than the interval",
            "interval = \"30s\"",
            "",
            "[homeassistant]\nexpire_after = \"10s\"",
            "homeassistant.expire_after",
        ),
        case(
            "a port as a string in the file",
            "",
            "port = \"1883\"",
            "",
            "mqtt.port",
        ),
        case(
            "a switch as a string in the file",
            "",
            "",
            "[collectors.cpu]\nenabled = \"yes\"",
            "collectors.cpu.enabled",
        ),
        case(
            "a missing password file",
            "",
            "username = \"u\"\npassword_file = \"/nonexistent/h2m-password\"",
            "",
            "mqtt.password_file",
        ),
        case(
            "a missing CA file",
            "",
            "[mqtt.tls]\nenabled = true\nca_file = \"/nonexistent/h2m-ca.pem\"",
            "",
            "mqtt.tls",
        ),
        case(
            "a garbage CA file",
            "",
            &format!("[mqtt.tls]\nenabled = true\nca_file = \"{garbage_ca}\""),
            "",
            "mqtt.tls",
        ),
    ];
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let conf = dir.path().join(format!("c{i}.toml"));
        // `[mqtt.tls]` lines close the `[mqtt]` table, so they come last.
        write_file(
            &conf,
            &format!(
                "{}\n{}\n[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nreconnect_min = \"200ms\"\n{}\n",
                c.root,
                c.tables,
                free_port(),
                c.mqtt
            ),
        );
        for command in ["check", "run"] {
            let (code, err) = exit_of(command, &conf);
            let named = err.contains(&format!("`{}`", c.key));
            if code != Some(78) || !named || err.contains("panicked") {
                failures.push(format!(
                    "{} ({command}): exit {code:?}, expected 78 naming `{}`: {}",
                    c.what,
                    c.key,
                    err.chars().take(300).collect::<String>()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn strings_from_the_environment_are_still_converted() {
    let dir = open_tempdir();
    let conf = dir.path().join("c.toml");
    write_file(
        &conf,
        &format!(
            "node_id = \"t_env\"\n[containers]\nenabled = false\n[systemd.system]\nenabled = false\n[mqtt]\nport = {}\n",
            free_port()
        ),
    );
    let out = Command::new(bin())
        .arg("--config")
        .arg(&conf)
        .args(["check", "--json"])
        .env("HOST2MQTT__MQTT__PORT", "8883")
        .env("HOST2MQTT__COLLECTORS__CPU__ENABLED", "false")
        .output()
        .expect("run check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("cpu_usage"),
        "cpu switched off from the environment"
    );
}
