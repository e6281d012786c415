//! The Home Assistant model: readings become one device-based discovery
//! payload (`<prefix>/device/<node_id>/config`, retained) and one state JSON
//! per cycle (`<base>/<node_id>/state`). It knows HA's vocabulary and the
//! topics, and nothing of /proc.
//!
//! The state JSON holds every reading under its key, plus two objects:
//! `avail` (group → whether that part of the host could be reached; the
//! entities of a group are unavailable in HA while it is `false`) and
//! `attrs` (key → the entity's attributes).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde_json::{json, Map, Value as Json};

use crate::reading::{slug, Kind, Label, Reading, Value};

/// Payload on the availability topic while the agent runs.
pub const ONLINE: &str = "online";
/// Payload on the availability topic after the agent stopped or died.
pub const OFFLINE: &str = "offline";

/// Where the project lives; HA shows it as the origin's support URL.
pub const SUPPORT_URL: &str = "https://github.com/host2mqtt/host2mqtt";

/// HA's documented abbreviations of discovery keys that we send, short →
/// long (homeassistant/components/mqtt/abbreviations.py). HA expands them
/// on receipt; [`expand_abbreviations`] does the same for readers of our
/// payloads (tests, tools).
pub const ABBREVIATIONS: &[(&str, &str)] = &[
    ("avty", "availability"),
    ("avty_mode", "availability_mode"),
    ("cmd_t", "command_topic"),
    ("def_ent_id", "default_entity_id"),
    ("dev_cla", "device_class"),
    ("en", "enabled_by_default"),
    ("ent_cat", "entity_category"),
    ("exp_aft", "expire_after"),
    ("ic", "icon"),
    ("json_attr_t", "json_attributes_topic"),
    ("json_attr_tpl", "json_attributes_template"),
    ("ops", "options"),
    ("pl_inst", "payload_install"),
    ("pl_prs", "payload_press"),
    ("stat_cla", "state_class"),
    ("stat_t", "state_topic"),
    ("sug_dsp_prc", "suggested_display_precision"),
    ("uniq_id", "unique_id"),
    ("unit_of_meas", "unit_of_measurement"),
    ("val_tpl", "value_template"),
];

/// Device and origin keys, abbreviated differently inside `dev` and `o`.
const DEVICE_ABBREVIATIONS: &[(&str, &str)] = &[
    ("ids", "identifiers"),
    ("mf", "manufacturer"),
    ("mdl", "model"),
    ("mdl_id", "model_id"),
    ("sa", "suggested_area"),
    ("sw", "sw_version"),
    ("url", "support_url"),
];

/// Expands a discovery payload's abbreviated keys to HA's long names, as
/// HA does when it receives it (the top level, inside `dev` and `o`, each
/// component and each availability entry). `dev`, `o` and `cmps` stay: they
/// are the names HA's documentation gives device-based discovery. Unknown
/// keys are kept as they are.
pub fn expand_abbreviations(payload: &mut Json) {
    fn rename(obj: &mut Map<String, Json>, table: &[(&str, &str)]) {
        for (short, long) in table {
            if let Some(v) = obj.remove(*short) {
                obj.insert((*long).to_string(), v);
            }
        }
    }
    fn expand_entity(obj: &mut Map<String, Json>) {
        rename(obj, ABBREVIATIONS);
        if let Some(Json::Array(list)) = obj.get_mut("availability") {
            for a in list.iter_mut().filter_map(Json::as_object_mut) {
                rename(a, &[("t", "topic"), ("val_tpl", "value_template")]);
            }
        }
    }
    let Some(top) = payload.as_object_mut() else {
        return;
    };
    expand_entity(top);
    for part in ["dev", "o"] {
        if let Some(obj) = top.get_mut(part).and_then(Json::as_object_mut) {
            rename(obj, DEVICE_ABBREVIATIONS);
        }
    }
    if let Some(cmps) = top.get_mut("cmps").and_then(Json::as_object_mut) {
        for c in cmps.values_mut().filter_map(Json::as_object_mut) {
            expand_entity(c);
        }
    }
}

/// Every topic this host uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// `<prefix>/device/<node_id>/config`: the retained discovery payload.
    pub discovery: String,
    /// `<base>/<node_id>/state`: one JSON object per cycle, not retained.
    pub state: String,
    /// `<base>/<node_id>/info`: retained JSON of the steady values (kernel,
    /// OS, updates) and every entity's attributes, published when it changes.
    pub info: String,
    /// `<base>/<node_id>/availability`: retained `online`/`offline`; the will.
    pub availability: String,
    /// `<base>/<node_id>/command`: buttons and update installs publish the
    /// entity's command word here. Limit who may publish to it (broker ACL).
    pub command: String,
    /// HA's birth topic; `online` there means "announce again".
    pub ha_status: String,
}

impl Topics {
    /// The topics of `node_id` (already checked to be `[a-zA-Z0-9_-]`).
    pub fn new(discovery_prefix: &str, base_topic: &str, node_id: &str, ha_status: &str) -> Self {
        Topics {
            discovery: format!("{discovery_prefix}/device/{node_id}/config"),
            state: format!("{base_topic}/{node_id}/state"),
            info: format!("{base_topic}/{node_id}/info"),
            availability: format!("{base_topic}/{node_id}/availability"),
            command: format!("{base_topic}/{node_id}/command"),
            ha_status: ha_status.to_string(),
        }
    }
}

/// The HA device this host is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Stable id, `[a-zA-Z0-9_-]`.
    pub node_id: String,
    /// Name shown in HA (the host name).
    pub name: String,
    /// The OS vendor/name ("Debian GNU/Linux").
    pub manufacturer: String,
    /// The OS release ("Debian GNU/Linux 12 (bookworm)").
    pub model: String,
    /// The kernel release.
    pub sw_version: String,
    /// The area HA puts the device in when it first sees it
    /// (`suggested_area`); empty: none. With an area, the host shows on
    /// HA's auto-generated Overview.
    pub area: String,
}

