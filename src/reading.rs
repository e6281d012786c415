//! What collectors produce: typed values with a stable key, a human name and
//! the kind of quantity they are. Nothing here knows about MQTT or Home
//! Assistant; `crate::discovery` maps a [`Kind`] to HA's vocabulary.

use std::time::SystemTime;

/// The kind of quantity a reading holds. It decides the unit, the device
/// class and how the value is rounded, downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// 0–100, a share of something.
    Percent,
    /// A size in bytes.
    Bytes,
    /// A rate in bytes per second.
    BytesPerSecond,
    /// A byte counter that only grows (bytes received since boot); a drop
    /// is a reset, which HA's statistics handle.
    BytesTotal,
    /// A duration in milliseconds.
    Milliseconds,
    /// A point in time.
    Timestamp,
    /// A plain count (processes, containers).
    Count,
    /// A load average: unitless, two decimals.
    Load,
    /// Free text (OS name, kernel release, version).
    Text,
    /// On/off where "on" is a problem (a container is unhealthy).
    Problem,
    /// On/off with no judgement attached (a reboot is required, a unit runs).
    Flag,
    /// On/off where "on" means an update is available.
    UpdateAvailable,
    /// One of a fixed set of words (a unit's active state). A value outside
    /// the set is sent as missing rather than as a word HA would refuse.
    Enum(&'static [&'static str]),
    /// A count that only grows (restarts): HA keeps its statistics as a total.
    Total,
    /// Whether a newer version of something is available: the value is an
    /// [`Update`]. Carries a `command` to install it.
    Update,
    /// An action the user can trigger: no value, a `command`.
    Button,
    /// A temperature in degrees Celsius.
    Celsius,
    /// A fan speed in revolutions per minute.
    Rpm,
    /// A power draw in watts.
    Watts,
    /// A clock frequency in megahertz.
    Megahertz,
}

/// The state of an [`Kind::Update`] reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    /// What runs now (an image digest or "current").
    pub installed: String,
    /// What is available; equal to `installed` when up to date.
    pub latest: String,
    /// What is being updated (an image reference).
    pub title: String,
    /// An install is running.
    pub in_progress: bool,
    /// HA's release summary: what the update brings, in a line.
    pub summary: Option<String>,
}

/// One value. `Missing` is a value we know we cannot give this cycle (a rate
/// on the first cycle): the entity exists but its state is unknown.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Float(f64),
    Int(u64),
    Text(String),
    Bool(bool),
    Time(SystemTime),
    Update(Update),
    Missing,
}

impl From<Option<f64>> for Value {
    fn from(v: Option<f64>) -> Self {
        v.map_or(Value::Missing, Value::Float)
    }
}

/// A reading's key or name: a literal, or text made once (from a mount
/// point, an interface) and shared by every cycle's reading after, so a
/// cycle allocates no key or name (two `String`s per reading were a sixth
/// of a cycle's instructions, in malloc and free, issue 13). Reads as a
/// `str`.
#[derive(Clone)]
pub struct Label(LabelText);

#[derive(Clone)]
enum LabelText {
    Static(&'static str),
    Shared(std::sync::Arc<str>),
}

impl Label {
    /// The text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            LabelText::Static(s) => s,
            LabelText::Shared(s) => s,
        }
    }
}

impl Default for Label {
    fn default() -> Self {
        Label(LabelText::Static(""))
    }
}

impl std::ops::Deref for Label {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::borrow::Borrow<str> for Label {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&'static str> for Label {
    fn from(s: &'static str) -> Self {
        Label(LabelText::Static(s))
    }
}

impl From<String> for Label {
    fn from(s: String) -> Self {
        Label(LabelText::Shared(s.into()))
    }
}

impl PartialEq for Label {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.as_str(), other.as_str());
        // This cycle's key against last cycle's is mostly the same literal
        // or the same shared text: equal without comparing bytes.
        (std::ptr::eq(a.as_ptr(), b.as_ptr()) && a.len() == b.len()) || a == b
    }
}

impl Eq for Label {}

