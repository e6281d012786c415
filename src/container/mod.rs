//! Containers: how many run, stop, pause or fail their health check, the
//! containers a user opts in, and which of them have a newer image waiting.
//!
//! Two sources, each its own task (see [`crate::source`]):
//!
//! * `containers` ([`containers`]) asks the container engine's REST API over
//!   its unix socket ([`engine`]: Podman's libpod API or the Docker Engine
//!   API) once per agent interval: one list call for the host-level counts,
//!   plus one-shot stats for the opted-in running containers and an
//!   inspect of the opted-in stopped ones (did the OOM killer end them?),
//!   and per Compose project its counts. Parsing is
//!   split from I/O ([`model`]), so every parser is tested on JSON captured
//!   from a real engine (`tests/fixtures/podman/`).
//! * `updates` ([`updates`]) runs `podman auto-update --dry-run --format json`
//!   on its own slow schedule through a [`runner`] with a timeout, or reads
//!   the same JSON from a file a host-side timer writes (for an agent in a
//!   container, which cannot run podman). With `apply_from_ha` it also
//!   offers an HA button and update entities that run `podman auto-update`.
//!
//! "Nothing here" (no engine socket at all) is not an error: the
//! `containers` source then has no entities. An engine that is there but
//! does not answer makes its entities unavailable, with one log line.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::context::{check_globs, Context};
use crate::error::ConfigError;
use crate::source::Spawnable;

pub mod containers;
pub mod engine;
pub mod model;
pub mod runner;
pub mod updates;

/// Which REST API the engine socket speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiChoice {
    /// Podman's libpod API when the engine answers as Podman, else Docker's.
    Auto,
    /// Podman's libpod API (`/v4.0.0/libpod/…`).
    Libpod,
    /// The Docker Engine API (Docker, or Podman's compatible endpoint).
    Docker,
}

/// Containers on this host (`[containers]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContainersConfig {
    /// Count containers and report the opted-in ones.
    pub enabled: bool,
    /// The engine's API socket. Empty: the first of
    /// `$XDG_RUNTIME_DIR/podman/podman.sock`, `/run/podman/podman.sock` and
    /// `/var/run/docker.sock` that answers; none there at all means no
    /// container entities.
    pub socket: PathBuf,
    /// Which API the socket speaks: "auto", "libpod" or "docker".
    pub api: ApiChoice,
    /// Longest one API request may take before the engine counts as not
    /// answering.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Per-container entities (state, health, CPU, memory) for containers
    /// whose name matches one of these globs. From the environment: comma-separated.
    #[serde(deserialize_with = "crate::context::comma_list")]
    pub include: Vec<String>,
    /// …and for containers carrying this label: `name=value`, or `name`
    /// for any value. Empty: none by label.
    pub label: String,
    /// CPU and memory of the opted-in running containers (one more API call
    /// per cycle with libpod, one per container with the Docker API).
    pub stats: bool,
    /// Per Docker Compose / podman-compose project (the
    /// `com.docker.compose.project` label): containers running, and a
    /// "degraded" problem sensor while one is unhealthy, paused,
    /// restarting or exited with a non-zero code.
    pub compose: bool,
    /// Pending image updates (`podman auto-update`).
    pub updates: UpdatesConfig,
}

impl Default for ContainersConfig {
    fn default() -> Self {
        ContainersConfig {
            enabled: true,
            socket: PathBuf::new(),
            api: ApiChoice::Auto,
            timeout: Duration::from_secs(5),
            include: Vec::new(),
            label: "host2mqtt.enable=true".into(),
            stats: true,
            compose: true,
            updates: UpdatesConfig::default(),
        }
    }
}

/// Where pending image updates come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpdatesFrom {
    /// No update entities.
    Off,
    /// Run `podman auto-update --dry-run --format json` (agent runs natively,
    /// as the user who owns the containers).
    Command,
    /// Read that JSON from `file`, written by a host-side timer
    /// (`units/host2mqtt-updates.timer`).
    File,
}

/// Pending image updates (`[containers.updates]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpdatesConfig {
    /// "off", "command" or "file".
    pub source: UpdatesFrom,
    /// The podman program ("podman": looked up in PATH).
    pub command: PathBuf,
    /// How often to check for newer images (it asks the registries).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// The first check after the agent starts.
    #[serde(with = "humantime_serde")]
    pub first_check_after: Duration,
    /// Longest a dry run may take; it is killed after that.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// The JSON file the host-side timer writes (source = "file").
    pub file: PathBuf,
    /// A file older than this counts as unknown: the timer stopped.
    #[serde(with = "humantime_serde")]
    pub file_max_age: Duration,
    /// Offer an "Apply container updates" button and the update entities'
    /// install action in HA; both run `podman auto-update`. Needs
    /// source = "command".
    pub apply_from_ha: bool,
    /// Longest `podman auto-update` (pulls and restarts) may take.
    #[serde(with = "humantime_serde")]
    pub apply_timeout: Duration,
}

