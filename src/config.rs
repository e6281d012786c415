//! Configuration: TOML file + `HOST2MQTT__SECTION__KEY` environment
//! overrides, validated once before any work. The doc comments on the
//! fields are the user documentation; `config/host2mqtt.toml` repeats every
//! key with its default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::host::HostPaths;

/// Environment prefix: `HOST2MQTT__MQTT__HOST=broker` sets `mqtt.host`.
pub const ENV_PREFIX: &str = "HOST2MQTT";

/// Keys that hold lists; from the environment they are comma-separated.
const LIST_KEYS: &[&str] = &[
    "mqtt.hosts",
    "collectors.disk.mount_points_include",
    "collectors.disk.mount_points_exclude",
    "collectors.disk.fs_types_include",
    "collectors.disk.fs_types_exclude",
    "collectors.diskio.devices_include",
    "collectors.diskio.devices_exclude",
    "collectors.network.interfaces_include",
    "collectors.network.interfaces_exclude",
    "systemd.system.watch",
    "systemd.system.restart",
    "systemd.user.watch",
    "systemd.user.restart",
];

/// A configuration that cannot be used. The message names the key and what
/// was expected; the process exits with 78 (EX_CONFIG) and publishes nothing.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("config: {0}")]
    Invalid(String),
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// How often to collect and publish.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Stable id of this host in topics and unique_ids, `[a-zA-Z0-9_-]`.
    /// Empty: the host name, sanitised.
    pub node_id: String,
    /// Device name shown in Home Assistant. Empty: the host name.
    pub device_name: String,
    /// The MQTT connection.
    pub mqtt: MqttConfig,
    /// Home Assistant's side of discovery.
    pub homeassistant: HomeAssistantConfig,
    /// Where the host's /proc, /sys and / are (for running in a container).
    pub host: HostConfig,
    /// Each collector's switch and filters.
    pub collectors: CollectorsConfig,
    /// Containers and pending image updates (see `crate::container`).
    pub containers: crate::container::ContainersConfig,
    /// systemd's managers over D-Bus and "reboot required" (see `crate::systemd`).
    pub systemd: crate::systemd::SystemdConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            interval: Duration::from_secs(30),
            node_id: String::new(),
            device_name: String::new(),
            mqtt: MqttConfig::default(),
            homeassistant: HomeAssistantConfig::default(),
            host: HostConfig::default(),
            collectors: CollectorsConfig::default(),
            containers: crate::container::ContainersConfig::default(),
            systemd: crate::systemd::SystemdConfig::default(),
        }
    }
}

/// The MQTT connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker host name or address.
    pub host: String,
    /// Broker port (1883; 8883 is usual for TLS).
    pub port: u16,
    /// Several brokers ("host:port" or "host", port then `port`), tried in
    /// turn from a random one. Empty: `host` and `port`.
    pub hosts: Vec<String>,
    /// MQTT protocol version: "3.1.1" (default) or "5".
    pub protocol: String,
    /// MQTT 5 only: the broker publishes the will this long after losing
    /// us, so a quick reconnect shows no `offline`. "0s": at once.
    #[serde(with = "humantime_serde")]
    pub will_delay: Duration,
    /// Client id. Empty: `host2mqtt-<node_id>`, stable per host.
    pub client_id: String,
    /// Keepalive: how soon a dead connection is noticed (and the will fires).
    #[serde(with = "humantime_serde")]
    pub keepalive: Duration,
    /// User name; empty for an anonymous connection.
    pub username: String,
    /// Password inline (prefer `password_file` or a systemd credential).
    pub password: String,
    /// File holding the password (trailing newline ignored).
    pub password_file: PathBuf,
    /// Name of the systemd credential holding the password, looked up in
    /// `$CREDENTIALS_DIRECTORY` when neither `password` nor `password_file` is set.
    pub password_credential: String,
    /// Topic root for state and availability: `<base_topic>/<node_id>/…`.
    pub base_topic: String,
    /// First delay before reconnecting after a failure.
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    /// Longest delay between reconnect attempts (backoff doubles up to it).
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    /// TLS to the broker.
    pub tls: TlsConfig,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            host: "localhost".into(),
            port: 1883,
            hosts: Vec::new(),
            protocol: "3.1.1".into(),
            will_delay: Duration::from_secs(5),
            client_id: String::new(),
            keepalive: Duration::from_secs(30),
            username: String::new(),
            password: String::new(),
            password_file: PathBuf::new(),
            password_credential: "mqtt_password".into(),
            base_topic: "host2mqtt".into(),
            reconnect_min: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
            tls: TlsConfig::default(),
        }
    }
}

