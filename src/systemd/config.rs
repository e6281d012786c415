//! The `[systemd]` section: which managers to ask, over which bus, which
//! units to watch and which may be restarted from Home Assistant.

use std::time::Duration;

use serde::Deserialize;

use crate::error::ConfigError;

/// systemd's managers over D-Bus, and the pending-reboot sensor.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SystemdConfig {
    /// Each D-Bus call (and each connect) gives up after this long.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// When a bus goes away, reconnect after 1s, doubling up to this.
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// The system manager (PID 1) on the system bus; on by default.
    pub system: SystemManagerConfig,
    /// The user manager (rootless Quadlets live there) on the user bus;
    /// off by default.
    pub user: UserManagerConfig,
    /// "Reboot required": Debian/Ubuntu's flag file, Flatcar's
    /// update_engine, rpm-ostree's staged deployment.
    pub reboot: RebootConfig,
}

impl Default for SystemdConfig {
    fn default() -> Self {
        SystemdConfig {
            timeout: Duration::from_secs(5),
            reconnect_max: Duration::from_secs(30),
            system: SystemManagerConfig::default(),
            user: UserManagerConfig::default(),
            reboot: RebootConfig::default(),
        }
    }
}

/// The system manager (PID 1).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SystemManagerConfig {
    /// Ask the system manager.
    pub enabled: bool,
    /// The system bus, as a D-Bus address. Empty: `$DBUS_SYSTEM_BUS_ADDRESS`,
    /// else `unix:path=/run/dbus/system_bus_socket`.
    pub address: String,
    /// Units that get entities of their own (state, restarts, running):
    /// names (`nginx.service`) or globs (`container-*.service`). A glob
    /// matches the units systemd has loaded; a name is looked up even when
    /// stopped.
    #[serde(deserialize_with = "crate::context::comma_list")]
    pub watch: Vec<String>,
    /// Watched units (names or globs) that get a "Restart" button in Home
    /// Assistant. Empty: no buttons. Nothing outside this list can be
    /// restarted through host2mqtt.
    #[serde(deserialize_with = "crate::context::comma_list")]
    pub restart: Vec<String>,
}

impl Default for SystemManagerConfig {
    fn default() -> Self {
        SystemManagerConfig {
            enabled: true,
            address: String::new(),
            watch: Vec::new(),
            restart: Vec::new(),
        }
    }
}

/// A user's manager (where rootless Quadlets run). The same keys as
/// [`SystemManagerConfig`], off by default.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct UserManagerConfig {
    /// Ask the user manager.
    pub enabled: bool,
    /// The user's bus, as a D-Bus address. Empty: `$DBUS_SESSION_BUS_ADDRESS`,
    /// else `$XDG_RUNTIME_DIR/bus`.
    pub address: String,
    /// Units (names or globs) that get entities of their own.
    #[serde(deserialize_with = "crate::context::comma_list")]
    pub watch: Vec<String>,
    /// Watched units (names or globs) that get a "Restart" button.
    #[serde(deserialize_with = "crate::context::comma_list")]
    pub restart: Vec<String>,
}

/// A manager's settings, whichever manager it is.
#[derive(Debug, Clone, Copy)]
pub struct ManagerSettings<'a> {
    /// Ask this manager.
    pub enabled: bool,
    /// Its bus address as configured ("" for the standard one).
    pub address: &'a str,
    /// Watched unit names and globs.
    pub watch: &'a [String],
    /// Units (names and globs) with a restart button.
    pub restart: &'a [String],
}

impl SystemManagerConfig {
    fn settings(&self) -> ManagerSettings<'_> {
        ManagerSettings {
            enabled: self.enabled,
            address: &self.address,
            watch: &self.watch,
            restart: &self.restart,
        }
    }
}

impl UserManagerConfig {
    fn settings(&self) -> ManagerSettings<'_> {
        ManagerSettings {
            enabled: self.enabled,
            address: &self.address,
            watch: &self.watch,
            restart: &self.restart,
        }
    }
}

/// The "reboot required" sensor.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RebootConfig {
    /// Publish `reboot_required`.
    pub enabled: bool,
}