impl Default for UpdatesConfig {
    fn default() -> Self {
        UpdatesConfig {
            source: UpdatesFrom::Off,
            command: PathBuf::from("podman"),
            interval: Duration::from_secs(6 * 3600),
            first_check_after: Duration::from_secs(60),
            timeout: Duration::from_secs(300),
            file: PathBuf::new(),
            file_max_age: Duration::from_secs(24 * 3600),
            apply_from_ha: false,
            apply_timeout: Duration::from_secs(1800),
        }
    }
}

impl ContainersConfig {
    /// Checks `[containers]`; errors name full dotted keys under `key`.
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let k = |field: &str| format!("{key}.{field}");
        check_globs(&k("include"), &self.include)?;
        if self.timeout < Duration::from_millis(100) {
            return Err(ConfigError::key(
                k("timeout"),
                "expected a duration of at least 100ms, such as \"5s\"",
            ));
        }
        if self.label.starts_with('=') {
            return Err(ConfigError::key(k("label"), "expected `name=value` or `name`"));
        }
        let u = &self.updates;
        if u.interval < Duration::from_secs(60) {
            return Err(ConfigError::key(
                k("updates.interval"),
                "expected a duration of at least 1m (it queries registries), such as \"6h\"",
            ));
        }
        for (field, d) in [
            ("updates.timeout", u.timeout),
            ("updates.apply_timeout", u.apply_timeout),
            ("updates.file_max_age", u.file_max_age),
        ] {
            if d < Duration::from_secs(1) {
                return Err(ConfigError::key(k(field), "expected a duration of at least 1s"));
            }
        }
        if u.source == UpdatesFrom::Command && u.command.as_os_str().is_empty() {
            return Err(ConfigError::key(
                k("updates.command"),
                "expected the podman program, such as \"podman\"",
            ));
        }
        if u.source == UpdatesFrom::File && u.file.as_os_str().is_empty() {
            return Err(ConfigError::key(
                k("updates.file"),
                "expected the path of the JSON file the host-side timer writes (source = \"file\")",
            ));
        }
        if u.apply_from_ha && u.source != UpdatesFrom::Command {
            return Err(ConfigError::key(
                k("updates.apply_from_ha"),
                "expected source = \"command\": only an agent that runs podman itself can apply updates",
            ));
        }
        Ok(())
    }

    /// The sources `[containers]` enables.
    pub fn build(&self, cx: &Context) -> Vec<Spawnable> {
        let mut out = Vec::new();
        if self.enabled {
            out.push(containers::spawnable(self, cx.interval, cx.poke.clone()));
        }
        if self.updates.source != UpdatesFrom::Off {
            out.push(updates::spawnable(&self.updates, cx.interval, cx.poke.clone()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::wiring::testing::load_str as load;

    #[test]
    fn include_globs_come_from_a_list_or_a_comma_separated_environment_value() {
        let cfg = load("[containers]\ninclude = [\"web*\"]\n", &[]).expect("loads");
        assert_eq!(cfg.containers.include, vec!["web*"]);
        let cfg = load("", &[("HOST2MQTT__CONTAINERS__INCLUDE", "web*, db")]).expect("loads");
        assert_eq!(cfg.containers.include, vec!["web*", "db"]);
    }

    #[test]
    fn an_unknown_api_names_the_key() {
        let err = load("[containers]\napi = \"cri\"\n", &[])
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("containers.api"), "{err}");
    }

    #[test]
    fn an_unknown_updates_key_names_the_full_key() {
        let err = load("[containers.updates]\nsorce = \"file\"\n", &[])
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("containers.updates.sorce"), "{err}");
    }

    #[test]
    fn applying_updates_needs_the_command_source() {
        let err = load(
            "[containers.updates]\nsource = \"file\"\nfile = \"/x.json\"\napply_from_ha = true\n",
            &[],
        )
        .expect_err("must fail")
        .to_string();
        assert!(err.contains("containers.updates.apply_from_ha"), "{err}");
    }

    #[test]
    fn the_file_source_needs_a_file() {
        let err = load("[containers.updates]\nsource = \"file\"\n", &[])
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("containers.updates.file"), "{err}");
    }

    #[test]
    fn a_check_more_often_than_every_minute_is_refused() {
        let err = load("[containers.updates]\ninterval = \"10s\"\n", &[])
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("containers.updates.interval"), "{err}");
    }

    #[test]
    fn an_invalid_include_glob_is_named() {
        let err = load("[containers]\ninclude = [\"[\"]\n", &[])
            .expect_err("must fail")
            .to_string();
        assert!(err.contains("containers.include"), "{err}");
    }
}
