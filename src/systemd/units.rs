//! What systemd told us, as readings: pure functions from a [`Snapshot`]
//! to entities, tested without a bus.

use serde_json::{json, Map};

use super::config::ManagerKind;
use crate::reading::{key, Kind, Reading, Value};

/// systemd's `SystemState` values (`systemctl is-system-running`).
pub const SYSTEM_STATES: &[&str] = &[
    "initializing",
    "starting",
    "running",
    "degraded",
    "maintenance",
    "stopping",
    "offline",
    "unknown",
];

/// systemd's `ActiveState` values (`maintenance` since v250, `refreshing`
/// since v257).
pub const ACTIVE_STATES: &[&str] = &[
    "active",
    "reloading",
    "inactive",
    "failed",
    "activating",
    "deactivating",
    "maintenance",
    "refreshing",
];

/// At most this many failed unit names go into the attributes (a host in
/// deep trouble must not blow up every state message).
pub const MAX_FAILED_LISTED: usize = 25;

/// One unit as `ListUnits*` describes it, plus its restart count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitInfo {
    /// `nginx.service`.
    pub name: String,
    /// `loaded`, `not-found`, `masked`, …
    pub load_state: String,
    /// `active`, `failed`, …
    pub active_state: String,
    /// `running`, `exited`, `auto-restart`, …
    pub sub_state: String,
    /// Its object path on the bus.
    pub path: String,
    /// `NRestarts` for services; `None` for other units, or when systemd
    /// did not tell (older than v235).
    pub n_restarts: Option<u32>,
}

impl UnitInfo {
    /// Services have a restart count; other unit types do not.
    pub fn is_service(&self) -> bool {
        self.name.ends_with(".service")
    }

    /// Up, as far as systemd is concerned: active (or reloading).
    pub fn is_running(&self) -> bool {
        matches!(self.active_state.as_str(), "active" | "reloading" | "refreshing")
    }
}

/// One manager's state at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// `SystemState`.
    pub system_state: String,
    /// Names of the failed units, sorted.
    pub failed: Vec<String>,
    /// The watched units that exist, sorted by name, each once.
    pub units: Vec<UnitInfo>,
}

/// Merges the units found by name and by glob: each once, sorted, and
/// without names systemd has no unit for (a watched unit that vanished
/// loses its entities).
pub fn watched_units(found: impl IntoIterator<Item = UnitInfo>) -> Vec<UnitInfo> {
    let mut units: Vec<UnitInfo> = found
        .into_iter()
        .filter(|u| u.load_state != "not-found")
        .collect();
    units.sort_by(|a, b| a.name.cmp(&b.name));
    units.dedup_by(|a, b| a.name == b.name);
    units
}

/// How one manager's readings are keyed and named.
#[derive(Debug, Clone)]
pub struct Layout {
    /// System or user manager.
    pub kind: ManagerKind,
    /// Units that get a restart button.
    pub restart: Vec<glob::Pattern>,
}

impl Layout {
    /// A layout for `kind`; `restart` patterns that do not compile (the
    /// config validation refused them already) are left out.
    pub fn new(kind: ManagerKind, restart: &[String]) -> Self {
        Layout {
            kind,
            restart: restart
                .iter()
                .filter_map(|p| glob::Pattern::new(p).ok())
                .collect(),
        }
    }

    /// `systemd_system_state` / `systemd_user_state`.
    pub fn state_key(&self) -> String {
        format!("{}_state", self.kind.source_name())
    }

    /// `systemd_system_failed_units` / `systemd_user_failed_units`.
    pub fn failed_key(&self) -> String {
        format!("{}_failed_units", self.kind.source_name())
    }

    /// The key of a per-unit entity: `unit_<name>_<what>` for the system
    /// manager, `user_unit_<name>_<what>` for the user manager (a unit can
    /// exist in both).
    pub fn unit_key(&self, unit: &str, what: &str) -> String {
        let prefix = match self.kind {
            ManagerKind::System => "unit",
            ManagerKind::User => "user_unit",
        };
        key(&[prefix, unit, what])
    }

    /// The unit as named in HA: `nginx.service`, or `nginx.service (user)`.
    fn label(&self, unit: &str) -> String {
        match self.kind {
            ManagerKind::System => unit.to_string(),
            ManagerKind::User => format!("{unit} (user)"),
        }
    }

