//! "Reboot required": one binary sensor, with the reason as an attribute,
//! from whichever of these the host has:
//!
//! * Debian/Ubuntu: `/run/reboot-required` (and the packages that asked,
//!   in `/run/reboot-required.pkgs`), written by update-notifier and
//!   unattended-upgrades;
//! * Fedora CoreOS and other rpm-ostree/ostree systems: a staged
//!   deployment waits for the next boot while `/run/ostree/staged-deployment`
//!   exists (on a host booted from ostree, `/run/ostree-booted`);
//! * Flatcar: update_engine's status `UPDATE_STATUS_UPDATED_NEED_REBOOT`,
//!   asked over the system bus (only where update_engine is installed).
//!
//! The files are read through the host root, so the sensor works with no
//! D-Bus at all; it is its own source (`reboot`), apart from the systemd
//! managers, so a missing system bus never makes it unavailable.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Map};
use tokio::sync::mpsc;

use super::bus::{Bus, BusError, UpdateEngineStatus};
use super::config::ManagerKind;
use super::Outlet;
use crate::availability::Latch;
use crate::host::HostPaths;
use crate::reading::{Kind, Reading, Value};
use crate::source::{self, SourceContext, SourceState, Spawnable};

/// The source's name and availability group.
pub const SOURCE: &str = "reboot";

/// update_engine's status once an update is installed.
pub const NEED_REBOOT: &str = "UPDATE_STATUS_UPDATED_NEED_REBOOT";

/// update_engine's D-Bus policy: present where update_engine is installed.
const UPDATE_ENGINE_POLICY: &str = "/usr/share/dbus-1/system.d/com.coreos.update1.conf";

/// What the flag files say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileChecks {
    /// `/run/reboot-required` exists; with the packages listed next to it.
    pub reboot_required: Option<Vec<String>>,
    /// An ostree deployment is staged for the next boot.
    pub ostree_staged: bool,
}

/// Reads the flag files under the host root. An error means the host's
/// `/run` could not be read, so we cannot tell.
pub fn check_files(flags: &FlagFiles) -> std::io::Result<FileChecks> {
    let reboot_required = if flags.reboot_required.try_exists()? {
        let pkgs = std::fs::read_to_string(&flags.reboot_required_pkgs).unwrap_or_default();
        Some(parse_packages(&pkgs))
    } else {
        None
    };
    let ostree_staged = flags.ostree_booted.try_exists()? && flags.ostree_staged.try_exists()?;
    Ok(FileChecks {
        reboot_required,
        ostree_staged,
    })
}

/// The flag files [`check_files`] looks at, under the host's root: joined
/// once, not every interval.
#[derive(Debug, Clone)]
pub struct FlagFiles {
    reboot_required: PathBuf,
    reboot_required_pkgs: PathBuf,
    ostree_booted: PathBuf,
    ostree_staged: PathBuf,
}

impl FlagFiles {
    pub fn new(paths: &HostPaths) -> Self {
        FlagFiles {
            reboot_required: paths.root("/run/reboot-required"),
            reboot_required_pkgs: paths.root("/run/reboot-required.pkgs"),
            ostree_booted: paths.root("/run/ostree-booted"),
            ostree_staged: paths.root("/run/ostree/staged-deployment"),
        }
    }
}

/// The package names in `/run/reboot-required.pkgs`: one a line, each once
/// (unattended-upgrades appends, so names repeat).
pub fn parse_packages(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !out.iter().any(|n| n == name) {
            out.push(name.to_string());
        }
    }
    out
}