/// How HA should show one kind of reading.
struct Presentation {
    platform: &'static str,
    device_class: Option<&'static str>,
    unit: Option<&'static str>,
    state_class: Option<&'static str>,
    precision: Option<u8>,
    /// The value as sent is the reading divided by this.
    scale: f64,
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

fn present(kind: Kind) -> Presentation {
    let p = |platform, device_class, unit, state_class, precision, scale| Presentation {
        platform,
        device_class,
        unit,
        state_class,
        precision,
        scale,
    };
    let measurement = Some("measurement");
    match kind {
        Kind::Percent => p("sensor", None, Some("%"), measurement, Some(1), 1.0),
        // Sizes in GiB (as HA's System Monitor shows disks) and rates in
        // KiB/s: raw bytes read badly on a dashboard. (System Monitor shows
        // network rates in MB/s and totals in MiB.) The device classes let
        // a user pick another unit per entity in HA, which converts.
        Kind::Bytes => p(
            "sensor",
            Some("data_size"),
            Some("GiB"),
            measurement,
            Some(2),
            GIB,
        ),
        Kind::BytesPerSecond => p(
            "sensor",
            Some("data_rate"),
            Some("KiB/s"),
            measurement,
            Some(1),
            1024.0,
        ),
        // MiB, as System Monitor's network in/out: GiB hides a day's
        // traffic on a quiet link, bytes are unreadable.
        Kind::BytesTotal => p(
            "sensor",
            Some("data_size"),
            Some("MiB"),
            Some("total_increasing"),
            Some(1),
            1024.0 * 1024.0,
        ),
        Kind::Milliseconds => p("sensor", Some("duration"), Some("ms"), measurement, Some(2), 1.0),
        Kind::Timestamp => p("sensor", Some("timestamp"), None, None, None, 1.0),
        Kind::Count => p("sensor", None, None, measurement, Some(0), 1.0),
        Kind::Total => p("sensor", None, None, Some("total_increasing"), Some(0), 1.0),
        Kind::Load => p("sensor", None, None, measurement, Some(2), 1.0),
        Kind::Text => p("sensor", None, None, None, None, 1.0),
        Kind::Enum(_) => p("sensor", Some("enum"), None, None, None, 1.0),
        Kind::Problem => p("binary_sensor", Some("problem"), None, None, None, 1.0),
        Kind::Flag => p("binary_sensor", None, None, None, None, 1.0),
        Kind::UpdateAvailable => p("binary_sensor", Some("update"), None, None, None, 1.0),
        Kind::Update => p("update", None, None, None, None, 1.0),
        Kind::Button => p("button", None, None, None, None, 1.0),
        Kind::Celsius => p(
            "sensor",
            Some("temperature"),
            Some("°C"),
            measurement,
            Some(1),
            1.0,
        ),
        // HA has no device class for rotation speed: a plain measurement.
        Kind::Rpm => p("sensor", None, Some("rpm"), measurement, Some(0), 1.0),
        Kind::Watts => p("sensor", Some("power"), Some("W"), measurement, Some(1), 1.0),
        Kind::Megahertz => p(
            "sensor",
            Some("frequency"),
            Some("MHz"),
            measurement,
            Some(0),
            1.0,
        ),
    }
}

/// Decimals kept in the state JSON: enough for the display precision, no
/// more (bytes on the wire every cycle).
fn wire_decimals(kind: Kind) -> i32 {
    match kind {
        Kind::Bytes => 3,
        Kind::Load | Kind::Milliseconds | Kind::BytesTotal => 2,
        Kind::Count | Kind::Total | Kind::Rpm | Kind::Megahertz => 0,
        _ => 1,
    }
}

/// An icon where the device class gives none.
fn icon(key: &str, kind: Kind) -> Option<&'static str> {
    if matches!(
        kind,
        Kind::Timestamp
            | Kind::Bytes
            | Kind::BytesPerSecond
            | Kind::BytesTotal
            | Kind::Milliseconds
            | Kind::Problem
            | Kind::UpdateAvailable
            | Kind::Update
            | Kind::Celsius
            | Kind::Watts
            | Kind::Megahertz
    ) {
        return None;
    }
    let by_prefix: &[(&str, &str)] = &[
        ("cpu_", "mdi:cpu-64-bit"),
        ("fan_", "mdi:fan"),
        ("gpu_", "mdi:expansion-card"),
        ("oom_", "mdi:memory-arrow-down"),
        ("smart_", "mdi:harddisk"),
        ("load_", "mdi:gauge"),
        ("memory_", "mdi:memory"),
        ("swap_", "mdi:memory"),
        ("pressure_", "mdi:gauge-full"),
        ("disk_", "mdi:harddisk"),
        ("net_", "mdi:ip-network"),
        ("processes", "mdi:cogs"),
        ("os", "mdi:linux"),
        ("kernel", "mdi:linux"),
        ("reboot_required", "mdi:restart-alert"),
        ("version", "mdi:tag"),
        ("containers_", "mdi:docker"),
        ("container_", "mdi:docker"),
        ("compose_", "mdi:docker"),
        ("updates_", "mdi:package-up"),
        ("systemd_", "mdi:cog-outline"),
        ("unit_", "mdi:cog-outline"),
        ("user_unit_", "mdi:cog-outline"),
    ];
    by_prefix
        .iter()
        .find(|(p, _)| key.starts_with(p))
        .map(|(_, i)| *i)
}

