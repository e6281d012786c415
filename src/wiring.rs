//! The wiring: every config section, and what each one builds. The one
//! place (with `main`) that sees the root [`Config`]; used alike by `run`,
//! `check` and `purge`, so they accept and refuse the same configs.
//!
//! # Adding a collector
//!
//! 1. Write `src/collector/<name>.rs`: the collector (`impl Collector`),
//!    its parsers with fixture tests, and its config section
//!    (`<Name>Config`, `#[serde(default, deny_unknown_fields)]`, doc
//!    comments on every field) implementing
//!    [`CollectorSection`]: `validate`
//!    (optional) and `build(&self, cx) -> Option<Box<dyn Collector>>`.
//!    Declare it with `pub mod <name>;` in `src/collector/mod.rs`.
//! 2. Add one line to the `collectors!` list below. That line is the
//!    `[collectors.<name>]` table, its validation and its place in the
//!    cycle.
//! 3. Document its keys in `config/host2mqtt.toml`.
//!
//! A source (a task reaching a socket, a bus or a slow schedule) is its
//! own folder with a config section offering `validate(&self, key)` and
//! `build(&self, cx) -> Vec<Spawnable>`, one field in [`Config`] and one
//! line in [`build`].

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;

use crate::collector::{self, Collector, CollectorSection};
use crate::config::{is_topic_safe, HomeAssistantConfig, HostConfig, MqttConfig};
use crate::container::ContainersConfig;
use crate::context::Context;
use crate::discovery::{Device, Model, Topics, OFFLINE};
use crate::error::ConfigError;
use crate::host::{self, HostPaths};
use crate::session::SessionOptions;
use crate::source::Spawnable;
use crate::systemd::SystemdConfig;