impl Default for RebootConfig {
    fn default() -> Self {
        RebootConfig { enabled: true }
    }
}

/// Where the system bus listens when nothing says otherwise.
pub const SYSTEM_BUS_SOCKET: &str = "/run/dbus/system_bus_socket";

/// Which manager a config table is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManagerKind {
    /// PID 1, on the system bus.
    System,
    /// A user's manager, on that user's bus.
    User,
}

impl ManagerKind {
    /// The config table and source name part: `system` or `user`.
    pub fn word(self) -> &'static str {
        match self {
            ManagerKind::System => "system",
            ManagerKind::User => "user",
        }
    }

    /// The source's name, which is also the availability group of its
    /// entities (`avail.systemd_system` in the state JSON).
    pub fn source_name(self) -> &'static str {
        match self {
            ManagerKind::System => "systemd_system",
            ManagerKind::User => "systemd_user",
        }
    }

    /// The bus address: the configured one, else the standard one from
    /// `env` (passed in so tests do not touch the process environment).
    /// `None` when a user bus cannot be found.
    pub fn address(self, configured: &str, env: impl Fn(&str) -> Option<String>) -> Option<String> {
        if !configured.is_empty() {
            return Some(configured.to_string());
        }
        let set = |name: &str| env(name).filter(|v| !v.is_empty());
        match self {
            ManagerKind::System => Some(
                set("DBUS_SYSTEM_BUS_ADDRESS").unwrap_or_else(|| format!("unix:path={SYSTEM_BUS_SOCKET}")),
            ),
            ManagerKind::User => set("DBUS_SESSION_BUS_ADDRESS")
                .or_else(|| set("XDG_RUNTIME_DIR").map(|dir| format!("unix:path={dir}/bus"))),
        }
    }
}

impl ManagerKind {
    /// The standard system bus socket when the system manager would use it
    /// without anyone having asked (no `address`, no
    /// `$DBUS_SYSTEM_BUS_ADDRESS`). A host without it has no system bus to
    /// ask ("nothing here"), which is not an error.
    pub fn unasked_socket(
        self,
        configured: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Option<&'static str> {
        let asked = !configured.is_empty() || env("DBUS_SYSTEM_BUS_ADDRESS").is_some_and(|v| !v.is_empty());
        (self == ManagerKind::System && !asked).then_some(SYSTEM_BUS_SOCKET)
    }
}

impl SystemdConfig {
    /// Checks the section; errors name full dotted keys under `key` (`systemd`).
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let section = key;
        let key = |k: String, m: String| ConfigError::Key { key: k, message: m };
        if self.timeout < Duration::from_millis(100) {
            return Err(key(
                format!("{section}.timeout"),
                "expected a duration of at least 100ms, such as \"5s\"".into(),
            ));
        }
        if self.reconnect_max < Duration::from_secs(1) {
            return Err(key(
                format!("{section}.reconnect_max"),
                "expected a duration of at least 1s".into(),
            ));
        }
        for kind in [ManagerKind::System, ManagerKind::User] {
            let m = self.manager(kind);
            let table = format!("{section}.{}", kind.word());
            if !m.address.is_empty() {
                zbus::Address::try_from(m.address).map_err(|e| {
                    key(
                        format!("{table}.address"),
                        format!(
                            "expected a D-Bus address such as \"unix:path=/run/dbus/system_bus_socket\"; {e}"
                        ),
                    )
                })?;
            }
            for (field, patterns) in [("watch", m.watch), ("restart", m.restart)] {
                for p in patterns {
                    check_unit_pattern(p)
                        .map_err(|msg| key(format!("{table}.{field}"), format!("{p:?}: {msg}")))?;
                }
            }
            if !m.restart.is_empty() && m.watch.is_empty() {
                return Err(key(
                    format!("{table}.restart"),
                    "expected the units to restart to be watched too (add them to `watch`)".into(),
                ));
            }
        }
        Ok(())
    }

    /// The settings of one manager.
    pub fn manager(&self, kind: ManagerKind) -> ManagerSettings<'_> {
        match kind {
            ManagerKind::System => self.system.settings(),
            ManagerKind::User => self.user.settings(),
        }
    }
}