/// Which entities HA enables when it first sees them: the headline ones a
/// user wants on day one, and those the user asked for by name in the
/// config (watched units, opted-in containers, per-core CPU). Everything
/// else is created disabled; the user enables it on the entity's page, or
/// all at once with `homeassistant.enable_all_entities`. First match of
/// (key prefix, key suffix) wins; a key matching no row is disabled.
/// HA applies this only when it registers an entity: it never disables
/// an entity it already has.
const ENABLED_BY_DEFAULT: &[(&str, &str, bool)] = &[
    ("cpu_usage", "", true),
    ("cpu_core", "_usage", true),
    ("load_", "", true),
    ("memory_used", "", true),
    ("memory_available", "", true),
    ("disk_", "_inodes_used", false),
    ("disk_", "_used", true),
    ("disk_", "_free", true),
    ("net_", "", true),
    ("cpu_temperature", "", true),
    ("temp_", "", true),
    ("gpu_", "_load", true),
    ("smart_", "_health", true),
    ("smart_", "_critical_warning", true),
    ("rpi_under_voltage", "", true),
    ("rpi_throttled", "", true),
    ("oom_kills", "", true),
    ("last_seen", "", true),
    ("reboot_required", "", true),
    ("updates_", "", true),
    ("os_update", "", true),
    ("container_", "_update", true),
    ("container_", "", true),
    ("compose_", "_degraded", true),
    ("systemd_", "_failed_units", true),
    ("unit_", "", true),
    ("user_unit_", "", true),
];

/// Whether the entity of `key` is enabled when HA first sees it (see
/// [`ENABLED_BY_DEFAULT`]).
pub fn enabled_by_default(key: &str) -> bool {
    ENABLED_BY_DEFAULT
        .iter()
        .find(|(prefix, suffix, _)| {
            key.len() >= prefix.len() + suffix.len() && key.starts_with(prefix) && key.ends_with(suffix)
        })
        .is_some_and(|(_, _, on)| *on)
}

/// The part of a reading that shapes its entity (not its value): when this
/// changes, discovery is published again.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EntitySpec {
    /// The reading key.
    pub key: Label,
    /// The entity name.
    pub name: Label,
    /// Its kind.
    pub kind: Kind,
    /// Diagnostic category.
    pub diagnostic: bool,
    /// Enabled by default.
    pub enabled_by_default: bool,
    /// The group whose reachability the entity's availability follows.
    pub group: Option<&'static str>,
    /// Whether the entity has attributes.
    pub has_attributes: bool,
    /// The command word the entity publishes.
    pub command: Option<String>,
    /// Its value is on the info topic (see [`Reading::steady`]).
    pub steady: bool,
}

impl EntitySpec {
    /// The spec of a reading.
    pub fn of(r: &Reading) -> Self {
        EntitySpec {
            key: r.key.clone(),
            name: r.name.clone(),
            kind: r.kind,
            diagnostic: r.diagnostic,
            enabled_by_default: r.enabled_by_default,
            group: r.group,
            has_attributes: r.attributes.is_some(),
            command: r.command.clone(),
            steady: r.is_steady(),
        }
    }

    /// True when `r` would produce this same entity.
    pub fn matches(&self, r: &Reading) -> bool {
        self.key == r.key
            && self.name == r.name
            && self.kind == r.kind
            && self.diagnostic == r.diagnostic
            && self.enabled_by_default == r.enabled_by_default
            && self.group == r.group
            && self.has_attributes == r.attributes.is_some()
            && self.command == r.command
            && self.steady == r.is_steady()
    }

    /// HA's platform for this entity.
    pub fn platform(&self) -> &'static str {
        present(self.kind).platform
    }
}

/// Builds discovery and state payloads for one device.
#[derive(Debug, Clone)]
pub struct Model {
    /// The topics.
    pub topics: Topics,
    /// The device.
    pub device: Device,
    /// Seconds after the last state before HA shows an entity unavailable.
    pub expire_after: Duration,
    /// Every entity enabled when HA first sees it, not only the headline
    /// ones (`homeassistant.enable_all_entities`).
    pub enable_all: bool,
}

impl Model {
    /// `unique_id` of an entity: prefixed so it cannot collide with other
    /// MQTT integrations' ids.
    pub fn unique_id(&self, key: &str) -> String {
        format!("host2mqtt_{}_{}", self.device.node_id, key)
    }

    /// `default_entity_id` (`sensor.vm_cpu_usage`): replaces the deprecated `object_id`.
    pub fn default_entity_id(&self, spec: &EntitySpec) -> String {
        format!("{}.{}_{}", spec.platform(), slug(&self.device.node_id), spec.key)
    }