impl MqttConfig {
    /// The brokers to try, from `hosts` or else `host`/`port`; validates them.
    pub fn brokers(&self) -> Result<Vec<(String, u16)>, ConfigError> {
        let err = |k: &str, m: String| ConfigError::Key {
            key: k.into(),
            message: m,
        };
        if self.hosts.is_empty() {
            if self.host.is_empty() {
                return Err(err("mqtt.host", "expected a host name or address".into()));
            }
            return Ok(vec![(self.host.clone(), self.port)]);
        }
        let mut out = Vec::with_capacity(self.hosts.len());
        for entry in &self.hosts {
            let bad = || {
                err(
                    "mqtt.hosts",
                    format!("expected \"host\" or \"host:port\" (port 1-65535), got {entry:?}"),
                )
            };
            // "[::1]:1883", "host:1883", "host", "::1" (no port).
            let (host, port) = match entry.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') || (h.starts_with('[') && h.ends_with(']')) => {
                    let port: u16 = p.parse().map_err(|_| bad())?;
                    (h.trim_start_matches('[').trim_end_matches(']'), port)
                }
                _ => (entry.as_str(), self.port),
            };
            if host.is_empty() || port == 0 || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(bad());
            }
            out.push((host.to_string(), port));
        }
        Ok(out)
    }

    /// The protocol version; validates `protocol` and `will_delay`.
    pub fn session_protocol(&self) -> Result<crate::session::Protocol, ConfigError> {
        if self.will_delay > Duration::from_secs(u64::from(u32::MAX)) {
            return Err(ConfigError::Key {
                key: "mqtt.will_delay".into(),
                message: "expected at most 4294967295s".into(),
            });
        }
        match self.protocol.as_str() {
            "3.1.1" | "4" => Ok(crate::session::Protocol::V311),
            "5" | "5.0" => Ok(crate::session::Protocol::V5),
            _ => Err(ConfigError::Key {
                key: "mqtt.protocol".into(),
                message: "expected \"3.1.1\" or \"5\"".into(),
            }),
        }
    }
}

/// TLS to the broker.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Use TLS.
    pub enabled: bool,
    /// CA certificate(s), PEM. Empty: the system's trusted roots.
    pub ca_file: PathBuf,
    /// Client certificate, PEM (with `key_file`), for brokers that require one.
    pub cert_file: PathBuf,
    /// Client private key, PEM.
    pub key_file: PathBuf,
}

/// Home Assistant's side of discovery.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HomeAssistantConfig {
    /// HA's discovery prefix.
    pub discovery_prefix: String,
    /// HA's birth/last-will topic; on `online` we announce again.
    /// Empty: `<discovery_prefix>/status`.
    pub status_topic: String,
    /// After this long without a state, HA shows entities unavailable.
    /// Empty / zero: 3 × interval.
    #[serde(with = "humantime_serde")]
    pub expire_after: Option<Duration>,
}

impl Default for HomeAssistantConfig {
    fn default() -> Self {
        HomeAssistantConfig {
            discovery_prefix: "homeassistant".into(),
            status_topic: String::new(),
            expire_after: None,
        }
    }
}