/// The sensor from what the checks found: on with the reasons when any
/// check asks for a reboot; off when every check that applies answered
/// and none does; unknown when a check could not be made and none asks.
/// The source is available while the flag files can be read.
pub fn reboot_reading(
    files: &std::io::Result<FileChecks>,
    engine: Option<&Result<UpdateEngineStatus, BusError>>,
) -> (bool, Reading) {
    let mut reasons = Vec::new();
    let mut packages = Vec::new();
    if let Ok(f) = files {
        if let Some(pkgs) = &f.reboot_required {
            reasons.push("/run/reboot-required".to_string());
            packages.clone_from(pkgs);
        }
        if f.ostree_staged {
            reasons.push("ostree: a staged deployment waits for the next boot".to_string());
        }
    }
    if let Some(Ok(status)) = engine {
        if status.operation == NEED_REBOOT {
            reasons.push(if status.new_version.is_empty() {
                "update_engine: an update is installed".to_string()
            } else {
                format!("update_engine: {} is installed", status.new_version)
            });
        }
    }
    let unsure = files.is_err() || matches!(engine, Some(Err(_)));
    let value = match (reasons.is_empty(), unsure) {
        (false, _) => Value::Bool(true),
        (true, false) => Value::Bool(false),
        (true, true) => Value::Missing,
    };
    let mut attrs = Map::new();
    attrs.insert(
        "reason".into(),
        if reasons.is_empty() {
            json!(null)
        } else {
            json!(reasons.join("; "))
        },
    );
    attrs.insert("packages".into(), json!(packages));
    let reading =
        Reading::new("reboot_required", "Reboot required", Kind::Flag, value).with_attributes(attrs);
    (files.is_ok(), reading)
}

/// The reboot sensor's source.
#[derive(Debug, Clone)]
pub struct RebootSource {
    /// Where the host's /run is.
    paths: HostPaths,
    /// The flag files under it.
    flags: FlagFiles,
    /// How often to check (the agent's interval).
    every: Duration,
    /// The system bus, where update_engine is installed; else `None`.
    update_engine: Option<String>,
    /// Limit for each D-Bus call.
    timeout: Duration,
}

impl RebootSource {
    /// The source reading the host at `paths` every `every`; update_engine
    /// (on the system bus, `system_bus` as configured) is asked only where
    /// its D-Bus policy file shows it is installed.
    pub fn new(
        paths: &HostPaths,
        every: Duration,
        timeout: Duration,
        system_bus: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let installed = paths.root(UPDATE_ENGINE_POLICY).exists();
        RebootSource {
            update_engine: installed
                .then(|| ManagerKind::System.address(system_bus, env))
                .flatten(),
            paths: paths.clone(),
            flags: FlagFiles::new(paths),
            every,
            timeout,
        }
    }

    /// Wires the source to the agent.
    pub fn spawnable(self, poke: mpsc::Sender<()>) -> Spawnable {
        let (_, mut reading) = reboot_reading(&Ok(FileChecks::default()), None);
        reading.value = Value::Missing;
        let initial = SourceState {
            available: false,
            readings: vec![reading],
        };
        source::wire(SOURCE, initial, poke, move |ctx| self.run(ctx))
    }

    async fn run(self, ctx: SourceContext) {
        let mut out = Outlet::new(ctx);
        let mut bus: Option<Bus> = None;
        let mut engine_health = Latch::default();
        let mut files_health = Latch::default();
        // What the files said last time: with no update_engine to ask, the
        // same answer makes the same reading (already published), so it is
        // not built again each interval.
        let mut last: Option<Result<FileChecks, std::io::ErrorKind>> = None;
        loop {
            let files = check_files(&self.flags);
            let seen = files.as_ref().map(Clone::clone).map_err(std::io::Error::kind);
            if self.update_engine.is_none() && last.as_ref() == Some(&seen) {
                crate::source::sleep_on_grid(self.every).await;
                continue;
            }
            last = Some(seen);
            match &files {
                Err(error) if files_health.fail() => {
                    tracing::warn!(source = SOURCE, path = %self.paths.root("/run").display(), %error, "cannot read the host's /run; reboot required is unknown");
                }
                Ok(_) if files_health.recover() => {
                    tracing::info!(source = SOURCE, "the host's /run is readable again");
                }
                _ => {}
            }
            let engine = match &self.update_engine {
                Some(address) => Some(
                    self.ask_update_engine(address, &mut bus, &mut engine_health)
                        .await,
                ),
                None => None,
            };
            let (available, reading) = reboot_reading(&files, engine.as_ref());
            out.publish(
                SourceState {
                    available,
                    readings: vec![reading],
                },
                false,
            );
            // On the agent's ticks, so the check shares their wake-up.
            crate::source::sleep_on_grid(self.every).await;
        }
    }