    /// The device-based discovery payload for `entities`, plus a removal
    /// stub (`{"p": platform}`, HA's documented way) for each of `removed`.
    /// Written with HA's documented abbreviations ([`ABBREVIATIONS`]): a
    /// Home Assistant restart in front of many hosts receives this from
    /// every one of them.
    pub fn discovery_payload(&self, entities: &[EntitySpec], removed: &[(String, &'static str)]) -> String {
        let mut cmps = Map::new();
        for spec in entities {
            cmps.insert(spec.key.to_string(), self.component(spec));
        }
        for (key, platform) in removed {
            if !cmps.contains_key(key) {
                cmps.insert(key.clone(), json!({ "p": platform }));
            }
        }
        let d = &self.device;
        let mut dev = Map::new();
        dev.insert("ids".into(), json!([format!("host2mqtt_{}", d.node_id)]));
        dev.insert("name".into(), json!(d.name));
        // What blueprints' device selectors filter on (integration mqtt,
        // model_id host2mqtt): only host2mqtt hosts are offered.
        dev.insert("mdl_id".into(), json!("host2mqtt"));
        for (k, v) in [
            ("mf", &d.manufacturer),
            ("mdl", &d.model),
            ("sw", &d.sw_version),
            ("sa", &d.area),
        ] {
            if !v.is_empty() {
                dev.insert(k.into(), json!(v));
            }
        }
        let payload = json!({
            "dev": dev,
            "o": {
                "name": "host2mqtt",
                "sw": env!("CARGO_PKG_VERSION"),
                "url": SUPPORT_URL,
            },
            "cmps": cmps,
            // Shared by every component (HA copies `stat_t` and `avty` into
            // each one that has none of its own).
            "stat_t": self.topics.state,
            // The list form, so that a component of a group can replace it
            // with a list of its own (HA refuses both forms on one entity).
            "avty": [{ "t": self.topics.availability }],
        });
        payload.to_string()
    }

    /// Whether HA would make `default_entity_id` itself from the device
    /// and entity names (`sensor.` + slug of "<device> <name>"), so sending
    /// it costs bytes and changes nothing. Only for plain ASCII names, where
    /// our [`slug`] and HA's slugify agree, and never when the entity name
    /// starts with the device name (HA strips that prefix), nor when the
    /// device has a suggested area (HA 2026.11 puts the area's name in
    /// front: `sensor.servers_nas_cpu_usage`; seen in tests/ha/fleet.sh).
    fn derives_entity_id(&self, spec: &EntitySpec) -> bool {
        let plain = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b" _-/.%".contains(&b))
        };
        let (device, name) = (slug(&self.device.name), slug(&spec.name));
        self.device.area.is_empty()
            && plain(&self.device.name)
            && plain(&spec.name)
            && !device.is_empty()
            && !name.starts_with(&device)
            && format!("{}.{device}_{name}", spec.platform()) == self.default_entity_id(spec)
    }

    fn component(&self, spec: &EntitySpec) -> Json {
        let kind = spec.kind;
        let pres = present(kind);
        let key = &spec.key;
        let mut c = Map::new();
        c.insert("p".into(), json!(pres.platform));
        c.insert("name".into(), json!(spec.name));
        c.insert("uniq_id".into(), json!(self.unique_id(key)));
        if !self.derives_entity_id(spec) {
            c.insert("def_ent_id".into(), json!(self.default_entity_id(spec)));
        }
        let template = match kind {
            Kind::Problem | Kind::Flag | Kind::UpdateAvailable => Some(format!(
                "{{{{'None' if value_json.{key} is none else ('ON' if value_json.{key} else 'OFF')}}}}"
            )),
            Kind::Update => Some(format!("{{{{value_json.{key}|tojson}}}}")),
            Kind::Button => None,
            _ => Some(format!("{{{{value_json.{key}}}}}")),
        };
        // A button has no state (HA drops the shared state_topic from it).
        if let Some(t) = template {
            c.insert("val_tpl".into(), json!(t));
            if spec.steady {
                c.insert("stat_t".into(), json!(self.topics.info));
            }
        }
        if let Some(v) = pres.device_class {
            c.insert("dev_cla".into(), json!(v));
        }
        if let Kind::Enum(options) = kind {
            c.insert("ops".into(), json!(options));
        }
        if let Some(v) = pres.unit {
            c.insert("unit_of_meas".into(), json!(v));
        }
        if let Some(v) = pres.state_class {
            c.insert("stat_cla".into(), json!(v));
        }
        // Without a device class the unit cannot be converted, and the state
        // already carries exactly this many decimals: HA shows it as sent.
        if let Some(v) = pres
            .precision
            .filter(|p| pres.device_class.is_some() || i32::from(*p) != wire_decimals(kind))
        {
            c.insert("sug_dsp_prc".into(), json!(v));
        }
        if let Some(v) = icon(key, kind) {
            c.insert("ic".into(), json!(v));
        }
        if spec.diagnostic {
            c.insert("ent_cat".into(), json!("diagnostic"));
        }
        if !(self.enable_all || spec.enabled_by_default && enabled_by_default(key)) {
            c.insert("en".into(), json!(false));
        }
        if let Some(word) = &spec.command {
            c.insert("cmd_t".into(), json!(self.topics.command));
            let field = if kind == Kind::Update { "pl_inst" } else { "pl_prs" };
            c.insert(field.into(), json!(word));
        }
        if spec.has_attributes {
            c.insert("json_attr_t".into(), json!(self.topics.info));
            c.insert(
                "json_attr_tpl".into(),
                json!(format!("{{{{value_json.attrs.{key}|tojson}}}}")),
            );
        }
        if let Some(group) = spec.group {
            c.insert(
                "avty".into(),
                json!([
                    { "t": self.topics.availability },
                    {
                        "t": self.topics.state,
                        "val_tpl": format!("{{{{'online' if value_json.avail.{group} else 'offline'}}}}"),
                    },
                ]),
            );
            c.insert("avty_mode".into(), json!("all"));
        }
        // "Last seen" must keep its value when the host goes quiet: that
        // stale timestamp is what an alert compares against now(). Buttons
        // and update entities have no expire_after in HA. A steady value is
        // sent only when it changes: it would expire between changes.
        let expires = !matches!(kind, Kind::Button) && !spec.steady && key != "last_seen";
        if expires {
            c.insert("exp_aft".into(), json!(self.expire_after.as_secs().max(1)));
        }
        Json::Object(c)
    }