/// Where the host's /proc, /sys and / are.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostConfig {
    /// The host's /proc (in a container: e.g. /host/proc).
    pub proc: PathBuf,
    /// The host's /sys.
    pub sys: PathBuf,
    /// The host's root filesystem.
    pub root: PathBuf,
}

impl Default for HostConfig {
    fn default() -> Self {
        let d = HostPaths::default();
        HostConfig {
            proc: d.proc,
            sys: d.sys,
            root: d.root,
        }
    }
}

/// Each collector's switch and filters.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct CollectorsConfig {
    pub cpu: CpuConfig,
    pub load: Switch,
    pub memory: Switch,
    pub pressure: Switch,
    pub disk: DiskConfig,
    pub diskio: DiskIoConfig,
    pub network: NetworkConfig,
    pub system: Switch,
}

/// A collector with nothing to set but on/off.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Switch {
    /// Collect this.
    pub enabled: bool,
}

impl Default for Switch {
    fn default() -> Self {
        Switch { enabled: true }
    }
}

/// CPU usage.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CpuConfig {
    /// Collect this.
    pub enabled: bool,
    /// Also one usage entity per core.
    pub per_core: bool,
}

impl Default for CpuConfig {
    fn default() -> Self {
        CpuConfig {
            enabled: true,
            per_core: false,
        }
    }
}

/// Filesystems, per mount point.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiskConfig {
    /// Collect this.
    pub enabled: bool,
    /// Only mount points matching one of these globs (empty: all).
    pub mount_points_include: Vec<String>,
    /// Mount points matching one of these globs are left out.
    pub mount_points_exclude: Vec<String>,
    /// Only these filesystem types (empty: all).
    pub fs_types_include: Vec<String>,
    /// These filesystem types are left out.
    pub fs_types_exclude: Vec<String>,
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            enabled: true,
            mount_points_include: vec![],
            mount_points_exclude: [
                "/proc",
                "/proc/**",
                "/sys",
                "/sys/**",
                "/dev",
                "/dev/**",
                "/run/credentials/**",
                "/run/user/**",
                "/var/lib/containers/storage/**",
                "/var/lib/docker/**",
                "/var/lib/kubelet/**",
                "/snap/**",
                "/boot/efi",
            ]
            .map(String::from)
            .to_vec(),
            fs_types_include: vec![],
            fs_types_exclude: [
                "autofs",
                "binfmt_misc",
                "bpf",
                "cgroup",
                "cgroup2",
                "configfs",
                "debugfs",
                "devpts",
                "devtmpfs",
                "efivarfs",
                "fuse.lxcfs",
                "fuse.portal",
                "fusectl",
                "hugetlbfs",
                "iso9660",
                "mqueue",
                "nsfs",
                "overlay",
                "proc",
                "pstore",
                "ramfs",
                "rpc_pipefs",
                "securityfs",
                "selinuxfs",
                "squashfs",
                "erofs",
                "sysfs",
                "tmpfs",
                "tracefs",
                "nfsd",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// Block device throughput.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiskIoConfig {
    /// Collect this.
    pub enabled: bool,
    /// Only devices matching one of these globs (empty: every physical device).
    pub devices_include: Vec<String>,
    /// Devices matching one of these globs are left out.
    pub devices_exclude: Vec<String>,
}

impl Default for DiskIoConfig {
    fn default() -> Self {
        DiskIoConfig {
            enabled: true,
            devices_include: vec![],
            devices_exclude: vec![],
        }
    }
}

