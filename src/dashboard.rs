//! `host2mqtt dashboard`: a Lovelace dashboard of every host2mqtt host on
//! the broker, to paste into Home Assistant's raw configuration editor.
//!
//! The hosts come from the retained device discovery payloads
//! (`<prefix>/device/<node_id>/config`); [`hosts_from_discovery`] reads
//! them (long or abbreviated keys) and [`dashboard_yaml`] writes one
//! section per host with built-in cards only: a heading with status badges
//! (last seen, updates, failed units, reboot required), gauges for CPU,
//! memory, disks and temperatures, tiles for load and network, and a
//! history graph of CPU, memory and temperature. Both are pure functions;
//! `main` only does the subscribing.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value as Json};

use crate::reading::slug;

/// One entity of a host, as its discovery announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    /// The entity id HA gives it (its `default_entity_id`).
    pub entity_id: String,
    /// `device_class`, if any.
    pub device_class: Option<String>,
    /// `unit_of_measurement`, if any.
    pub unit: Option<String>,
    /// The entity's name ("Disk /srv used"), if any.
    pub name: Option<String>,
}

/// One host2mqtt device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The node id (from the discovery topic).
    pub node_id: String,
    /// The device name HA shows.
    pub name: String,
    /// Enabled entities by reading key (`cpu_usage`, `disk_root_used`).
    pub entities: BTreeMap<String, Entity>,
}

/// The first of `keys` (the long name, then HA's abbreviation) in `m`.
fn field<'a>(m: &'a Map<String, Json>, keys: &[&str]) -> Option<&'a Json> {
    keys.iter().find_map(|k| m.get(*k))
}

fn text(m: &Map<String, Json>, keys: &[&str]) -> Option<String> {
    field(m, keys).and_then(Json::as_str).map(str::to_owned)
}

/// The host2mqtt hosts among retained discovery messages `(topic, payload)`.
/// Other publishers' devices, empty payloads (removed devices) and
/// payloads that are not JSON are skipped; entities HA creates disabled
/// are left out (a card on them would show a warning). Sorted by name.
pub fn hosts_from_discovery(messages: &[(String, Vec<u8>)]) -> Vec<Host> {
    let mut hosts = Vec::new();
    for (topic, payload) in messages {
        let Some(node_id) = node_id_of(topic) else {
            continue;
        };
        let Ok(Json::Object(p)) = serde_json::from_slice::<Json>(payload) else {
            continue;
        };
        let origin = field(&p, &["origin", "o"]).and_then(Json::as_object);
        let dev = field(&p, &["device", "dev"]).and_then(Json::as_object);
        let ours = origin
            .and_then(|o| text(o, &["name"]))
            .is_some_and(|n| n == "host2mqtt")
            || dev
                .and_then(|d| field(d, &["identifiers", "ids"]))
                .and_then(Json::as_array)
                .is_some_and(|ids| {
                    ids.iter()
                        .any(|i| i.as_str().is_some_and(|s| s.starts_with("host2mqtt_")))
                });
        if !ours {
            continue;
        }
        let name = dev
            .and_then(|d| text(d, &["name"]))
            .unwrap_or_else(|| node_id.to_string());
        let mut entities = BTreeMap::new();
        let cmps = field(&p, &["components", "cmps"]).and_then(Json::as_object);
        for (key, c) in cmps.into_iter().flatten() {
            let Some(c) = c.as_object() else { continue };
            let Some(platform) = text(c, &["platform", "p"]) else {
                continue;
            };
            // A removal stub has nothing but its platform.
            if c.len() == 1 || field(c, &["enabled_by_default", "en"]) == Some(&Json::Bool(false)) {
                continue;
            }
            let entity_id = text(c, &["default_entity_id", "def_ent_id"])
                .unwrap_or_else(|| format!("{platform}.{}_{key}", slug(node_id)));
            entities.insert(
                key.clone(),
                Entity {
                    entity_id,
                    device_class: text(c, &["device_class", "dev_cla"]),
                    unit: text(c, &["unit_of_measurement", "unit_of_meas"]),
                    name: text(c, &["name"]),
                },
            );
        }
        hosts.push(Host {
            node_id: node_id.to_string(),
            name,
            entities,
        });
    }
    hosts.sort_by(|a, b| (&a.name, &a.node_id).cmp(&(&b.name, &b.node_id)));
    hosts
}