impl PartialEq<str> for Label {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Label {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Label {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialOrd for Label {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Label {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for Label {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl serde::Serialize for Label {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// One measurement of one entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Stable key, `[a-z0-9_]` only: the state JSON key and the tail of the
    /// entity's unique_id. Built with [`key`] from parts that may come from
    /// the host (mount points, interface names).
    pub key: Label,
    /// The entity name as HA shows it after the device name ("CPU usage").
    pub name: Label,
    /// The kind of quantity.
    pub kind: Kind,
    /// Diagnostic readings are shown apart from the primary ones in HA.
    pub diagnostic: bool,
    /// Off unless the user asks for it (HA's "disabled by default").
    pub enabled_by_default: bool,
    /// The value itself.
    pub value: Value,
    /// The part of the host the reading comes from when that part can be
    /// out of reach (a container engine, a D-Bus bus): while it is, HA shows
    /// the entity unavailable rather than a stale or empty value.
    pub group: Option<&'static str>,
    /// Extra detail, shown as the entity's attributes (the names of failed
    /// units, the images with pending updates).
    pub attributes: Option<serde_json::Map<String, serde_json::Value>>,
    /// For buttons and installable updates: the payload on the command
    /// topic that triggers the action. Nothing else can be triggered.
    pub command: Option<String>,
    /// A fact that changes at boot or upgrade, not between cycles (the
    /// kernel, the OS): sent on the retained info topic when it changes
    /// rather than in every cycle's state, and kept, not expired, while
    /// the host is online. [`Kind::Update`] readings are steady too.
    pub steady: bool,
}

impl Reading {
    /// A primary reading, enabled by default.
    pub fn new(key: impl Into<Label>, name: impl Into<Label>, kind: Kind, value: impl Into<Value>) -> Self {
        Reading {
            key: key.into(),
            name: name.into(),
            kind,
            diagnostic: false,
            enabled_by_default: true,
            value: value.into(),
            group: None,
            attributes: None,
            command: None,
            steady: false,
        }
    }

    /// Marks the reading as steady (see [`Reading::steady`]).
    pub fn steady(mut self) -> Self {
        self.steady = true;
        self
    }

    /// Whether the value goes on the info topic (see [`Reading::steady`]).
    pub fn is_steady(&self) -> bool {
        self.steady || self.kind == Kind::Update
    }

    /// Marks the reading as diagnostic (HA's entity_category).
    pub fn diagnostic(mut self) -> Self {
        self.diagnostic = true;
        self
    }

    /// Attaches attributes.
    pub fn with_attributes(mut self, attributes: serde_json::Map<String, serde_json::Value>) -> Self {
        self.attributes = Some(attributes);
        self
    }

    /// Makes the entity accept `command` on the command topic.
    pub fn with_command(mut self, command: impl Into<String>) -> Self {
        self.command = Some(command.into());
        self
    }