/// Network throughput per interface.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Collect this.
    pub enabled: bool,
    /// Only interfaces matching one of these globs (empty: all).
    pub interfaces_include: Vec<String>,
    /// Interfaces matching one of these globs are left out.
    pub interfaces_exclude: Vec<String>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            enabled: true,
            interfaces_include: vec![],
            interfaces_exclude: [
                "lo", "veth*", "podman*", "cni*", "docker*", "br-*", "virbr*", "vnet*", "flannel*", "cali*",
                "kube-*", "ifb*", "dummy*",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

impl Config {
    /// Loads the file (if given; it must then exist) and the environment,
    /// and validates the result. `env` is passed in so tests do not touch
    /// the process environment.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
        }
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .collect();
        let mut environment = config::Environment::with_prefix(ENV_PREFIX)
            .prefix_separator("__")
            .separator("__")
            .list_separator(",")
            .try_parsing(true)
            .source(Some(env));
        for key in LIST_KEYS {
            environment = environment.with_list_parse_key(key);
        }
        let built = builder
            .add_source(environment)
            .build()
            .map_err(|e| describe(e, file))?;
        let cfg: Config = built.try_deserialize().map_err(|e| describe(e, file))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let key = |k: &str, m: &str| ConfigError::Key {
            key: k.into(),
            message: m.into(),
        };
        if self.interval < Duration::from_secs(1) {
            return Err(key(
                "interval",
                "expected a duration of at least 1s, such as \"30s\"",
            ));
        }
        if !self.node_id.is_empty() && !is_topic_safe(&self.node_id) {
            return Err(key("node_id", "expected only letters, digits, '_' and '-'"));
        }
        self.mqtt.brokers()?;
        self.mqtt.session_protocol()?;
        if self.mqtt.keepalive < Duration::from_secs(5) {
            return Err(key("mqtt.keepalive", "expected a duration of at least 5s"));
        }
        if self.mqtt.reconnect_min.is_zero() || self.mqtt.reconnect_max < self.mqtt.reconnect_min {
            return Err(key(
                "mqtt.reconnect_max",
                "expected reconnect_min > 0 and reconnect_max >= reconnect_min",
            ));
        }
        for (k, v) in [
            ("mqtt.base_topic", &self.mqtt.base_topic),
            (
                "homeassistant.discovery_prefix",
                &self.homeassistant.discovery_prefix,
            ),
        ] {
            if v.is_empty() || v.contains(['+', '#']) || v.starts_with('/') || v.ends_with('/') {
                return Err(key(
                    k,
                    "expected a topic without '+', '#' or a leading/trailing '/'",
                ));
            }
        }
        if self.homeassistant.status_topic.contains(['+', '#']) {
            return Err(key(
                "homeassistant.status_topic",
                "expected a topic without '+' or '#'",
            ));
        }
        if self.mqtt.tls.cert_file.as_os_str().is_empty() != self.mqtt.tls.key_file.as_os_str().is_empty() {
            return Err(key(
                "mqtt.tls.key_file",
                "expected cert_file and key_file to be set together",
            ));
        }
        if !self.mqtt.password.is_empty() && !self.mqtt.password_file.as_os_str().is_empty() {
            return Err(key(
                "mqtt.password_file",
                "expected either password or password_file, not both",
            ));
        }
        for (k, globs) in [
            (
                "collectors.disk.mount_points_include",
                &self.collectors.disk.mount_points_include,
            ),
            (
                "collectors.disk.mount_points_exclude",
                &self.collectors.disk.mount_points_exclude,
            ),
            (
                "collectors.disk.fs_types_include",
                &self.collectors.disk.fs_types_include,
            ),
            (
                "collectors.disk.fs_types_exclude",
                &self.collectors.disk.fs_types_exclude,
            ),
            (
                "collectors.diskio.devices_include",
                &self.collectors.diskio.devices_include,
            ),
            (
                "collectors.diskio.devices_exclude",
                &self.collectors.diskio.devices_exclude,
            ),
            (
                "collectors.network.interfaces_include",
                &self.collectors.network.interfaces_include,
            ),
            (
                "collectors.network.interfaces_exclude",
                &self.collectors.network.interfaces_exclude,
            ),
        ] {
            for g in globs {
                glob::Pattern::new(g).map_err(|e| key(k, &format!("expected glob patterns; {g:?}: {e}")))?;
            }
        }
        crate::container::validate(&self.containers)?;
        self.systemd.validate()?;
        Ok(())
    }

    /// The host roots as the collectors use them.
    pub fn host_paths(&self) -> HostPaths {
        HostPaths {
            proc: self.host.proc.clone(),
            sys: self.host.sys.clone(),
            root: self.host.root.clone(),
        }
    }

    /// `expire_after`, defaulting to 3 × interval.
    pub fn expire_after(&self) -> Duration {
        match self.homeassistant.expire_after {
            Some(d) if !d.is_zero() => d,
            _ => self.interval * 3,
        }
    }

    /// HA's status topic, defaulting to `<discovery_prefix>/status`.
    pub fn status_topic(&self) -> String {
        if self.homeassistant.status_topic.is_empty() {
            format!("{}/status", self.homeassistant.discovery_prefix)
        } else {
            self.homeassistant.status_topic.clone()
        }
    }
}