    /// The state JSON of one cycle: every reading's key with its value in
    /// the unit discovery announced (`null` where missing), but for the
    /// steady ones (on the info topic), then `avail` for the groups that
    /// have entities.
    pub fn state_payload(&self, readings: &[Reading], groups: &[(&'static str, bool)]) -> String {
        let mut out = String::with_capacity(64 + readings.len() * 32);
        out.push('{');
        let mut first = true;
        for r in readings
            .iter()
            .filter(|r| r.kind != Kind::Button && !r.is_steady())
        {
            if !first {
                out.push(',');
            }
            first = false;
            // Keys are [a-z0-9_] by construction; no escaping needed.
            let _ = write!(out, "\"{}\":", r.key);
            write_value(&mut out, r);
        }
        let mut used = groups
            .iter()
            .filter(|(g, _)| readings.iter().any(|r| r.group == Some(*g)))
            .peekable();
        if used.peek().is_some() {
            out.push_str(if first { "\"avail\":{" } else { ",\"avail\":{" });
            for (i, (group, up)) in used.enumerate() {
                let _ = write!(out, "{}\"{group}\":{up}", if i > 0 { "," } else { "" });
            }
            out.push('}');
        }
        out.push('}');
        out
    }

    /// The info JSON: the steady readings' values (as in the state) and
    /// `attrs`, every reading's attributes. Retained, and published only
    /// when it changes: these change at boot, on upgrade, when an update
    /// check finishes, not every cycle.
    pub fn info_payload(&self, readings: &[Reading]) -> String {
        let mut out = String::with_capacity(256);
        out.push('{');
        let mut first = true;
        for r in readings
            .iter()
            .filter(|r| r.kind != Kind::Button && r.is_steady())
        {
            if !first {
                out.push(',');
            }
            first = false;
            let _ = write!(out, "\"{}\":", r.key);
            write_value(&mut out, r);
        }
        let mut attrs = readings
            .iter()
            .filter_map(|r| r.attributes.as_ref().map(|a| (&r.key, a)))
            .peekable();
        if attrs.peek().is_some() {
            out.push_str(if first { "\"attrs\":{" } else { ",\"attrs\":{" });
            for (i, (key, a)) in attrs.enumerate() {
                let _ = write!(
                    out,
                    "{}\"{key}\":{}",
                    if i > 0 { "," } else { "" },
                    serde_json::to_string(a).unwrap_or_else(|_| "{}".into())
                );
            }
            out.push('}');
        }
        out.push('}');
        out
    }
}

/// Options of an enum reading that HA would accept, or `None`.
fn valid_option<'a>(options: &[&str], word: &'a str) -> Option<&'a str> {
    options.contains(&word).then_some(word)
}

fn write_value(out: &mut String, r: &Reading) {
    let pres = present(r.kind);
    match (&r.value, r.kind) {
        (Value::Text(s), Kind::Enum(options)) => match valid_option(options, s) {
            Some(word) => out.push_str(&Json::String(word.to_string()).to_string()),
            None => out.push_str("null"),
        },
        (Value::Float(v), _) => write_number(out, *v / pres.scale, wire_decimals(r.kind)),
        (Value::Int(v), _) if pres.scale != 1.0 => {
            write_number(out, *v as f64 / pres.scale, wire_decimals(r.kind))
        }
        (Value::Int(v), _) => out.push_str(itoa::Buffer::new().format(*v)),
        (Value::Bool(b), _) => out.push_str(if *b { "true" } else { "false" }),
        (Value::Text(s), _) => out.push_str(&Json::String(s.clone()).to_string()),
        (Value::Time(t), _) => {
            out.push('"');
            push_timestamp(out, *t);
            out.push('"');
        }
        (Value::Update(u), _) => {
            let mut v = json!({
                "installed_version": u.installed,
                "latest_version": u.latest,
                "title": u.title,
                "in_progress": u.in_progress,
            });
            if let Some(s) = &u.summary {
                v["release_summary"] = json!(s);
            }
            out.push_str(&v.to_string());
        }
        // An update whose state is unknown: an empty object, which HA
        // ignores (nulls would be a schema error logged every cycle); the
        // entity's group availability is what shows it unknown.
        (Value::Missing, Kind::Update) => out.push_str("{}"),
        (Value::Missing, _) => out.push_str("null"),
    }
}

/// `v` rounded to `decimals` places, as the shortest decimal that reads
/// back as that double (what `f64`'s `Display` prints), without trailing
/// zeros or a `.` for whole numbers.
fn write_number(out: &mut String, v: f64, decimals: i32) {
    if !v.is_finite() {
        out.push_str("null");
        return;
    }
    let f = 10f64.powi(decimals);
    let scaled = (v * f).round();
    // The common case without the float formatter (a tenth of a cycle's
    // instructions for ~30 numbers): with at most 12 digits the decimal
    // `scaled / 10^decimals` is exactly what `Display` prints for that
    // double (a double tells 15 digits apart), so it is written from the
    // integer: sign, whole part, then the fraction without trailing zeros.
    if (0..=6).contains(&decimals) && scaled.abs() < 1e12 {
        let n = scaled as i64;
        let unit = 10i64.pow(decimals as u32);
        let (whole, mut frac) = (n.abs() / unit, n.abs() % unit);
        if n < 0 {
            out.push('-');
        }
        out.push_str(itoa::Buffer::new().format(whole));
        if frac != 0 {
            let mut width = decimals as usize;
            while frac % 10 == 0 {
                frac /= 10;
                width -= 1;
            }
            let mut digits = itoa::Buffer::new();
            let digits = digits.format(frac);
            out.push('.');
            out.extend(std::iter::repeat_n('0', width - digits.len()));
            out.push_str(digits);
        }
        return;
    }
    let rounded = scaled / f;
    if rounded.fract() == 0.0 && rounded.abs() < 1e15 {
        let _ = write!(out, "{}", rounded as i64);
    } else {
        let _ = write!(out, "{rounded}");
    }
}

/// RFC 3339 in UTC with seconds, as HA's timestamp sensors take it.
pub fn format_timestamp(t: SystemTime) -> String {
    let mut out = String::with_capacity(20);
    push_timestamp(&mut out, t);
    out
}

