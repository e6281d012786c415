//! Configuration loading and the sections that belong to no collector or
//! source: the MQTT connection, Home Assistant's side, where the host is.
//!
//! The file is TOML, read strictly (a wrong type is an error naming the
//! key); `HOST2MQTT__SECTION__KEY` environment variables override it, and
//! only there are strings converted ("8883" for a port, "a,b" for a
//! list). Each section validates itself and builds its own part (see
//! [`crate::context`]); the root, listing every section, is
//! [`crate::wiring::Config`]. The doc comments on the fields are the user
//! documentation; `config/host2mqtt.toml` repeats every key with its
//! default.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{
    DeserializeOwned, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde::Deserialize;

pub use crate::error::ConfigError;
use crate::host::HostPaths;
use crate::session::{Backoff, SessionOptions, TlsFiles};

/// Environment prefix: `HOST2MQTT__MQTT__HOST=broker` sets `mqtt.host`.
pub const ENV_PREFIX: &str = "HOST2MQTT";

/// MQTT's limit for a topic or a client id: a two-byte length.
pub const MQTT_STRING_MAX_BYTES: usize = 65535;

/// The MQTT connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker host name or address.
    pub host: String,
    /// Broker port, 1 to 65535 (1883; 8883 is usual for TLS).
    pub port: u16,
    /// Several brokers ("host:port" or "host", port then `port`), tried in
    /// turn from a random one. Empty: `host` and `port`.
    #[serde(deserialize_with = "crate::context::comma_list")]
    pub hosts: Vec<String>,
    /// MQTT protocol version: "3.1.1" (default) or "5".
    pub protocol: String,
    /// MQTT 5 only: the broker publishes the will this long after losing
    /// us, so a quick reconnect shows no `offline`. "0s": at once.
    #[serde(with = "humantime_serde")]
    pub will_delay: Duration,
    /// Client id, no NUL, at most 65535 bytes. Empty: `host2mqtt-<node_id>`,
    /// stable per host.
    pub client_id: String,
    /// Keepalive: how soon a dead connection is noticed (and the will
    /// fires), from 5s to 65535s.
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
    /// After this long without a state, HA shows entities unavailable;
    /// longer than the interval. Empty / zero: 3 × interval.
    #[serde(with = "humantime_serde")]
    pub expire_after: Option<Duration>,
    /// Enable every entity when HA first sees it, not only the headline
    /// ones (CPU, load, memory, disk, network, temperature, last seen,
    /// updates, failed units, and what the config names).
    pub enable_all_entities: bool,
}