/// `<prefix>/device/<node_id>/config` → `node_id`.
fn node_id_of(topic: &str) -> Option<&str> {
    let mut levels = topic.rsplit('/');
    let (config, node_id, device) = (levels.next()?, levels.next()?, levels.next()?);
    (config == "config" && device == "device" && !node_id.is_empty()).then_some(node_id)
}

/// At most this many gauges of one kind (disks, temperatures) per host.
const MAX_GAUGES: usize = 4;
/// At most this many network interfaces per host.
const MAX_INTERFACES: usize = 2;

/// Whether `e` is a temperature in °C / °F.
fn is_temperature(key: &str, e: &Entity) -> bool {
    e.device_class.as_deref() == Some("temperature")
        || (key.contains("temp") && e.unit.as_deref().is_some_and(|u| u.starts_with('°')))
}

fn gauge(entity: &str, name: &str, warn: u32, bad: u32) -> Json {
    json!({
        "type": "gauge",
        "entity": entity,
        "name": name,
        "min": 0,
        "max": 100,
        "needle": true,
        "severity": { "green": 0, "yellow": warn, "red": bad },
        // Two gauges a row in a section.
        "grid_options": { "columns": 6 },
    })
}

fn tile(entity: &str, name: &str) -> Json {
    json!({ "type": "tile", "entity": entity, "name": name })
}

/// One host's section.
fn section(h: &Host) -> Json {
    let id = |key: &str| h.entities.get(key).map(|e| e.entity_id.clone());
    let mut badges = Vec::new();
    if let Some(e) = id("last_seen") {
        badges.push(json!({ "type": "entity", "entity": e, "icon": "mdi:heart-pulse", "show_state": true, "show_icon": true }));
    }
    for (key, e) in &h.entities {
        let updates =
            e.device_class.as_deref() == Some("update") && e.entity_id.starts_with("binary_sensor.");
        let failed = key.ends_with("_failed_units");
        if updates || failed || key == "reboot_required" {
            badges.push(json!({
                "type": "entity",
                "entity": e.entity_id,
                "show_state": true,
                "show_icon": true,
                "color": "red",
                // Shown only while something needs attention.
                "visibility": [{
                    "condition": "state",
                    "entity": e.entity_id,
                    "state_not": if failed { "0" } else { "off" },
                }],
            }));
        }
    }
    let mut cards = vec![json!({
        "type": "heading",
        "heading": h.name,
        "icon": "mdi:server",
        "badges": badges,
    })];
    if let Some(e) = id("cpu_usage") {
        cards.push(gauge(&e, "CPU", 70, 90));
    }
    if let Some(e) = id("memory_used") {
        cards.push(gauge(&e, "Memory", 80, 95));
    }
    let disks = h
        .entities
        .iter()
        .filter(|(k, _)| k.starts_with("disk_") && k.ends_with("_used") && !k.ends_with("_inodes_used"));
    // The root filesystem first, then the others by key.
    let (root, others): (Vec<_>, Vec<_>) = disks.partition(|(k, _)| k.as_str() == "disk_root_used");
    for (key, e) in root.into_iter().chain(others).take(MAX_GAUGES) {
        // The raw mount point is in the entity's name, not in its key.
        let name = match e.name.as_deref().and_then(|n| n.strip_suffix(" used")) {
            Some(n) => n.to_string(),
            None => format!(
                "Disk {}",
                key.trim_start_matches("disk_").trim_end_matches("_used")
            ),
        };
        cards.push(gauge(&e.entity_id, &name, 80, 90));
    }
    let temperatures: Vec<&Entity> = h
        .entities
        .iter()
        .filter(|(k, e)| is_temperature(k, e))
        .map(|(_, e)| e)
        .take(MAX_GAUGES)
        .collect();
    for e in &temperatures {
        let mut g = gauge(&e.entity_id, "Temperature", 70, 85);
        g["max"] = json!(if e.unit.as_deref() == Some("°F") {
            212
        } else {
            100
        });
        cards.push(g);
    }
    if let Some(e) = id("load_1m") {
        cards.push(tile(&e, "Load (1 min)"));
    }
    let interfaces: Vec<&str> = h
        .entities
        .keys()
        .filter_map(|k| k.strip_prefix("net_").and_then(|k| k.strip_suffix("_rx")))
        .take(MAX_INTERFACES)
        .collect();
    for iface in interfaces {
        for (dir, word) in [("rx", "in"), ("tx", "out")] {
            if let Some(e) = id(&format!("net_{iface}_{dir}")) {
                cards.push(tile(&e, &format!("{iface} {word}")));
            }
        }
    }
    let mut history: Vec<Json> = Vec::new();
    for (key, name) in [("cpu_usage", "CPU"), ("memory_used", "Memory")] {
        if let Some(e) = id(key) {
            history.push(json!({ "entity": e, "name": name }));
        }
    }
    for e in &temperatures {
        history.push(json!({ "entity": e.entity_id, "name": "Temperature" }));
    }
    if !history.is_empty() {
        cards.push(json!({
            "type": "history-graph",
            "title": "Last 24 hours",
            "hours_to_show": 24,
            "entities": history,
            "grid_options": { "columns": "full" },
        }));
    }
    json!({ "type": "grid", "cards": cards })
}