/// [`format_timestamp`] onto `out`: `last_seen` is written every cycle,
/// and this is a few dozen instructions where a `Display` impl through
/// `core::fmt` is a few hundred (issue 13). A time before 1970 (a clock
/// set wrong) is written as 1970-01-01T00:00:00Z, where humantime panics.
pub fn push_timestamp(out: &mut String, t: SystemTime) {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let of_day = secs % 86_400;
    // Days to a civil date (Howard Hinnant's algorithm, days from 1970).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let two = |out: &mut String, n: u64| {
        out.push(char::from(b'0' + (n / 10 % 10) as u8));
        out.push(char::from(b'0' + (n % 10) as u8));
    };
    two(out, year / 100);
    two(out, year);
    out.push('-');
    two(out, month);
    out.push('-');
    two(out, day);
    out.push('T');
    two(out, of_day / 3600);
    out.push(':');
    two(out, of_day / 60 % 60);
    out.push(':');
    two(out, of_day % 60);
    out.push('Z');
}

/// The value as a person reads it, with its unit (for `check`).
pub fn display_value(r: &Reading) -> String {
    let pres = present(r.kind);
    let shown = match (&r.value, r.kind) {
        (_, Kind::Button) => format!("(button: {})", r.command.as_deref().unwrap_or("")),
        (Value::Text(s), _) => s.clone(),
        (Value::Time(t), _) => format_timestamp(*t),
        (Value::Missing, _) => "(none yet)".into(),
        (Value::Bool(b), _) => (if *b { "on" } else { "off" }).into(),
        (Value::Update(u), _) if u.installed == u.latest => format!("{}: up to date", u.title),
        (Value::Update(u), _) => format!("{}: update available", u.title),
        _ => {
            let mut v = String::new();
            write_value(&mut v, r);
            match pres.unit {
                Some(u) => format!("{v} {u}"),
                None => v,
            }
        }
    };
    match &r.group {
        Some(g) => format!("{shown}  [{g}]"),
        None => shown,
    }
}

/// Tracks which components HA has been told about, so that a component
/// that disappears is removed (no ghost entities) and discovery is only
/// rebuilt when the entity set changes.
#[derive(Debug, Default)]
pub struct Announcer {
    /// Entities in the last payload built, in reading order.
    current: Vec<EntitySpec>,
    /// Components to remove in the next payload, with their platform.
    removed: BTreeMap<String, &'static str>,
    /// The last payload built, re-sent on every (re)connect.
    payload: Option<String>,
}