impl Default for HomeAssistantConfig {
    fn default() -> Self {
        HomeAssistantConfig {
            discovery_prefix: "homeassistant".into(),
            status_topic: String::new(),
            expire_after: None,
            enable_all_entities: false,
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

impl MqttConfig {
    /// Checks the section; errors name full dotted keys under `key` (`mqtt`).
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let k = |field: &str| format!("{key}.{field}");
        if self.host.is_empty() {
            return Err(ConfigError::key(k("host"), "expected a host name or address"));
        }
        if self.port == 0 {
            return Err(ConfigError::key(
                k("port"),
                "expected a port from 1 to 65535, such as 1883",
            ));
        }
        if self.keepalive < Duration::from_secs(5) || self.keepalive > Duration::from_secs(65535) {
            // MQTT carries the keepalive in two bytes: above that it would
            // wrap (65536s reaches the broker as 0: never detected dead).
            return Err(ConfigError::key(
                k("keepalive"),
                "expected a duration from 5s to 65535s (about 18h), such as \"30s\"",
            ));
        }
        self.brokers()?;
        self.session_protocol()?;
        if self.client_id.contains('\0') || self.client_id.len() > MQTT_STRING_MAX_BYTES {
            return Err(ConfigError::key(
                k("client_id"),
                "expected at most 65535 bytes and no NUL character",
            ));
        }
        if self.reconnect_min.is_zero() || self.reconnect_max < self.reconnect_min {
            return Err(ConfigError::key(
                k("reconnect_max"),
                "expected reconnect_min > 0 and reconnect_max >= reconnect_min",
            ));
        }
        check_topic(&k("base_topic"), &self.base_topic)?;
        if self.tls.cert_file.as_os_str().is_empty() != self.tls.key_file.as_os_str().is_empty() {
            return Err(ConfigError::key(
                k("tls.key_file"),
                "expected cert_file and key_file to be set together",
            ));
        }
        if !self.password.is_empty() && !self.password_file.as_os_str().is_empty() {
            return Err(ConfigError::key(
                k("password_file"),
                "expected either password or password_file, not both",
            ));
        }
        Ok(())
    }

    /// The client id: configured, else `host2mqtt-<node_id>`.
    pub fn client_id(&self, node_id: &str) -> String {
        if self.client_id.is_empty() {
            format!("host2mqtt-{node_id}")
        } else {
            self.client_id.clone()
        }
    }

    /// The password: inline, from `password_file`, or from the systemd
    /// credential in `$CREDENTIALS_DIRECTORY` (looked up through `env`);
    /// never logged.
    fn password(&self, env: fn(&str) -> Option<String>) -> Result<Option<String>, ConfigError> {
        if !self.password.is_empty() {
            return Ok(Some(self.password.clone()));
        }
        let from_file = |key: &str, path: &Path| {
            std::fs::read_to_string(path)
                .map(|s| Some(s.trim_end_matches(['\n', '\r']).to_string()))
                .map_err(|e| ConfigError::key(key, format!("cannot read {}: {e}", path.display())))
        };
        if !self.password_file.as_os_str().is_empty() {
            return from_file("mqtt.password_file", &self.password_file);
        }
        if let Some(dir) = env("CREDENTIALS_DIRECTORY") {
            let path = PathBuf::from(dir).join(&self.password_credential);
            if path.exists() {
                return from_file("mqtt.password_credential", &path);
            }
        }
        Ok(None)
    }

    /// Builds what the session needs: reads the password (a missing file
    /// is an error naming the key) and applies the credential rules. The
    /// same for `check`, `run` and `purge`.
    pub fn session_options(
        &self,
        client_id: String,
        will: Option<(String, String)>,
        subscriptions: Vec<String>,
        env: fn(&str) -> Option<String>,
    ) -> Result<SessionOptions, ConfigError> {
        let credentials = match (self.username.is_empty(), self.password(env)?) {
            (true, None) => None,
            (true, Some(_)) => {
                return Err(ConfigError::key(
                    "mqtt.username",
                    "expected a user name when a password is set",
                ))
            }
            (false, p) => Some((self.username.clone(), p.unwrap_or_default())),
        };
        let set = |p: &PathBuf| (!p.as_os_str().is_empty()).then(|| p.clone());
        let tls = self.tls.enabled.then(|| TlsFiles {
            ca_file: set(&self.tls.ca_file),
            client_auth: set(&self.tls.cert_file).zip(set(&self.tls.key_file)),
        });
        Ok(SessionOptions {
            brokers: self.brokers()?,
            protocol: self.session_protocol()?,
            will_delay: self.will_delay,
            client_id,
            keepalive: self.keepalive,
            pings_on_publish: false,
            credentials,
            tls,
            will,
            subscriptions,
            message_limit: crate::session::MESSAGE_LIMIT_BYTES,
            backoff: Backoff {
                min: self.reconnect_min,
                max: self.reconnect_max,
            },
        })
    }
}

impl HomeAssistantConfig {
    /// Checks the section; errors name full dotted keys under `key`.
    pub fn validate(&self, key: &str, interval: Duration) -> Result<(), ConfigError> {
        check_topic(&format!("{key}.discovery_prefix"), &self.discovery_prefix)?;
        if self.status_topic.contains(['+', '#']) || self.status_topic.len() > MQTT_STRING_MAX_BYTES {
            return Err(ConfigError::key(
                format!("{key}.status_topic"),
                "expected a topic without '+' or '#', at most 65535 bytes",
            ));
        }
        if let Some(d) = self.expire_after.filter(|d| !d.is_zero()) {
            if d <= interval {
                return Err(ConfigError::key(
                    format!("{key}.expire_after"),
                    format!(
                        "expected a duration longer than interval ({}): every entity would expire between two states",
                        humantime::format_duration(interval)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// `expire_after`, defaulting to 3 × interval.
    pub fn expire_after(&self, interval: Duration) -> Duration {
        match self.expire_after {
            Some(d) if !d.is_zero() => d,
            _ => interval * 3,
        }
    }

    /// HA's status topic, defaulting to `<discovery_prefix>/status`.
    pub fn status_topic(&self) -> String {
        if self.status_topic.is_empty() {
            format!("{}/status", self.discovery_prefix)
        } else {
            self.status_topic.clone()
        }
    }
}

impl HostConfig {
    /// The host roots as the collectors use them.
    pub fn paths(&self) -> HostPaths {
        HostPaths {
            proc: self.proc.clone(),
            sys: self.sys.clone(),
            root: self.root.clone(),
        }
    }
}

/// A topic prefix: not empty, no wildcard, no leading or trailing '/',
/// within MQTT's length.
fn check_topic(key: &str, v: &str) -> Result<(), ConfigError> {
    if v.is_empty()
        || v.contains(['+', '#', '\0'])
        || v.starts_with('/')
        || v.ends_with('/')
        || v.len() > 1024
    {
        return Err(ConfigError::key(
            key,
            "expected a topic without '+', '#' or a leading/trailing '/', at most 1024 bytes",
        ));
    }
    Ok(())
}

/// `[a-zA-Z0-9_-]+`: safe as one topic level and inside a unique_id.
pub fn is_topic_safe(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Loads the file (if given; it must then exist) and the environment into
/// `T`. The file is read strictly, so a wrong type in it is an error
/// naming the key; values from the environment are strings converted to
/// the key's type. `env` is passed in so tests do not touch the process
/// environment. Validation is the caller's.
///
/// Both go through one table and one deserializer ([`Lenient`]): a second
/// (strict TOML straight into `T`) would repeat every section's
/// deserialization code in the binary.
pub fn load<T: DeserializeOwned>(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let mut table = toml::Table::new();
    let mut where_ = String::new();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        table = toml::from_str(&text).map_err(|e| describe_toml(&e, &text, path))?;
        where_ = format!(" (in {})", path.display());
    }
    let mut env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
        .collect();
    env.sort();
    let mut from_env = HashSet::new();
    for (name, value) in env {
        from_env.insert(merge_env(&mut table, &name, value)?);
    }
    T::deserialize(Lenient {
        value: toml::Value::Table(table),
        key: String::new(),
        from_env: &from_env,
    })
    .map_err(|e| {
        // An error about a key set in the environment is not "in" the file.
        let where_ = match &e.key {
            Some(k) if from_env.contains(k) => "",
            _ => where_.as_str(),
        };
        match e.key {
            Some(key) => ConfigError::Key {
                key,
                message: format!("{}{where_}", e.message),
            },
            None => ConfigError::Invalid(format!("{}{where_}", e.message)),
        }
    })
}

/// Puts `HOST2MQTT__SECTION__KEY=value` into `table` at `section.key`
/// (lower case, as a string: [`Lenient`] converts it to the key's type)
/// and returns that dotted key.
fn merge_env(table: &mut toml::Table, name: &str, value: String) -> Result<String, ConfigError> {
    let path: Vec<String> = name
        .get(ENV_PREFIX.len() + 2..)
        .unwrap_or_default()
        .split("__")
        .map(str::to_ascii_lowercase)
        .collect();
    let Some((leaf, parents)) = path.split_last().filter(|_| path.iter().all(|p| !p.is_empty())) else {
        return Err(ConfigError::key(
            name,
            format!("expected an environment variable named {ENV_PREFIX}__<SECTION>__<KEY>"),
        ));
    };
    let mut at = table;
    for part in parents {
        let slot = at
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !slot.is_table() {
            *slot = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = slot else {
            return Err(ConfigError::key(name, "expected a table"));
        };
        at = next;
    }
    at.insert(leaf.clone(), toml::Value::String(value));
    Ok(path.join("."))
}

/// An error from [`Lenient`]: serde's message and the dotted key it is about.
#[derive(Debug)]
struct LoadError {
    key: Option<String>,
    message: String,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for LoadError {}

impl serde::de::Error for LoadError {
    fn custom<M: std::fmt::Display>(msg: M) -> Self {
        LoadError {
            key: None,
            message: msg.to_string(),
        }
    }
}

/// The merged file and environment as serde input. A value from the
/// environment is a string that becomes the number, switch or float its
/// key asks for ("8883", "false"); a value from the file is taken as TOML
/// typed it ("1883" for a port is an error). Errors carry the dotted key.
struct Lenient<'a> {
    value: toml::Value,
    /// The dotted key of `value` (empty at the root).
    key: String,
    /// The dotted keys whose values came from the environment.
    from_env: &'a HashSet<String>,
}

impl Lenient<'_> {
    /// The string to convert, when the value is one from the environment.
    fn env_string(&self) -> Option<&str> {
        match &self.value {
            toml::Value::String(s) if self.from_env.contains(&self.key) => Some(s),
            _ => None,
        }
    }

    /// Names `self.key` in an error that does not name a deeper key yet.
    fn at(&self, e: LoadError) -> LoadError {
        name_key(e, &self.key)
    }
}

/// Names `key` in an error that does not name a deeper key yet.
fn name_key(mut e: LoadError, key: &str) -> LoadError {
    if e.key.is_none() && !key.is_empty() {
        e.key = Some(key.to_string());
    }
    e
}

/// `parent.name`, or `name` at the root.
fn child_key(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

/// Reads a string as a number of the kind `$visit` takes, or hands the
/// visitor the string (its error then says what it expected).
macro_rules! lenient_number {
    ($($method:ident => $ty:ty, $visit:ident;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LoadError> {
            let Some(s) = self.env_string() else {
                return self.deserialize_any(visitor);
            };
            let result = match s.trim().parse::<$ty>() {
                Ok(n) => visitor.$visit(n),
                Err(_) => visitor.visit_str(s),
            };
            result.map_err(|e| self.at(e))
        }
    )*};
}

impl<'de> Deserializer<'de> for Lenient<'_> {
    type Error = LoadError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LoadError> {
        let key = self.key.clone();
        let from_env = self.from_env;
        let result = match self.value {
            toml::Value::String(s) => visitor.visit_string(s),
            toml::Value::Integer(n) => visitor.visit_i64(n),
            toml::Value::Float(n) => visitor.visit_f64(n),
            toml::Value::Boolean(b) => visitor.visit_bool(b),
            toml::Value::Datetime(d) => visitor.visit_string(d.to_string()),
            toml::Value::Array(items) => visitor.visit_seq(LenientSeq {
                items: items.into_iter(),
                key: key.clone(),
                from_env,
            }),
            toml::Value::Table(t) => visitor.visit_map(LenientMap {
                entries: t.into_iter(),
                value: None,
                key: key.clone(),
                current: String::new(),
                from_env,
            }),
        };
        result.map_err(|e| name_key(e, &key))
    }

    lenient_number! {
        deserialize_i8 => i64, visit_i64;
        deserialize_i16 => i64, visit_i64;
        deserialize_i32 => i64, visit_i64;
        deserialize_i64 => i64, visit_i64;
        deserialize_u8 => u64, visit_u64;
        deserialize_u16 => u64, visit_u64;
        deserialize_u32 => u64, visit_u64;
        deserialize_u64 => u64, visit_u64;
        deserialize_f32 => f64, visit_f64;
        deserialize_f64 => f64, visit_f64;
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LoadError> {
        let Some(s) = self.env_string() else {
            return self.deserialize_any(visitor);
        };
        // What the `config` crate accepted before.
        let result = match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => visitor.visit_bool(true),
            "false" | "no" | "off" | "0" => visitor.visit_bool(false),
            _ => visitor.visit_str(s),
        };
        result.map_err(|e| self.at(e))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, LoadError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, LoadError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, LoadError> {
        // Every enum in the configuration is a choice of names (unit variants).
        let result = match self.value {
            toml::Value::String(ref s) => visitor.visit_enum(s.clone().into_deserializer()),
            _ => return self.deserialize_any(visitor),
        };
        result.map_err(|e| self.at(e))
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char str string bytes byte_buf unit unit_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

/// An array of [`Lenient`] items.
struct LenientSeq<'a> {
    items: std::vec::IntoIter<toml::Value>,
    key: String,
    from_env: &'a HashSet<String>,
}

impl<'de> SeqAccess<'de> for LenientSeq<'_> {
    type Error = LoadError;

    fn next_element_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<Option<S::Value>, LoadError> {
        self.items
            .next()
            .map(|value| {
                seed.deserialize(Lenient {
                    value,
                    key: self.key.clone(),
                    from_env: self.from_env,
                })
            })
            .transpose()
    }
}

/// A table of [`Lenient`] values; an unknown field is named with its table.
struct LenientMap<'a> {
    entries: toml::map::IntoIter<String, toml::Value>,
    value: Option<toml::Value>,
    /// The table's dotted key.
    key: String,
    /// The dotted key of the entry being read.
    current: String,
    from_env: &'a HashSet<String>,
}

impl<'de> MapAccess<'de> for LenientMap<'_> {
    type Error = LoadError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, LoadError> {
        let Some((name, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.current = child_key(&self.key, &name);
        self.value = Some(value);
        seed.deserialize(name.into_deserializer())
            .map(Some)
            .map_err(|e| name_key(e, &self.current))
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, LoadError> {
        let value = self.value.take().unwrap_or(toml::Value::Boolean(false));
        seed.deserialize(Lenient {
            value,
            key: self.current.clone(),
            from_env: self.from_env,
        })
    }
}

/// Turns a strict TOML error into ours, naming the dotted key written on
/// the line it points at (`[mqtt]` + `port = "1883"` → `mqtt.port`).
fn describe_toml(e: &toml::de::Error, text: &str, path: &Path) -> ConfigError {
    let message = format!("{} (in {})", e.message().trim(), path.display());
    let Some(at) = e.span().map(|s| s.start.min(text.len())) else {
        return ConfigError::File {
            path: path.to_path_buf(),
            message,
        };
    };
    let before = text.get(..at).unwrap_or_default();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text
        .get(line_start..)
        .and_then(|t| t.lines().next())
        .unwrap_or_default();
    let table = before
        .get(..line_start)
        .unwrap_or_default()
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('[') && !l.starts_with("[["))
        .map(|l| l.trim_matches(['[', ']']).trim().to_string());
    let field = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let key = match (table, field) {
        (Some(t), Some(f)) => format!("{t}.{f}"),
        (None, Some(f)) => f,
        (Some(t), None) => t,
        (None, None) => {
            return ConfigError::File {
                path: path.to_path_buf(),
                message,
            }
        }
    };
    ConfigError::Key { key, message }
}