    /// Whether `unit` may be restarted from HA.
    pub fn may_restart(&self, unit: &str) -> bool {
        self.restart.iter().any(|p| p.matches(unit))
    }

    /// The manager's own entities before anything is known.
    pub fn initial(&self) -> Vec<Reading> {
        self.manager_readings(Value::Missing, None)
    }

    fn manager_readings(&self, state: Value, failed: Option<&[String]>) -> Vec<Reading> {
        let (state_name, failed_name) = match self.kind {
            ManagerKind::System => ("System state", "Failed units"),
            ManagerKind::User => ("User manager state", "Failed user units"),
        };
        let listed: Vec<&String> = failed
            .unwrap_or_default()
            .iter()
            .take(MAX_FAILED_LISTED)
            .collect();
        let mut attrs = Map::new();
        attrs.insert("units".into(), json!(listed));
        vec![
            Reading::new(self.state_key(), state_name, Kind::Enum(SYSTEM_STATES), state),
            Reading::new(
                self.failed_key(),
                failed_name,
                Kind::Count,
                failed.map_or(Value::Missing, |f| Value::Int(f.len() as u64)),
            )
            .with_attributes(attrs),
        ]
    }

    /// Every reading of a snapshot: the manager's state and failed units,
    /// then per watched unit its state, restarts (services), running, and
    /// a restart button where allowed.
    pub fn readings(&self, snap: &Snapshot) -> Vec<Reading> {
        let mut out = self.manager_readings(Value::Text(snap.system_state.clone()), Some(&snap.failed));
        for u in &snap.units {
            let label = self.label(&u.name);
            out.push(Reading::new(
                self.unit_key(&u.name, "state"),
                format!("{label} state"),
                Kind::Enum(ACTIVE_STATES),
                Value::Text(u.active_state.clone()),
            ));
            if u.is_service() {
                out.push(Reading::new(
                    self.unit_key(&u.name, "restarts"),
                    format!("{label} restarts"),
                    Kind::Total,
                    u.n_restarts.map(u64::from),
                ));
            }
            out.push(Reading::new(
                self.unit_key(&u.name, "running"),
                format!("{label} running"),
                Kind::Flag,
                u.is_running(),
            ));
            if self.may_restart(&u.name) {
                let k = self.unit_key(&u.name, "restart");
                out.push(
                    Reading::new(
                        k.clone(),
                        format!("Restart {label}"),
                        Kind::Button,
                        Value::Missing,
                    )
                    .with_command(k),
                );
            }
        }
        out
    }

    /// The restart buttons of a snapshot: command word → unit name.
    pub fn buttons(&self, snap: &Snapshot) -> Vec<(String, String)> {
        snap.units
            .iter()
            .filter(|u| self.may_restart(&u.name))
            .map(|u| (self.unit_key(&u.name, "restart"), u.name.clone()))
            .collect()
    }
}