/// A unit name or glob as systemd takes it: no whitespace or `/`, and a
/// glob that compiles.
fn check_unit_pattern(p: &str) -> Result<(), String> {
    if p.is_empty() || p.len() > 255 || p.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(
            "expected a unit name or glob such as \"nginx.service\" or \"container-*.service\"".into(),
        );
    }
    glob::Pattern::new(p)
        .map(|_| ())
        .map_err(|e| format!("not a valid glob: {e}"))
}

/// True when `p` is a glob rather than a plain unit name.
pub fn is_glob(p: &str) -> bool {
    p.contains(['*', '?', '['])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn system_bus_address_comes_from_the_config_then_the_environment_then_the_standard_socket() {
        let k = ManagerKind::System;
        assert_eq!(
            k.address(
                "unix:path=/x",
                env(&[("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/y")])
            ),
            Some("unix:path=/x".into())
        );
        assert_eq!(
            k.address("", env(&[("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/y")])),
            Some("unix:path=/y".into())
        );
        assert_eq!(
            k.address("", env(&[])),
            Some("unix:path=/run/dbus/system_bus_socket".into())
        );
    }

    #[test]
    fn only_the_system_bus_nobody_asked_for_may_be_absent_quietly() {
        let k = ManagerKind::System;
        assert_eq!(k.unasked_socket("", env(&[])), Some(SYSTEM_BUS_SOCKET));
        assert_eq!(k.unasked_socket("unix:path=/x", env(&[])), None);
        assert_eq!(
            k.unasked_socket("", env(&[("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/y")])),
            None
        );
        assert_eq!(ManagerKind::User.unasked_socket("", env(&[])), None);
    }

    #[test]
    fn user_bus_address_falls_back_to_xdg_runtime_dir_and_may_be_missing() {
        let k = ManagerKind::User;
        assert_eq!(
            k.address(
                "",
                env(&[
                    ("DBUS_SESSION_BUS_ADDRESS", "unix:path=/run/user/7/bus"),
                    ("XDG_RUNTIME_DIR", "/elsewhere")
                ])
            ),
            Some("unix:path=/run/user/7/bus".into())
        );
        assert_eq!(
            k.address("", env(&[("XDG_RUNTIME_DIR", "/run/user/1000")])),
            Some("unix:path=/run/user/1000/bus".into())
        );
        assert_eq!(k.address("", env(&[("DBUS_SESSION_BUS_ADDRESS", "")])), None);
    }

    #[test]
    fn validation_names_the_key_of_a_bad_address_pattern_or_restart_list() {
        let mut c = SystemdConfig::default();
        assert!(c.validate("systemd").is_ok());
        c.user.address = "nonsense".into();
        let e = c.validate("systemd").expect_err("bad address").to_string();
        assert!(e.contains("systemd.user.address"), "{e}");

        let mut c = SystemdConfig::default();
        c.system.watch = vec!["a b.service".into()];
        let e = c.validate("systemd").expect_err("bad name").to_string();
        assert!(e.contains("systemd.system.watch"), "{e}");

        let mut c = SystemdConfig::default();
        c.system.watch = vec!["[.service".into()];
        assert!(c.validate("systemd").is_err(), "a glob that does not compile");

        let mut c = SystemdConfig::default();
        c.system.restart = vec!["nginx.service".into()];
        let e = c
            .validate("systemd")
            .expect_err("restart without watch")
            .to_string();
        assert!(e.contains("systemd.system.restart"), "{e}");
    }

    #[test]
    fn a_manager_table_without_enabled_keeps_that_managers_default() {
        let system: SystemManagerConfig =
            serde_json::from_str(r#"{"watch": ["a.service"]}"#).expect("parses");
        let user: UserManagerConfig = serde_json::from_str(r#"{"watch": ["a.service"]}"#).expect("parses");
        assert!(system.enabled);
        assert!(!user.enabled);
    }

    #[test]
    fn globs_are_told_from_names() {
        assert!(is_glob("container-*.service"));
        assert!(is_glob("app?.service"));
        assert!(!is_glob("nginx.service"));
    }
}