/// The dashboard of `hosts` as YAML for HA's raw configuration editor.
pub fn dashboard_yaml(hosts: &[Host]) -> String {
    let config = json!({
        "title": "Hosts",
        "views": [{
            "title": "Hosts",
            "path": "hosts",
            "icon": "mdi:server",
            "type": "sections",
            "max_columns": 3,
            "sections": hosts.iter().map(section).collect::<Vec<_>>(),
        }],
    });
    let mut out =
        String::from("# Made by `host2mqtt dashboard`: paste into a dashboard's raw configuration editor.\n");
    write_yaml(&mut out, &config, 0);
    out
}

/// YAML block style for maps and lists; every string double-quoted (a JSON
/// string is a valid YAML double-quoted scalar), so no value can be read
/// as another type ("on", "1.0", "null").
fn write_yaml(out: &mut String, v: &Json, indent: usize) {
    let pad = " ".repeat(indent);
    match v {
        Json::Object(m) => {
            for (k, v) in type_first(m) {
                out.push_str(&pad);
                out.push_str(&scalar_key(k));
                out.push(':');
                write_nested(out, v, indent);
            }
        }
        Json::Array(items) => {
            for item in items {
                out.push_str(&pad);
                out.push('-');
                match item {
                    Json::Object(m) if !m.is_empty() => {
                        // The first key on the dash's line, the rest under it.
                        let mut first = true;
                        for (k, v) in type_first(m) {
                            if first {
                                out.push(' ');
                                first = false;
                            } else {
                                out.push_str(&" ".repeat(indent + 2));
                            }
                            out.push_str(&scalar_key(k));
                            out.push(':');
                            write_nested(out, v, indent + 2);
                        }
                    }
                    _ => write_nested(out, item, indent),
                }
            }
        }
        scalar => {
            out.push_str(&pad);
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
}

/// A card's keys with `type` first, as people write them (serde_json's
/// map is sorted).
fn type_first(m: &Map<String, Json>) -> impl Iterator<Item = (&String, &Json)> {
    let t = m.get_key_value("type");
    t.into_iter()
        .chain(m.iter().filter(|(k, _)| k.as_str() != "type"))
}

/// After `key:` or `-`: a scalar or empty collection on the same line, a
/// collection on the next lines.
fn write_nested(out: &mut String, v: &Json, indent: usize) {
    match v {
        Json::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_yaml(out, v, indent + 2);
        }
        Json::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_yaml(out, v, indent + 2);
        }
        Json::Object(_) => out.push_str(" {}\n"),
        Json::Array(_) => out.push_str(" []\n"),
        scalar => {
            out.push(' ');
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
}

fn scalar_key(k: &str) -> String {
    if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        k.to_string()
    } else {
        Json::String(k.to_string()).to_string()
    }
}

fn scalar_text(v: &Json) -> String {
    match v {
        Json::Null => "null".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOLDEN: &str = include_str!("../tests/golden/discovery.json");

    fn msg(topic: &str, payload: &str) -> (String, Vec<u8>) {
        (topic.to_string(), payload.as_bytes().to_vec())
    }

    fn golden_as(node_id: &str, name: &str) -> (String, Vec<u8>) {
        let mut p: Json = serde_json::from_str(GOLDEN).expect("golden json");
        p["dev"]["name"] = json!(name);
        for c in p["cmps"].as_object_mut().expect("cmps").values_mut() {
            for k in ["default_entity_id", "def_ent_id"] {
                if let Some(id) = c.get(k).and_then(Json::as_str) {
                    c[k] = json!(id.replace("golden_", &format!("{node_id}_")));
                }
            }
        }
        msg(&format!("homeassistant/device/{node_id}/config"), &p.to_string())
    }

    #[test]
    fn hosts_are_found_in_host2mqtt_discovery_only() {
        let hosts = hosts_from_discovery(&[
            golden_as("web", "web"),
            golden_as("nas", "nas"),
            msg(
                "homeassistant/device/bulb/config",
                r#"{"dev":{"ids":["zb_1"],"name":"Bulb"},"o":{"name":"z2m"},"cmps":{}}"#,
            ),
            msg("homeassistant/device/gone/config", ""),
            msg("homeassistant/sensor/x/config", r#"{"o":{"name":"host2mqtt"}}"#),
        ]);
        let names: Vec<&str> = hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["nas", "web"]);
        assert_eq!(hosts[0].entities["cpu_usage"].entity_id, "sensor.nas_cpu_usage");
    }

    #[test]
    fn abbreviated_payloads_are_read_and_disabled_entities_left_out() {
        let hosts = hosts_from_discovery(&[msg(
            "ha/device/h1/config",
            r#"{"dev":{"ids":["host2mqtt_h1"],"name":"H 1"},"o":{"name":"host2mqtt"},
               "cmps":{"cpu_usage":{"p":"sensor","uniq_id":"u1","unit_of_meas":"%"},
                       "processes":{"p":"sensor","uniq_id":"u2","en":false},
                       "disk_old_used":{"p":"sensor"}}}"#,
        )]);
        assert_eq!(hosts.len(), 1);
        let e = &hosts[0].entities;
        assert_eq!(e.keys().collect::<Vec<_>>(), ["cpu_usage"]);
        assert_eq!(e["cpu_usage"].entity_id, "sensor.h1_cpu_usage");
        assert_eq!(e["cpu_usage"].unit.as_deref(), Some("%"));
    }

    #[test]
    fn each_host_gets_a_section_with_gauges_badges_and_a_history_graph() {
        let hosts = hosts_from_discovery(&[
            golden_as("web", "web"),
            golden_as("nas", "nas"),
            golden_as("vps", "vps"),
        ]);
        let yaml = dashboard_yaml(&hosts);
        assert_eq!(yaml.matches("- type: \"grid\"").count(), 3, "{yaml}");
        for needle in [
            "heading: \"nas\"",
            "entity: \"sensor.vps_cpu_usage\"",
            "entity: \"sensor.web_memory_used\"",
            "entity: \"sensor.nas_disk_root_used\"",
            "name: \"Disk /\"",
            "entity: \"sensor.nas_last_seen\"",
            "type: \"history-graph\"",
            "type: \"sections\"",
        ] {
            assert!(yaml.contains(needle), "missing {needle} in\n{yaml}");
        }
        // Disabled by default in the golden payload: not on the dashboard.
        assert!(!yaml.contains("pressure_"), "{yaml}");
    }

    #[test]
    fn yaml_quotes_every_string_and_nests_lists_of_maps() {
        let mut out = String::new();
        write_yaml(
            &mut out,
            &json!({"a": "on", "b": [{"c": 1, "d": {"e": "x\"y"}}, "z"], "f": []}),
            0,
        );
        assert_eq!(
            out,
            "a: \"on\"\nb:\n  - c: 1\n    d:\n      e: \"x\\\"y\"\n  - \"z\"\nf: []\n"
        );
    }
}