/// The same entities with no values (the one rule, in [`crate::availability`]).
pub use crate::availability::without_values;

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(name: &str, active: &str, restarts: Option<u32>) -> UnitInfo {
        UnitInfo {
            name: name.into(),
            load_state: "loaded".into(),
            active_state: active.into(),
            sub_state: "running".into(),
            path: format!("/org/freedesktop/systemd1/unit/{}", name.replace('.', "_2e")),
            n_restarts: restarts,
        }
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            system_state: "degraded".into(),
            failed: vec!["backup.service".into()],
            units: vec![
                unit("nginx.service", "active", Some(2)),
                unit("backup.timer", "active", None),
            ],
        }
    }

    #[test]
    fn a_snapshot_gives_manager_entities_then_per_unit_entities() {
        let layout = Layout::new(ManagerKind::System, &["nginx.*".into()]);
        let r = layout.readings(&snapshot());
        let shape: Vec<(&str, &str, Kind)> = r
            .iter()
            .map(|r| (r.key.as_str(), r.name.as_str(), r.kind))
            .collect();
        assert_eq!(
            shape,
            [
                ("systemd_system_state", "System state", Kind::Enum(SYSTEM_STATES)),
                ("systemd_system_failed_units", "Failed units", Kind::Count),
                (
                    "unit_nginx_service_state",
                    "nginx.service state",
                    Kind::Enum(ACTIVE_STATES)
                ),
                (
                    "unit_nginx_service_restarts",
                    "nginx.service restarts",
                    Kind::Total
                ),
                ("unit_nginx_service_running", "nginx.service running", Kind::Flag),
                (
                    "unit_nginx_service_restart",
                    "Restart nginx.service",
                    Kind::Button
                ),
                (
                    "unit_backup_timer_state",
                    "backup.timer state",
                    Kind::Enum(ACTIVE_STATES)
                ),
                ("unit_backup_timer_running", "backup.timer running", Kind::Flag),
            ]
        );
        assert_eq!(r[0].value, Value::Text("degraded".into()));
        assert_eq!(r[1].value, Value::Int(1));
        assert_eq!(
            r[1].attributes.as_ref().map(|a| a["units"].clone()),
            Some(json!(["backup.service"]))
        );
        assert_eq!(r[3].value, Value::Int(2));
        assert_eq!(r[4].value, Value::Bool(true));
        assert_eq!(r[5].command.as_deref(), Some("unit_nginx_service_restart"));
    }

    #[test]
    fn only_allow_listed_units_get_a_restart_button() {
        let layout = Layout::new(ManagerKind::System, &["nginx.service".into()]);
        assert_eq!(
            layout.buttons(&snapshot()),
            [(
                "unit_nginx_service_restart".to_string(),
                "nginx.service".to_string()
            )]
        );
        let none = Layout::new(ManagerKind::System, &[]);
        assert!(none.buttons(&snapshot()).is_empty());
        assert!(none.readings(&snapshot()).iter().all(|r| r.kind != Kind::Button));
    }

    #[test]
    fn user_units_have_their_own_keys_and_names() {
        let layout = Layout::new(ManagerKind::User, &[]);
        let r = layout.readings(&snapshot());
        assert_eq!(r[0].key, "systemd_user_state");
        assert_eq!(r[1].name, "Failed user units");
        assert_eq!(r[2].key, "user_unit_nginx_service_state");
        assert_eq!(r[2].name, "nginx.service (user) state");
    }

    #[test]
    fn a_restart_count_systemd_did_not_give_is_missing_not_zero() {
        let layout = Layout::new(ManagerKind::System, &[]);
        let mut snap = snapshot();
        snap.units[0].n_restarts = None;
        let r = layout.readings(&snap);
        let restarts = r
            .iter()
            .find(|r| r.key == "unit_nginx_service_restarts")
            .expect("entity stays");
        assert_eq!(restarts.value, Value::Missing);
    }

    #[test]
    fn failed_unit_names_are_capped_but_the_count_is_not() {
        let layout = Layout::new(ManagerKind::System, &[]);
        let snap = Snapshot {
            system_state: "degraded".into(),
            failed: (0..40).map(|i| format!("u{i:02}.service")).collect(),
            units: vec![],
        };
        let r = layout.readings(&snap);
        assert_eq!(r[1].value, Value::Int(40));
        let listed = r[1]
            .attributes
            .as_ref()
            .map(|a| a["units"].as_array().map(Vec::len));
        assert_eq!(listed, Some(Some(MAX_FAILED_LISTED)));
    }

    #[test]
    fn watched_units_are_sorted_deduplicated_and_drop_units_systemd_does_not_know() {
        let mut gone = unit("gone.service", "inactive", None);
        gone.load_state = "not-found".into();
        let merged = watched_units([
            unit("b.service", "active", None),
            gone,
            unit("a.service", "active", None),
            unit("b.service", "active", None),
        ]);
        let names: Vec<&str> = merged.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["a.service", "b.service"]);
    }

    #[test]
    fn running_means_active_or_reloading() {
        assert!(unit("a.service", "active", None).is_running());
        assert!(unit("a.service", "reloading", None).is_running());
        assert!(!unit("a.service", "activating", None).is_running());
        assert!(!unit("a.service", "failed", None).is_running());
    }

    #[test]
    fn without_values_keeps_every_entity_and_its_shape() {
        let layout = Layout::new(ManagerKind::System, &["*".into()]);
        let r = layout.readings(&snapshot());
        let blank = without_values(&r);
        assert_eq!(blank.len(), r.len());
        assert!(blank.iter().all(|b| b.value == Value::Missing));
        assert!(blank
            .iter()
            .zip(&r)
            .all(|(b, r)| crate::discovery::EntitySpec::of(b) == crate::discovery::EntitySpec::of(r)));
    }
}