impl Announcer {
    /// Updates the entity set from this cycle's readings (keys unique);
    /// returns the new discovery payload when it changed, `None` when HA
    /// already has it.
    pub fn update(&mut self, model: &Model, readings: &[Reading]) -> Option<&str> {
        if self.payload.is_some() && self.has_shape_of(readings) {
            if self.removed.is_empty() {
                return None;
            }
            // The removal stubs went out with the last payload; HA's
            // procedure is "stub, then omit", so send it once more without.
            self.removed.clear();
        } else {
            let specs: Vec<EntitySpec> = readings.iter().map(EntitySpec::of).collect();
            let keys: std::collections::HashSet<&str> = specs.iter().map(|s| s.key.as_str()).collect();
            for old in &self.current {
                if !keys.contains(old.key.as_str()) {
                    self.removed.insert(old.key.to_string(), old.platform());
                }
            }
            self.removed.retain(|k, _| !keys.contains(k.as_str()));
            self.current = specs;
        }
        let removed: Vec<(String, &'static str)> =
            self.removed.iter().map(|(k, p)| (k.clone(), *p)).collect();
        self.payload = Some(model.discovery_payload(&self.current, &removed));
        self.payload.as_deref()
    }

    /// True when `readings` describe the entities HA already has, in the
    /// same order (collectors report in a stable order). Compared in place:
    /// this runs every cycle and must not allocate.
    fn has_shape_of(&self, readings: &[Reading]) -> bool {
        self.current.len() == readings.len() && self.current.iter().zip(readings).all(|(s, r)| s.matches(r))
    }

    /// The payload HA should have now (for a reconnect or HA's birth).
    pub fn payload(&self) -> Option<&str> {
        self.payload.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The integer path of `write_number` prints what `Display` of the
    /// rounded double prints (the text before it was added).
    #[test]
    fn numbers_read_as_the_rounded_double_displays() {
        let display = |v: f64, d: i32| {
            let f = 10f64.powi(d);
            let rounded = (v * f).round() / f;
            if rounded.fract() == 0.0 && rounded.abs() < 1e15 {
                format!("{}", rounded as i64)
            } else {
                format!("{rounded}")
            }
        };
        let mut values = vec![
            0.0,
            -0.0,
            0.05,
            -0.05,
            0.1 + 0.2,
            1e-9,
            -1e-9,
            99.95,
            123.456,
            1e11,
            -5e11,
            999_999_999_999.4,
        ];
        let mut rng = fastrand::Rng::with_seed(13);
        for _ in 0..20_000 {
            let magnitude = 10f64.powi(rng.i32(-4..12));
            values.push((rng.f64() - 0.5) * 2.0 * magnitude);
        }
        for v in values {
            for d in 0..=3 {
                let mut out = String::new();
                write_number(&mut out, v, d);
                assert_eq!(out, display(v, d), "{v} to {d} places");
            }
        }
    }

    fn model() -> Model {
        Model {
            topics: Topics::new("homeassistant", "host2mqtt", "h1", "homeassistant/status"),
            device: Device {
                node_id: "h1".into(),
                name: "h1".into(),
                manufacturer: String::new(),
                model: String::new(),
                sw_version: String::new(),
                area: String::new(),
            },
            expire_after: Duration::from_secs(90),
            enable_all: false,
        }
    }

    fn disk(mount: &str, used: f64) -> Reading {
        Reading::new(
            crate::reading::key(&["disk", mount, "used"]),
            format!("Disk {mount} used"),
            Kind::Percent,
            used,
        )
    }

    fn cmps(payload: &str) -> Map<String, Json> {
        let mut v: Json = serde_json::from_str(payload).expect("json");
        expand_abbreviations(&mut v);
        v["cmps"].as_object().expect("cmps").clone()
    }

    #[test]
    fn discovery_is_built_once_while_the_entities_stay_the_same() {
        let m = model();
        let mut a = Announcer::default();
        assert!(a.update(&m, &[disk("/", 1.0)]).is_some());
        assert!(
            a.update(&m, &[disk("/", 2.0)]).is_none(),
            "a new value is not a new entity"
        );
    }

    #[test]
    fn a_vanished_entity_gets_a_removal_stub_then_is_omitted() {
        let m = model();
        let mut a = Announcer::default();
        a.update(&m, &[disk("/", 1.0), disk("/mnt/usb", 1.0)]);
        let stub = cmps(a.update(&m, &[disk("/", 1.0)]).expect("changed"));
        assert_eq!(stub["disk_mnt_usb_used"], json!({"p": "sensor"}));
        let after = cmps(
            a.update(&m, &[disk("/", 1.0)])
                .expect("sent again without the stub"),
        );
        assert!(!after.contains_key("disk_mnt_usb_used"));
        assert!(a.update(&m, &[disk("/", 1.0)]).is_none());
    }

    #[test]
    fn an_entity_that_comes_back_is_announced_whole_not_as_a_stub() {
        let m = model();
        let mut a = Announcer::default();
        a.update(&m, &[disk("/", 1.0), disk("/mnt/usb", 1.0)]);
        a.update(&m, &[disk("/", 1.0)]);
        let back = cmps(
            a.update(&m, &[disk("/", 1.0), disk("/mnt/usb", 1.0)])
                .expect("changed"),
        );
        assert_eq!(
            back["disk_mnt_usb_used"]["unique_id"],
            "host2mqtt_h1_disk_mnt_usb_used"
        );
    }

    #[test]
    fn steady_values_and_attributes_go_on_the_info_topic_not_in_every_state() {
        let m = model();
        let mut attrs = Map::new();
        attrs.insert("units".into(), json!(["a.service"]));
        let readings = [
            Reading::new("kernel", "Kernel", Kind::Text, "6.1".to_string()).steady(),
            Reading::new("failed", "Failed", Kind::Count, 1u64)
                .in_group("bus")
                .with_attributes(attrs),
            disk("/", 1.0),
        ];
        let groups = [("bus", true), ("engine", false)];
        let state: Json = serde_json::from_str(&m.state_payload(&readings, &groups)).expect("json");
        assert_eq!(
            state,
            json!({"failed": 1, "disk_root_used": 1, "avail": {"bus": true}}),
            "no steady value, no attributes, no group without entities"
        );
        let info: Json = serde_json::from_str(&m.info_payload(&readings)).expect("json");
        assert_eq!(
            info,
            json!({"kernel": "6.1", "attrs": {"failed": {"units": ["a.service"]}}})
        );
        let mut a = Announcer::default();
        let c = cmps(a.update(&m, &readings).expect("first"));
        assert_eq!(c["kernel"]["state_topic"], "host2mqtt/h1/info");
        assert!(
            c["kernel"].get("expire_after").is_none(),
            "sent on change only: it must not expire"
        );
        assert!(c["failed"].get("state_topic").is_none(), "the shared state topic");
        assert_eq!(c["failed"]["expire_after"], 90);
        assert_eq!(c["failed"]["json_attributes_topic"], "host2mqtt/h1/info");
        assert_eq!(
            c["failed"]["json_attributes_template"],
            "{{value_json.attrs.failed|tojson}}"
        );
    }

    #[test]
    fn state_rounds_converts_units_and_writes_null_for_missing() {
        let m = model();
        let readings = [
            Reading::new("a", "A", Kind::Percent, 12.345),
            Reading::new("b", "B", Kind::Bytes, 3u64 * 1024 * 1024 * 1024 / 2),
            Reading::new("c", "C", Kind::BytesPerSecond, Value::Missing),
            Reading::new("d", "D", Kind::Text, "x\"y".to_string()),
            Reading::new("e", "E", Kind::Flag, true),
            Reading::new("f", "F", Kind::Percent, f64::NAN),
        ];
        assert_eq!(
            m.state_payload(&readings, &[]),
            r#"{"a":12.3,"b":1.5,"c":null,"d":"x\"y","e":true,"f":null}"#
        );
    }

    #[test]
    fn headline_entities_are_enabled_and_the_rest_disabled() {
        for key in [
            "cpu_usage",
            "cpu_core3_usage",
            "load_1m",
            "memory_used",
            "disk_root_used",
            "disk_srv_free",
            "net_eth0_rx",
            "last_seen",
            "updates_available",
            "container_web_update",
            "container_web_state",
            "systemd_system_failed_units",
            "unit_nginx_service_state",
            "cpu_temperature",
            "temp_nvme_composite",
            "os_update",
            "os_updates_pending",
            "gpu_card0_load",
            "smart_sda_health",
            "rpi_under_voltage",
            "oom_kills",
            "compose_shop_degraded",
        ] {
            assert!(enabled_by_default(key), "{key} should be enabled");
        }
        for key in [
            "cpu_iowait",
            "cpu_steal",
            "disk_root_inodes_used",
            "diskio_vda_read",
            "pressure_cpu_some",
            "processes",
            "boot_time",
            "swap_used",
            "containers_total",
            "systemd_system_state",
            "version",
            "cycle_duration",
        ] {
            assert!(!enabled_by_default(key), "{key} should be disabled");
        }
    }

    #[test]
    fn disabled_entities_say_so_unless_all_are_enabled() {
        let readings = [
            Reading::new("cpu_usage", "CPU usage", Kind::Percent, 1.0),
            Reading::new("processes", "Processes", Kind::Count, 1u64),
        ];
        let mut m = model();
        let c = cmps(&m.discovery_payload(&readings.iter().map(EntitySpec::of).collect::<Vec<_>>(), &[]));
        assert!(c["cpu_usage"].get("enabled_by_default").is_none());
        assert_eq!(c["processes"]["enabled_by_default"], json!(false));
        m.enable_all = true;
        let c = cmps(&m.discovery_payload(&readings.iter().map(EntitySpec::of).collect::<Vec<_>>(), &[]));
        assert!(c["processes"].get("enabled_by_default").is_none());
    }

    #[test]
    fn the_area_is_the_devices_suggested_area() {
        let mut m = model();
        let dev = |m: &Model| {
            let mut v = serde_json::from_str::<Json>(&m.discovery_payload(&[], &[])).expect("json");
            expand_abbreviations(&mut v);
            v["dev"].clone()
        };
        assert!(dev(&m).get("suggested_area").is_none());
        m.device.area = "Servers".into();
        assert_eq!(dev(&m)["suggested_area"], "Servers");
    }

    #[test]
    fn binary_sensor_template_maps_null_to_unknown() {
        let m = model();
        let mut a = Announcer::default();
        let flag = Reading::new("reboot_required", "Reboot required", Kind::Flag, true);
        let c = cmps(a.update(&m, &[flag]).expect("payload"));
        let tpl = c["reboot_required"]["value_template"].as_str().expect("template");
        assert!(
            tpl.contains("'None' if value_json.reboot_required is none"),
            "{tpl}"
        );
        assert_eq!(c["reboot_required"]["p"], "binary_sensor");
    }
    #[test]
    fn discovery_uses_only_abbreviations_that_expand_to_long_names() {
        let m = model();
        let mut a = Announcer::default();
        let payload = a.update(&m, &[disk("/", 1.0)]).expect("payload").to_string();
        let raw: Json = serde_json::from_str(&payload).expect("json");
        let c = &raw["cmps"]["disk_root_used"];
        for short in ["uniq_id", "val_tpl", "unit_of_meas", "stat_cla", "exp_aft"] {
            assert!(c.get(short).is_some(), "{short} in {c}");
        }
        let mut long = raw.clone();
        expand_abbreviations(&mut long);
        let c = &long["cmps"]["disk_root_used"];
        assert_eq!(c["unique_id"], "host2mqtt_h1_disk_root_used");
        assert_eq!(c["value_template"], "{{value_json.disk_root_used}}");
        assert_eq!(long["state_topic"], "host2mqtt/h1/state");
        assert_eq!(long["availability"][0]["topic"], "host2mqtt/h1/availability");
        assert_eq!(long["dev"]["identifiers"][0], "host2mqtt_h1");
        assert_eq!(long["o"]["support_url"], SUPPORT_URL);
    }

    #[test]
    fn default_entity_id_is_sent_only_where_ha_would_not_derive_it() {
        let mut m = model();
        let used = EntitySpec::of(&disk("/", 1.0));
        let cpu = EntitySpec::of(&Reading::new("cpu_usage", "CPU usage", Kind::Percent, 1.0));
        // Device "h1", node "h1": "h1 CPU usage" slugs to h1_cpu_usage.
        assert!(m.derives_entity_id(&cpu));
        // "Disk / used" slugs to disk_used, but the key is disk_root_used.
        assert!(!m.derives_entity_id(&used));
        m.device.name = "web server".into();
        assert!(!m.derives_entity_id(&cpu), "node h1 is not web_server");
        m.device.node_id = "web_server".into();
        assert!(m.derives_entity_id(&cpu));
        m.device.name = "Büro".into();
        m.device.node_id = "b_ro".into();
        assert!(!m.derives_entity_id(&cpu), "HA transliterates, we do not");
        m.device.name = "h1".into();
        m.device.node_id = "h1".into();
        m.device.area = "Servers".into();
        assert!(
            !m.derives_entity_id(&cpu),
            "HA would make it sensor.servers_h1_cpu_usage"
        );
    }

    #[test]
    fn display_precision_is_sent_only_where_it_changes_the_display() {
        let m = model();
        let pct = m.component(&EntitySpec::of(&Reading::new(
            "cpu_usage",
            "CPU usage",
            Kind::Percent,
            1.0,
        )));
        assert!(pct.get("sug_dsp_prc").is_none(), "{pct}");
        let bytes = m.component(&EntitySpec::of(&Reading::new(
            "memory_total",
            "Memory total",
            Kind::Bytes,
            1u64,
        )));
        assert_eq!(bytes["sug_dsp_prc"], 2);
    }
    #[test]
    fn timestamps_are_written_as_humantime_writes_them() {
        use std::time::Duration;
        let mut seconds: Vec<u64> = vec![
            0,
            59,
            86_399,
            86_400,
            951_782_400,
            951_868_800,
            4_107_542_400,
            253_402_300_799,
        ];
        // Every day from 1970 to 2200 at a varying time of day, leap years
        // and century rules included.
        seconds.extend((0..84_000u64).map(|d| d * 86_400 + (d * 7919) % 86_400));
        for s in seconds {
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(s);
            assert_eq!(
                format_timestamp(t),
                humantime::format_rfc3339_seconds(t).to_string(),
                "{s}"
            );
        }
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(format_timestamp(before), "1970-01-01T00:00:00Z");
    }
}