/// `[a-zA-Z0-9_-]+`: safe as one topic level and inside a unique_id.
pub fn is_topic_safe(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Turns a `config` crate error into ours, keeping the key it names.
fn describe(e: config::ConfigError, file: Option<&Path>) -> ConfigError {
    let where_ = file.map(|p| format!(" (in {})", p.display())).unwrap_or_default();
    match e {
        config::ConfigError::Type {
            key: Some(key),
            unexpected,
            expected,
            ..
        } => ConfigError::Key {
            key,
            message: format!("expected {expected}, found {unexpected}{where_}"),
        },
        config::ConfigError::At {
            key: Some(key),
            error,
            ..
        } => {
            let message = strip_key_suffix(&error.to_string());
            // serde names an unknown field apart from its table; join them
            // so the user sees the key as they wrote it (`mqtt.hots`).
            let key = match unknown_field(&message) {
                Some(field) => format!("{key}.{field}"),
                None => key,
            };
            ConfigError::Key {
                key,
                message: format!("{message}{where_}"),
            }
        }
        other => {
            let message = other.to_string();
            match unknown_field(&message) {
                Some(field) => ConfigError::Key {
                    key: field.to_string(),
                    message: format!("{message}{where_}"),
                },
                None => ConfigError::Invalid(format!("{message}{where_}")),
            }
        }
    }
}

/// The field serde reports as unknown ("unknown field `hots`, expected …").
fn unknown_field(message: &str) -> Option<&str> {
    message.strip_prefix("unknown field `")?.split('`').next()
}

fn strip_key_suffix(s: &str) -> String {
    s.split(" for key ").next().unwrap_or(s).to_string()
}

/// Test helpers for modules whose config sections live elsewhere.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Config, ConfigError};

    /// Loads `toml` as a config file, with `env` as the environment.
    pub(crate) fn load_str(toml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml).expect("write");
        Config::load(
            Some(&path),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::testing::load_str;

    #[test]
    fn no_file_and_no_env_gives_the_defaults() {
        let cfg = Config::load(None, Vec::new()).expect("defaults load");
        assert_eq!(cfg.interval, Duration::from_secs(30));
        assert_eq!(cfg.mqtt.host, "localhost");
        assert_eq!(cfg.expire_after(), Duration::from_secs(90));
        assert_eq!(cfg.status_topic(), "homeassistant/status");
    }

    #[test]
    fn example_config_documents_exactly_the_defaults() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/host2mqtt.toml"));
        let example = Config::load(Some(path), Vec::new()).expect("example config loads");
        assert_eq!(format!("{example:?}"), format!("{:?}", Config::default()));
    }

    #[test]
    fn hosts_list_gives_brokers_with_the_default_port() {
        let cfg = load_str(
            "[mqtt]\nport = 1884\nhosts = [\"n1:1883\", \"n2\", \"[::1]:1885\", \"::1\"]\n",
            &[],
        )
        .expect("loads");
        let brokers = cfg.mqtt.brokers().expect("brokers");
        let want = [("n1", 1883), ("n2", 1884), ("::1", 1885), ("::1", 1884)];
        assert_eq!(
            brokers,
            want.map(|(h, p)| (h.to_string(), p)).to_vec(),
            "{brokers:?}"
        );
        let env = load_str("", &[("HOST2MQTT__MQTT__HOSTS", "a:1,b:2")]).expect("env list");
        assert_eq!(env.mqtt.brokers().expect("brokers").len(), 2);
        let single = load_str("[mqtt]\nhost = \"b\"\nport = 2\n", &[]).expect("loads");
        assert_eq!(single.mqtt.brokers().expect("one"), vec![("b".to_string(), 2)]);
    }

    #[test]
    fn bad_hosts_and_protocols_name_their_key() {
        for (toml, key) in [
            ("[mqtt]\nhosts = [\"n1:0\"]\n", "mqtt.hosts"),
            ("[mqtt]\nhosts = [\"n1:99999\"]\n", "mqtt.hosts"),
            ("[mqtt]\nhosts = [\":1883\"]\n", "mqtt.hosts"),
            ("[mqtt]\nhosts = [\"a b:1883\"]\n", "mqtt.hosts"),
            ("[mqtt]\nprotocol = \"3\"\n", "mqtt.protocol"),
            ("[mqtt]\nwill_delay = \"200y\"\n", "mqtt.will_delay"),
        ] {
            let err = load_str(toml, &[]).expect_err(toml).to_string();
            assert!(err.contains(&format!("`{key}`")), "{toml}: {err}");
        }
        let v5 = load_str("[mqtt]\nprotocol = \"5\"\n", &[]).expect("v5");
        assert_eq!(
            v5.mqtt.session_protocol().expect("v5"),
            crate::session::Protocol::V5
        );
    }

    #[test]
    fn unknown_key_is_named_with_what_was_expected() {
        let err = load_str("[mqtt]\nhots = \"x\"\n", &[])
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("`mqtt.hots`"), "{err}");
        assert!(err.contains("expected one of"), "{err}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err = load_str("[mqtt]\nport = \"many\"\n", &[])
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("mqtt.port"), "{err}");
    }

    #[test]
    fn bad_duration_names_the_key() {
        let err = load_str("interval = \"soon\"\n", &[])
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("interval"), "{err}");
    }

    #[test]
    fn unreadable_file_is_named() {
        let err = Config::load(Some(Path::new("/nonexistent/h2m.toml")), Vec::new())
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("/nonexistent/h2m.toml"), "{err}");
    }

    #[test]
    fn environment_overrides_the_file_including_lists() {
        let cfg = load_str(
            "[mqtt]\nhost = \"file\"\n",
            &[
                ("HOST2MQTT__MQTT__HOST", "env"),
                ("HOST2MQTT__MQTT__PORT", "8883"),
                ("HOST2MQTT__INTERVAL", "10s"),
                ("HOST2MQTT__COLLECTORS__NETWORK__INTERFACES_EXCLUDE", "lo,wg*"),
                ("UNRELATED", "x"),
            ],
        )
        .expect("loads");
        assert_eq!(cfg.mqtt.host, "env");
        assert_eq!(cfg.mqtt.port, 8883);
        assert_eq!(cfg.interval, Duration::from_secs(10));
        assert_eq!(cfg.collectors.network.interfaces_exclude, vec!["lo", "wg*"]);
    }

    #[test]
    fn unknown_environment_key_is_named() {
        let err = load_str("", &[("HOST2MQTT__MQTT__HOTS", "x")])
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("`mqtt.hots`"), "{err}");
    }

    #[test]
    fn node_id_with_topic_characters_is_refused() {
        let err = load_str("node_id = \"a/b+\"\n", &[])
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("node_id"), "{err}");
    }

    #[test]
    fn invalid_glob_is_named() {
        let err = load_str("[collectors.disk]\nmount_points_exclude = [\"[\"]\n", &[])
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("collectors.disk.mount_points_exclude"), "{err}");
    }
}