/// Defines `[collectors]` from a list of `name: ConfigType` lines: the
/// table's struct, its validation and the collectors it builds, in order.
macro_rules! collectors {
    ($( $(#[$doc:meta])* $name:ident : $section:ty ),* $(,)?) => {
        /// Each collector's switch and filters (`[collectors.<name>]`).
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct CollectorsConfig {
            $( $(#[$doc])* pub $name: $section, )*
        }

        impl CollectorsConfig {
            /// Checks every collector's section; errors name full dotted
            /// keys under `key` (`collectors`).
            pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
                $( CollectorSection::validate(&self.$name, &format!("{key}.{}", stringify!($name)))?; )*
                Ok(())
            }

            /// Every collector switched on, in the order listed.
            pub fn build(&self, cx: &Context) -> Vec<Box<dyn Collector>> {
                let mut out: Vec<Box<dyn Collector>> = Vec::new();
                $( out.extend(CollectorSection::build(&self.$name, cx)); )*
                out
            }
        }
    };
}

collectors! {
    /// CPU usage (`per_core` adds one entity per core).
    cpu: collector::cpu::CpuConfig,
    /// Load averages.
    load: collector::load::LoadConfig,
    /// Memory and swap.
    memory: collector::memory::MemoryConfig,
    /// Pressure stall information.
    pressure: collector::pressure::PressureConfig,
    /// Filesystems, per mount point.
    disk: collector::disk::DiskConfig,
    /// Block device throughput.
    diskio: collector::diskio::DiskIoConfig,
    /// Network throughput per interface.
    network: collector::network::NetworkConfig,
    /// Temperatures and fans (hwmon, thermal zones).
    sensors: collector::sensors::SensorsConfig,
    /// Raspberry Pi under-voltage and throttling.
    rpi: collector::rpi::RpiConfig,
    /// AMD and Intel GPUs from sysfs.
    gpu: collector::gpu::GpuConfig,
    /// The host's OOM kill count.
    oom: collector::oom::OomConfig,
    /// Uptime, boot time, processes.
    system: collector::system::SystemConfig,
}

/// The shortest interval: a cycle reads dozens of files.
const INTERVAL_MIN: Duration = Duration::from_secs(1);

/// The longest interval: beyond a day HA's `expire_after` and every rate
/// stop meaning anything, and a typo ("100y") is likelier than intent.
const INTERVAL_MAX: Duration = Duration::from_secs(86400);

/// The longest node id: Home Assistant's object ids are kept short, and it
/// is repeated in every topic and unique_id.
pub const NODE_ID_MAX_CHARS: usize = 64;

/// The longest device name Home Assistant stores.
pub const DEVICE_NAME_MAX_CHARS: usize = 255;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// How often to collect and publish, from 1s to 1d.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Stable id of this host in topics and unique_ids, `[a-zA-Z0-9_-]`,
    /// at most 64 characters. Empty: the host name, sanitised.
    pub node_id: String,
    /// Device name shown in Home Assistant, at most 255 characters.
    /// Empty: the host name.
    pub device_name: String,
    /// The area Home Assistant puts the device in when it first sees it
    /// (such as "Servers"); with one, the host shows on HA's auto-generated
    /// Overview. Empty: none (the device is then only under Settings →
    /// Devices). HA keeps the area the user picks later.
    pub area: String,
    /// The MQTT connection.
    pub mqtt: MqttConfig,
    /// Home Assistant's side of discovery.
    pub homeassistant: HomeAssistantConfig,
    /// Where the host's /proc, /sys and / are (for running in a container).
    pub host: HostConfig,
    /// Each collector's switch and filters.
    pub collectors: CollectorsConfig,
    /// Containers and pending image updates (see `crate::container`).
    pub containers: ContainersConfig,
    /// systemd's managers over D-Bus and "reboot required" (see `crate::systemd`).
    pub systemd: SystemdConfig,
    /// NVIDIA GPUs and disk health, from CLIs on their own schedule (see `crate::hardware`).
    pub hardware: crate::hardware::HardwareConfig,
    /// Pending OS updates (see `crate::osupdate`).
    pub os_updates: crate::osupdate::OsUpdatesConfig,
    /// The opt-in Prometheus endpoint (see `crate::prometheus`).
    pub prometheus: crate::prometheus::PrometheusConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            interval: Duration::from_secs(30),
            node_id: String::new(),
            device_name: String::new(),
            area: String::new(),
            mqtt: MqttConfig::default(),
            homeassistant: HomeAssistantConfig::default(),
            host: HostConfig::default(),
            collectors: CollectorsConfig::default(),
            containers: ContainersConfig::default(),
            systemd: SystemdConfig::default(),
            hardware: crate::hardware::HardwareConfig::default(),
            os_updates: crate::osupdate::OsUpdatesConfig::default(),
            prometheus: crate::prometheus::PrometheusConfig::default(),
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
        let cfg: Config = crate::config::load(file, env)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every section; errors name the full dotted key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.interval < INTERVAL_MIN || self.interval > INTERVAL_MAX {
            return Err(ConfigError::key(
                "interval",
                "expected a duration from 1s to 1d, such as \"30s\"",
            ));
        }
        if !self.node_id.is_empty()
            && (!is_topic_safe(&self.node_id) || self.node_id.len() > NODE_ID_MAX_CHARS)
        {
            return Err(ConfigError::key(
                "node_id",
                format!("expected only letters, digits, '_' and '-', at most {NODE_ID_MAX_CHARS} characters"),
            ));
        }
        if self.device_name.chars().count() > DEVICE_NAME_MAX_CHARS || self.device_name.contains('\0') {
            return Err(ConfigError::key(
                "device_name",
                format!("expected at most {DEVICE_NAME_MAX_CHARS} characters"),
            ));
        }
        self.mqtt.validate("mqtt")?;
        self.homeassistant.validate("homeassistant", self.interval)?;
        self.collectors.validate("collectors")?;
        self.containers.validate("containers")?;
        self.systemd.validate("systemd")?;
        self.hardware.validate("hardware")?;
        self.os_updates.validate("os_updates")?;
        self.prometheus.validate()?;
        Ok(())
    }

    /// The host roots as the collectors use them.
    pub fn host_paths(&self) -> HostPaths {
        self.host.paths()
    }

    /// Home Assistant's model of this host: its topics and device, reading
    /// the host's name and OS once.
    pub fn model(&self) -> Model {
        let paths = self.host_paths();
        let hostname = host::hostname(&paths);
        let node_id = node_id(&self.node_id, hostname.as_deref());
        let os = host::os_release(&paths);
        let device = Device {
            name: if self.device_name.is_empty() {
                hostname
                    .map(|h| h.chars().take(DEVICE_NAME_MAX_CHARS).collect())
                    .unwrap_or_else(|| node_id.clone())
            } else {
                self.device_name.clone()
            },
            manufacturer: os.as_ref().map(|o| o.name.clone()).unwrap_or_default(),
            model: os.as_ref().map(|o| o.pretty_name.clone()).unwrap_or_default(),
            sw_version: host::kernel_release(&paths).unwrap_or_default(),
            node_id: node_id.clone(),
            area: self.area.clone(),
        };
        let topics = Topics::new(
            &self.homeassistant.discovery_prefix,
            &self.mqtt.base_topic,
            &node_id,
            &self.homeassistant.status_topic(),
        );
        Model {
            topics,
            device,
            expire_after: self.homeassistant.expire_after(self.interval),
            enable_all: self.homeassistant.enable_all_entities,
        }
    }
}

/// The host's node id: configured, else the host name made topic-safe
/// (and no longer than [`NODE_ID_MAX_CHARS`]).
pub fn node_id(configured: &str, hostname: Option<&str>) -> String {
    if !configured.is_empty() {
        return configured.to_string();
    }
    let raw = hostname.unwrap_or("host");
    let id: String = raw
        .chars()
        .take(NODE_ID_MAX_CHARS)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if is_topic_safe(&id) {
        id
    } else {
        "host".into()
    }
}

/// Everything the agent runs with, built from a validated config.
pub struct Parts {
    /// Home Assistant's model of this host.
    pub model: Model,
    /// How often to collect and publish.
    pub interval: Duration,
    /// The collectors, in order.
    pub collectors: Vec<Box<dyn Collector>>,
    /// The sources, not yet spawned.
    pub sources: Vec<Spawnable>,
    /// Where the sources' wake-up calls arrive.
    pub pokes: mpsc::Receiver<()>,
    /// The MQTT session's options (password read, TLS files checked).
    pub session: SessionOptions,
}

/// Builds every part from `cfg`: the one path shared by `run` and `check`,
/// so both refuse the same configs (a missing password file, a garbage CA
/// file) with the same key.
pub fn build(cfg: &Config) -> Result<Parts, ConfigError> {
    cfg.validate()?;
    let (poke, pokes) = mpsc::channel(1);
    let cx = Context::new(cfg.interval, cfg.host_paths(), poke);
    let model = cfg.model();
    let topics = &model.topics;
    let mut session = cfg.mqtt.session_options(
        cfg.mqtt.client_id(&model.device.node_id),
        Some((topics.availability.clone(), OFFLINE.to_string())),
        vec![topics.ha_status.clone(), topics.command.clone()],
        cx.env,
    )?;
    // The state goes out every interval: when that is within a keepalive,
    // the publishes keep the broker's keepalive and the pings ride on them.
    session.pings_on_publish = cfg.interval <= cfg.mqtt.keepalive;
    check_tls(&session)?;
    let mut sources = Vec::new();
    sources.extend(cfg.containers.build(&cx));
    sources.extend(cfg.systemd.build(&cx));
    sources.extend(cfg.hardware.build(&cx));
    sources.extend(cfg.os_updates.build(&cx, &cfg.systemd.system.address));
    Ok(Parts {
        collectors: cfg.collectors.build(&cx),
        sources,
        pokes,
        session,
        interval: cfg.interval,
        model,
    })
}

/// Reads the TLS files as the session will, so a missing or garbage CA is
/// a config error before any work (in `check` too).
pub fn check_tls(opts: &SessionOptions) -> Result<(), ConfigError> {
    if opts.tls.is_none() {
        return Ok(());
    }
    crate::session::Session::new(opts.clone())
        .map(drop)
        .map_err(|e| ConfigError::key("mqtt.tls", e.to_string()))
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
    use super::testing::load_str;
    use super::*;
    use crate::collector::Tick;
    use crate::reading::{Kind, Reading};

    #[test]
    fn no_file_and_no_env_gives_the_defaults() {
        let cfg = Config::load(None, Vec::new()).expect("defaults load");
        assert_eq!(cfg.interval, Duration::from_secs(30));
        assert_eq!(cfg.mqtt.host, "localhost");
        assert_eq!(
            cfg.homeassistant.expire_after(cfg.interval),
            Duration::from_secs(90)
        );
        assert_eq!(cfg.homeassistant.status_topic(), "homeassistant/status");
    }

    #[test]
    fn example_config_documents_exactly_the_defaults() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/host2mqtt.toml"));
        let example = Config::load(Some(path), Vec::new()).expect("example config loads");
        assert_eq!(format!("{example:?}"), format!("{:?}", Config::default()));
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
    fn environment_strings_become_the_type_each_key_needs() {
        let cfg = load_str(
            "[mqtt]\nport = 1883\n",
            &[
                ("HOST2MQTT__MQTT__KEEPALIVE", "45s"),
                ("HOST2MQTT__MQTT__TLS__ENABLED", "true"),
                ("HOST2MQTT__MQTT__PASSWORD", "0123"),
                ("HOST2MQTT__MQTT__USERNAME", "u"),
                ("HOST2MQTT__NODE_ID", "42"),
                ("HOST2MQTT__HOMEASSISTANT__EXPIRE_AFTER", "2m"),
                ("HOST2MQTT__CONTAINERS__UPDATES__SOURCE", "file"),
                ("HOST2MQTT__CONTAINERS__UPDATES__FILE", "/run/h2m/updates.json"),
                ("HOST2MQTT__COLLECTORS__CPU__ENABLED", "false"),
                ("HOST2MQTT__COLLECTORS__DISK__FS_TYPES_EXCLUDE", ""),
            ],
        )
        .expect("loads");
        assert_eq!(cfg.mqtt.keepalive, Duration::from_secs(45));
        assert!(cfg.mqtt.tls.enabled);
        assert_eq!(
            cfg.mqtt.password, "0123",
            "a string key keeps the string as written"
        );
        assert_eq!(cfg.node_id, "42");
        assert_eq!(cfg.homeassistant.expire_after, Some(Duration::from_secs(120)));
        assert_eq!(cfg.containers.updates.source, crate::container::UpdatesFrom::File);
        assert!(!cfg.collectors.cpu.enabled);
        assert!(cfg.collectors.disk.fs_types_exclude.is_empty());
    }

    #[test]
    fn a_bad_environment_value_names_its_key() {
        for (name, value, key) in [
            ("HOST2MQTT__MQTT__PORT", "many", "mqtt.port"),
            ("HOST2MQTT__MQTT__PORT", "99999", "mqtt.port"),
            (
                "HOST2MQTT__COLLECTORS__CPU__ENABLED",
                "maybe",
                "collectors.cpu.enabled",
            ),
            ("HOST2MQTT__INTERVAL", "soon", "interval"),
            (
                "HOST2MQTT__CONTAINERS__UPDATES__SOURCE",
                "cron",
                "containers.updates.source",
            ),
            ("HOST2MQTT__MQTT__TLS__ENABLE", "true", "mqtt.tls.enable"),
            ("HOST2MQTT__MQTT____HOST", "x", "HOST2MQTT__MQTT____HOST"),
        ] {
            let err = load_str("", &[(name, value)]).expect_err(name).to_string();
            assert!(err.contains(&format!("`{key}`")), "{name}={value}: {err}");
        }
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

    #[test]
    fn node_id_comes_from_the_host_name_made_topic_safe() {
        assert_eq!(node_id("", Some("nuc.home.lan")), "nuc_home_lan");
        assert_eq!(node_id("", Some("pi-4")), "pi-4");
        assert_eq!(node_id("", Some("a+b#c/d")), "a_b_c_d");
        assert_eq!(node_id("", None), "host");
        assert_eq!(node_id("t", Some("ignored")), "t");
        assert_eq!(node_id("", Some(&"h".repeat(300))).len(), NODE_ID_MAX_CHARS);
    }

    #[test]
    fn build_makes_only_the_enabled_collectors_in_order() {
        let mut cfg = Config::default();
        let names = |cfg: &Config| -> Vec<&'static str> {
            build(cfg)
                .expect("builds")
                .collectors
                .iter()
                .map(|c| c.name())
                .collect()
        };
        assert_eq!(
            names(&cfg),
            [
                "cpu", "load", "memory", "pressure", "disk", "diskio", "network", "sensors", "rpi", "gpu",
                "oom", "system"
            ]
        );
        cfg.collectors.cpu.enabled = false;
        cfg.collectors.disk.enabled = false;
        cfg.collectors.system.enabled = false;
        cfg.collectors.sensors.enabled = false;
        cfg.collectors.rpi.enabled = false;
        cfg.collectors.gpu.enabled = false;
        cfg.collectors.oom.enabled = false;
        assert_eq!(names(&cfg), ["load", "memory", "pressure", "diskio", "network"]);
    }

    /// A collector made the way every collector is: a file with its
    /// collector and config section, then one line in a `collectors!` list.
    mod dummy {
        use super::*;

        /// `[collectors.dummy]`.
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct DummyConfig {
            /// Collect this.
            pub enabled: bool,
            /// What to report.
            pub answer: u64,
        }

        impl CollectorSection for DummyConfig {
            fn validate(&self, key: &str) -> Result<(), ConfigError> {
                if self.answer > 100 {
                    return Err(ConfigError::key(format!("{key}.answer"), "expected at most 100"));
                }
                Ok(())
            }

            fn build(&self, _cx: &Context) -> Option<Box<dyn Collector>> {
                self.enabled
                    .then(|| Box::new(Dummy(self.answer)) as Box<dyn Collector>)
            }
        }

        struct Dummy(u64);

        impl Collector for Dummy {
            fn name(&self) -> &'static str {
                "dummy"
            }
            fn collect(
                &mut self,
                _tick: &Tick,
                out: &mut Vec<Reading>,
            ) -> Result<(), collector::CollectError> {
                out.push(Reading::new("dummy_answer", "Answer", Kind::Count, self.0));
                Ok(())
            }
        }

        collectors! {
            /// CPU usage.
            cpu: collector::cpu::CpuConfig,
            /// The new one: this line is all the wiring it needs.
            dummy: DummyConfig,
        }
    }

    #[test]
    fn a_new_collector_is_its_section_plus_one_line_in_the_list() {
        let c: dummy::CollectorsConfig =
            toml::from_str("[cpu]\nenabled = false\n[dummy]\nenabled = true\nanswer = 42\n").expect("parses");
        c.validate("collectors").expect("valid");
        let (poke, _pokes) = mpsc::channel(1);
        let cx = Context::new(Duration::from_secs(30), HostPaths::default(), poke);
        let mut built = c.build(&cx);
        assert_eq!(built.iter().map(|c| c.name()).collect::<Vec<_>>(), ["dummy"]);
        let mut out = Vec::new();
        built[0].collect(&Tick::now(), &mut out).expect("collects");
        assert_eq!(out[0].key, "dummy_answer");

        let bad: dummy::CollectorsConfig = toml::from_str("[dummy]\nanswer = 101\n").expect("parses");
        let err = bad.validate("collectors").expect_err("refused").to_string();
        assert!(err.contains("`collectors.dummy.answer`"), "{err}");
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
}