    /// update_engine's status; keeps the connection between checks and
    /// logs a failure once (and the recovery once).
    async fn ask_update_engine(
        &self,
        address: &str,
        bus: &mut Option<Bus>,
        health: &mut Latch,
    ) -> Result<UpdateEngineStatus, BusError> {
        let result = async {
            if bus.is_none() {
                *bus = Some(Bus::connect(address, self.timeout).await?);
            }
            match bus {
                Some(b) => b.update_engine_status().await,
                None => Err(BusError::Closed {
                    address: address.to_string(),
                }),
            }
        }
        .await;
        match &result {
            Err(error) if health.fail() => {
                tracing::warn!(source = SOURCE, %error, "cannot ask update_engine; reboot required is unknown unless a file says so");
            }
            Ok(_) if health.recover() => {
                tracing::info!(source = SOURCE, address, "update_engine answers again");
            }
            _ => {}
        }
        if result.is_err() {
            *bus = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn fixture_root(rel: &str) -> HostPaths {
        HostPaths {
            root: Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(rel),
            ..HostPaths::default()
        }
    }

    fn status(op: &str, version: &str) -> Result<UpdateEngineStatus, BusError> {
        Ok(UpdateEngineStatus {
            operation: op.into(),
            new_version: version.into(),
        })
    }

    fn reason(r: &Reading) -> serde_json::Value {
        r.attributes
            .as_ref()
            .map(|a| a["reason"].clone())
            .unwrap_or_default()
    }

    #[test]
    fn the_debian_flag_file_turns_it_on_with_the_packages_that_asked() {
        let files = check_files(&FlagFiles::new(&fixture_root("systemd/ubuntu-reboot")));
        let (available, r) = reboot_reading(&files, None);
        assert!(available);
        assert_eq!(r.value, Value::Bool(true));
        assert_eq!(reason(&r), json!("/run/reboot-required"));
        assert_eq!(
            r.attributes.as_ref().map(|a| a["packages"].clone()),
            Some(json!(["linux-image-6.8.0-49-generic", "linux-base"]))
        );
        assert_eq!(
            (r.key.as_str(), r.name.as_str(), r.kind),
            ("reboot_required", "Reboot required", Kind::Flag)
        );
    }

    #[test]
    fn a_host_without_flags_needs_no_reboot() {
        let (available, r) = reboot_reading(&check_files(&FlagFiles::new(&fixture_root("root/vm"))), None);
        assert!(available);
        assert_eq!(r.value, Value::Bool(false));
        assert_eq!(reason(&r), json!(null));
    }

    #[test]
    fn a_staged_ostree_deployment_turns_it_on() {
        let (_, r) = reboot_reading(
            &check_files(&FlagFiles::new(&fixture_root("systemd/fcos-staged"))),
            None,
        );
        assert_eq!(r.value, Value::Bool(true));
        assert_eq!(
            reason(&r),
            json!("ostree: a staged deployment waits for the next boot")
        );
    }

    #[test]
    fn update_engine_needing_a_reboot_turns_it_on_and_idle_does_not() {
        let files = Ok(FileChecks::default());
        let (_, r) = reboot_reading(&files, Some(&status(NEED_REBOOT, "4081.2.1")));
        assert_eq!(r.value, Value::Bool(true));
        assert_eq!(reason(&r), json!("update_engine: 4081.2.1 is installed"));
        let (_, r) = reboot_reading(&files, Some(&status("UPDATE_STATUS_IDLE", "0.0.0")));
        assert_eq!(r.value, Value::Bool(false));
    }

    #[test]
    fn an_unreachable_update_engine_leaves_it_unknown_unless_a_file_says_reboot() {
        let gone = || {
            Err(BusError::Closed {
                address: "unix:path=/x".into(),
            })
        };
        let (available, r) = reboot_reading(&Ok(FileChecks::default()), Some(&gone()));
        assert!(available, "the files were read");
        assert_eq!(r.value, Value::Missing);
        let flagged = Ok(FileChecks {
            reboot_required: Some(vec![]),
            ostree_staged: false,
        });
        let (_, r) = reboot_reading(&flagged, Some(&gone()));
        assert_eq!(r.value, Value::Bool(true));
    }

    #[test]
    fn an_unreadable_run_makes_the_source_unavailable() {
        let err = Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        let (available, r) = reboot_reading(&err, None);
        assert!(!available);
        assert_eq!(r.value, Value::Missing);
    }

    #[test]
    fn package_names_are_listed_once_in_order() {
        assert_eq!(parse_packages("b\na\n\nb\n"), ["b", "a"]);
    }
}
