//! Golden output: what `check --json` publishes for the captured `vm`
//! fixture host, compared byte for byte so that any change to discovery
//! shows up as a reviewed diff. Regenerate with
//! `UPDATE_GOLDEN=1 cargo test --test golden`.

mod common;

use std::path::Path;

use common::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");

/// Values that depend on the machine running the test (statvfs of the real
/// filesystem under the fixture root) or on the clock.
fn is_volatile(key: &str) -> bool {
    key.starts_with("disk_") || matches!(key, "last_seen" | "cycle_duration" | "version")
}

fn compare(name: &str, actual: &str) {
    let path = Path::new(GOLDEN).join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == actual,
        "{name} differs from the golden file; review the change and regenerate with UPDATE_GOLDEN=1.\n--- expected\n{expected}\n--- actual\n{actual}"
    );
}

/// Runs `check --json` on fixture trees and returns the discovery and the
/// state (info and state merged) payloads as pretty JSON, volatile values
/// masked.
fn check_json(proc: &str, sys: &str) -> (String, String) {
    let dir = open_tempdir();
    let conf = dir.path().join("c.toml");
    write_file(
        &conf,
        &format!(
            "node_id = \"golden\"\n[host]\nproc = \"{FIXTURES}/{proc}\"\nsys = \"{FIXTURES}/{sys}\"\nroot = \"{FIXTURES}/root/vm\"\n\
             # Sources reach this machine's engine, buses and tools, not the fixture host.\n\
             [containers]\nenabled = false\n[systemd.system]\nenabled = false\n\
             [hardware.nvidia]\nenabled = false\n[hardware.smart]\nenabled = false\n"
        ),
    );
    let out = std::process::Command::new(bin())
        .arg("--config")
        .arg(&conf)
        .args(["check", "--json"])
        .output()
        .expect("run check");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let msgs = json(&String::from_utf8_lossy(&out.stdout));
    let discovery = &msgs[1]["payload"];
    let mut discovery_text = serde_json::to_string_pretty(discovery).expect("json");
    discovery_text = discovery_text.replace(&format!("\"{}\"", env!("CARGO_PKG_VERSION")), "\"<version>\"");

    // The state with the retained info (steady values, attributes) in
    // front of it, as one object: what HA combines.
    let mut state = serde_json::Map::new();
    for suffix in ["/info", "/state"] {
        let msg = msgs
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|m| m["topic"].as_str().is_some_and(|t| t.ends_with(suffix)))
            })
            .unwrap_or_else(|| panic!("no {suffix} message: {msgs}"));
        state.extend(msg["payload"].as_object().expect("object").clone());
    }
    for (k, v) in state.iter_mut() {
        if is_volatile(k) {
            *v = serde_json::Value::String("<varies>".into());
        }
    }
    (
        discovery_text + "\n",
        serde_json::to_string_pretty(&state).expect("json") + "\n",
    )
}

#[test]
fn check_json_of_the_fixture_host_matches_golden() {
    let (discovery, state) = check_json("proc/vm/t0", "sys/vm");
    compare("discovery.json", &discovery);
    compare("state.json", &state);
}

/// The hardware entities (temperatures, fans, GPU, OOM kills) of the AMD
/// desktop sysfs fixture, on the VM's /proc.
#[test]
fn check_json_of_the_amd_desktop_sensors_matches_golden() {
    let (discovery, state) = check_json("proc/oom", "sys/amd");
    compare("amd-discovery.json", &discovery);
    compare("amd-state.json", &state);
}
