//! Hardware that only a CLI can tell about, each on its own task and
//! schedule so that a slow or hung tool never delays a cycle:
//!
//! * `nvidia` ([`nvidia`]): `nvidia-smi --query-gpu=… --format=csv` every
//!   agent interval (or its own), with a timeout.
//! * `smart` ([`smart`]): `smartctl --json` per disk, hourly by default,
//!   with a timeout: NVMe critical warning, wear, temperature, SMART overall
//!   health.
//!
//! Both run the program through [`crate::container::runner::Runner`] (a
//! timeout, the whole process group killed on expiry). An absent program is
//! "nothing here": one info line and no entities. A failing one makes the
//! source's entities unavailable, with one log line when it starts failing
//! and one when it works again.

use std::time::Duration;

use serde::Deserialize;

use crate::container::runner::RunError;
use crate::context::Context;
use crate::error::ConfigError;
use crate::source::Spawnable;

pub mod nvidia;
pub mod smart;

/// CLI-backed hardware sources (`[hardware]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HardwareConfig {
    /// NVIDIA GPUs through `nvidia-smi`.
    pub nvidia: nvidia::NvidiaConfig,
    /// Disk health through `smartctl`.
    pub smart: smart::SmartConfig,
}

impl HardwareConfig {
    /// Checks `[hardware]`, naming the key.
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        let key = |k: &str, m: &str| {
            ConfigError::key(format!("{section}.{}", k.trim_start_matches("hardware.")), m)
        };
        let n = &self.nvidia;
        if n.command.as_os_str().is_empty() {
            return Err(key(
                "hardware.nvidia.command",
                "expected a program, such as \"nvidia-smi\"",
            ));
        }
        if n.timeout < Duration::from_millis(100) {
            return Err(key(
                "hardware.nvidia.timeout",
                "expected a duration of at least 100ms, such as \"10s\"",
            ));
        }
        if !n.interval.is_zero() && n.interval < Duration::from_secs(1) {
            return Err(key(
                "hardware.nvidia.interval",
                "expected \"0s\" (the agent's interval) or at least 1s",
            ));
        }
        let s = &self.smart;
        if s.command.as_os_str().is_empty() {
            return Err(key(
                "hardware.smart.command",
                "expected a program, such as \"smartctl\"",
            ));
        }
        if s.interval < Duration::from_secs(60) {
            return Err(key(
                "hardware.smart.interval",
                "expected a duration of at least 1m (it wakes the disks' controllers), such as \"1h\"",
            ));
        }
        if s.timeout < Duration::from_secs(1) {
            return Err(key(
                "hardware.smart.timeout",
                "expected a duration of at least 1s, such as \"30s\"",
            ));
        }
        if let Some(d) = s.devices.iter().find(|d| !d.starts_with("/dev/")) {
            return Err(key(
                "hardware.smart.devices",
                &format!("expected device paths under /dev, such as \"/dev/sda\"; got {d:?}"),
            ));
        }
        Ok(())
    }

    /// The sources `[hardware]` enables.
    pub fn build(&self, cx: &Context) -> Vec<Spawnable> {
        let mut out = Vec::new();
        if self.nvidia.enabled {
            out.push(nvidia::spawnable(&self.nvidia, cx.interval, cx.poke.clone()));
        }
        if self.smart.enabled {
            out.push(smart::spawnable(&self.smart, cx.poke.clone()));
        }
        out
    }
}

/// How one run of a tool went wrong, as far as the schedule cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The program is not installed: nothing to report on this host.
    Absent(String),
    /// It ran and failed, or timed out: its entities are unavailable.
    Failed(String),
}

impl Failure {
    /// The message to log.
    pub fn message(&self) -> &str {
        match self {
            Failure::Absent(m) | Failure::Failed(m) => m,
        }
    }
}

/// Turns a runner error into a [`Failure`] with wording for `tool`.
pub fn run_failure(e: RunError, tool: &str) -> Failure {
    match e {
        RunError::NotFound { program } => Failure::Absent(format!(
            "{}: not found; no {tool} entities (install it, or set its `command`)",
            program.display()
        )),
        other => Failure::Failed(other.to_string()),
    }
}

/// Logs a failure once when it starts (or changes kind) and once when it
/// ends, never every run: the one rule ([`crate::availability::Latch`])
/// plus the kind, since "not installed" is news of its own.
#[derive(Debug, Default)]
pub struct Latch {
    /// The one log-once rule.
    latch: crate::availability::Latch,
    /// The failure being reported, while there is one.
    current: Option<Failure>,
}

impl Latch {
    /// Records the outcome of a run of `source`.
    pub fn record(&mut self, source: &str, outcome: Result<(), Failure>) {
        match outcome {
            Ok(()) => {
                let was = self.current.take();
                if self.latch.recover() {
                    if let Some(was) = was {
                        tracing::info!(source, previous_error = %was.message(), "works again");
                    }
                }
            }
            Err(f) => {
                let first = self.latch.fail();
                let same_kind = matches!(
                    (&self.current, &f),
                    (Some(Failure::Absent(_)), Failure::Absent(_))
                        | (Some(Failure::Failed(_)), Failure::Failed(_))
                );
                if first || !same_kind {
                    match &f {
                        Failure::Absent(m) => tracing::info!(source, "{m}"),
                        Failure::Failed(m) => {
                            tracing::warn!(source, error = %m, "failed; its entities are unavailable until it works")
                        }
                    }
                }
                self.current = Some(f);
            }
        }
    }

    /// The failure of the last run, if it failed.
    pub fn failure(&self) -> Option<&Failure> {
        self.current.as_ref()
    }
}

pub use crate::container::runner::last_line;

#[cfg(test)]
pub(crate) mod testing {
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    /// An executable shell script in `dir`: the exec seam of the runner.
    pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    /// A temporary directory named for this helper's tests.
    pub fn tempdir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("h2m-hw")
            .tempdir()
            .expect("tempdir")
    }

    /// A path under tests/fixtures.
    pub fn fixture(rel: &str) -> PathBuf {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures")).join(rel)
    }
}

#[cfg(test)]
mod tests {
    use crate::wiring::testing::load_str as load;

    #[test]
    fn the_defaults_validate_and_enable_both_sources() {
        let cfg = load("", &[]).expect("loads");
        assert!(cfg.hardware.nvidia.enabled && cfg.hardware.smart.enabled);
        assert_eq!(cfg.hardware.smart.interval, std::time::Duration::from_secs(3600));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (toml, k) in [
            (
                "[hardware.smart]\ninterval = \"10s\"\n",
                "hardware.smart.interval",
            ),
            (
                "[hardware.smart]\ndevices = [\"sda\"]\n",
                "hardware.smart.devices",
            ),
            (
                "[hardware.nvidia]\ntimeout = \"1ms\"\n",
                "hardware.nvidia.timeout",
            ),
            ("[hardware.nvidia]\ncomand = \"x\"\n", "hardware.nvidia.comand"),
        ] {
            let err = load(toml, &[]).expect_err(toml).to_string();
            assert!(err.contains(k), "{toml}: {err}");
        }
    }

    #[test]
    fn smart_devices_come_from_a_comma_separated_environment_value() {
        let cfg = load(
            "",
            &[("HOST2MQTT__HARDWARE__SMART__DEVICES", "/dev/sda,/dev/nvme0")],
        )
        .expect("loads");
        assert_eq!(cfg.hardware.smart.devices, ["/dev/sda", "/dev/nvme0"]);
    }
}