    /// Marks the reading as coming from `group` (see [`Reading::group`]).
    pub fn in_group(mut self, group: &'static str) -> Self {
        self.group = Some(group);
        self
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(v)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<Update> for Value {
    fn from(v: Update) -> Self {
        Value::Update(v)
    }
}

impl From<Option<u64>> for Value {
    fn from(v: Option<u64>) -> Self {
        v.map_or(Value::Missing, Value::Int)
    }
}

impl From<SystemTime> for Value {
    fn from(v: SystemTime) -> Self {
        Value::Time(v)
    }
}

/// The key and name of each reading about one named part of the host.
pub type PartLabels = Vec<(Label, Label)>;

/// Keys and names of the readings about named parts of the host (a mount
/// point, an interface, a block device), built once per part and copied
/// after: [`key`] and a `format!` per reading per cycle were a tenth of a
/// cycle's instructions (issue 13). A part not asked for between two
/// [`Labels::sweep`]s is forgotten (interfaces come and go).
#[derive(Debug, Default)]
pub struct Labels {
    /// Per part: asked for since the last sweep, and its labels.
    parts: std::collections::HashMap<String, (bool, PartLabels)>,
}

impl Labels {
    /// The labels of `part`, made by `build` the first time.
    pub fn of(&mut self, part: &str, build: impl FnOnce(&str) -> PartLabels) -> &[(Label, Label)] {
        if !self.parts.contains_key(part) {
            self.parts.insert(part.to_string(), (false, build(part)));
        }
        match self.parts.get_mut(part) {
            Some((asked, labels)) => {
                *asked = true;
                labels
            }
            None => &[],
        }
    }

    /// Forgets the parts not asked for since the last sweep.
    pub fn sweep(&mut self) {
        self.parts.retain(|_, (asked, _)| std::mem::take(asked));
    }
}

/// The label at `i` of `labels` as a new reading's key and name (empty
/// where there is none, which the callers' fixed lists rule out).
pub fn label(labels: &[(Label, Label)], i: usize) -> (Label, Label) {
    labels.get(i).cloned().unwrap_or_default()
}

/// Builds a reading key from fixed parts and parts that come from the host.
///
/// Every part is lower-cased and anything outside `[a-z0-9]` becomes `_`
/// (runs collapsed, ends trimmed), so a mount point or an interface name can
/// never put `+`, `#` or `/` into a topic, unique_id or entity id. Separators
/// people use in names (`/ - . _`) map to `_` quietly; when a part held any
/// other character, a short hash of the raw part is appended so two names
/// that differ only there ("/mnt/a b" and "/mnt/a#b") still get distinct,
/// stable keys. The root directory `/` is `root`, so the root filesystem's
/// entities read `disk_root_used`.
pub fn key(parts: &[&str]) -> String {
    let mut out = String::new();
    for part in parts {
        let slug = if *part == "/" {
            "root".to_string()
        } else {
            slug(part)
        };
        let lossy = part
            .chars()
            .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '.' | '_')));
        let piece = match (slug.is_empty(), lossy) {
            (true, _) => format!("x{:04x}", short_hash(part)),
            (false, true) => format!("{slug}_{:04x}", short_hash(part)),
            (false, false) => slug,
        };
        if !out.is_empty() {
            out.push('_');
        }
        out.push_str(&piece);
    }
    out
}

/// Lower-case, `[a-z0-9_]`, runs of anything else collapsed to one `_`.
pub fn slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

/// FNV-1a folded to 16 bits: stable across runs and builds (unlike std's
/// hasher), which is what a unique_id needs.
fn short_hash(s: &str) -> u16 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    ((h >> 16) ^ (h & 0xffff)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_built_once_per_part_and_forgotten_when_not_asked_for() {
        let mut labels = Labels::default();
        let mut built = 0;
        let mut build = |part: &str| {
            built += 1;
            vec![(
                key(&["net", part, "rx"]).into(),
                format!("Network {part} received").into(),
            )]
        };
        assert_eq!(labels.of("eth0", &mut build)[0].0, "net_eth0_rx");
        labels.sweep();
        assert_eq!(labels.of("eth0", &mut build)[0].1, "Network eth0 received");
        labels.sweep();
        labels.sweep();
        labels.of("eth0", &mut build);
        assert_eq!(built, 2, "built once, then again after a sweep without it");
        assert_eq!(label(&[], 0), (Label::default(), Label::default()));
    }

    #[test]
    fn key_maps_common_separators_quietly() {
        assert_eq!(key(&["disk", "/var/lib", "used"]), "disk_var_lib_used");
        assert_eq!(key(&["net", "wg-home", "rx"]), "net_wg_home_rx");
    }

    #[test]
    fn key_never_carries_topic_wildcards_and_stays_distinct() {
        let a = key(&["disk", "/mnt/a+b", "used"]);
        let b = key(&["disk", "/mnt/a#b", "used"]);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
        assert_ne!(a, b);
        assert_eq!(a, key(&["disk", "/mnt/a+b", "used"]), "stable");
    }

    #[test]
    fn key_of_the_root_directory_is_root() {
        assert_eq!(key(&["disk", "/", "used"]), "disk_root_used");
    }

    #[test]
    fn key_of_a_name_with_nothing_usable_is_a_stable_hash() {
        let k = key(&["net", "ü", "rx"]);
        assert!(k.starts_with("net_x") && k.ends_with("_rx"), "{k}");
    }
}
