//! Pending operating-system updates: an HA `update` entity "Operating
//! system" (installed version, latest version where known, a release
//! summary naming the first packages) and a count sensor, from whichever
//! package manager the host has:
//!
//! * Flatcar: `update_engine` over the system bus (its `GetStatus`: the new
//!   version once it found one), asked through [`crate::systemd::bus`];
//! * rpm-ostree hosts: `rpm-ostree status --json` ([`rpmostree`]);
//! * Debian/Ubuntu: `apt-get -s upgrade` ([`apt`]), a simulation;
//! * Fedora/RHEL: `dnf check-update` ([`dnf`]).
//!
//! The check is slow (seconds of CPU for apt) and runs on its own schedule
//! (default every 6 h, the first soon after start) with a timeout, in its
//! own task, never on the cycle path. The package lists are never
//! refreshed (`apt-get update`, dnf metadata downloads) unless `refresh` is
//! on. A check that fails leaves the entities unavailable — unknown, never
//! "up to date".

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::{json, Map};
use tokio::sync::mpsc;

use crate::container::runner::Runner;
use crate::context::Context;
use crate::error::ConfigError;
use crate::host::HostPaths;
use crate::reading::{Kind, Reading, Update, Value};
use crate::source::{wire, SourceContext, SourceState, Spawnable};

pub mod apt;
pub mod dnf;
pub mod rpmostree;

/// The source's name and availability group (`avail.os_updates`).
pub const NAME: &str = "os_updates";

/// update_engine's D-Bus policy: present where update_engine is installed.
const UPDATE_ENGINE_POLICY: &str = "/usr/share/dbus-1/system.d/com.coreos.update1.conf";

/// Which package manager to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ManagerChoice {
    /// The one the host root shows (update_engine, rpm-ostree, apt, dnf, in
    /// that order); none found means no entities.
    Auto,
    /// `apt-get -s upgrade`.
    Apt,
    /// `dnf check-update`.
    Dnf,
    /// `rpm-ostree status --json`.
    RpmOstree,
    /// Flatcar's update_engine over D-Bus.
    UpdateEngine,
}

/// Pending OS updates (`[os_updates]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OsUpdatesConfig {
    /// Report pending OS updates.
    pub enabled: bool,
    /// "auto", "apt", "dnf", "rpm-ostree" or "update-engine".
    pub manager: ManagerChoice,
    /// How often to check.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// The first check after the agent starts.
    #[serde(with = "humantime_serde")]
    pub first_check_after: Duration,
    /// Longest one check may take; it is killed after that.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Refresh the package lists before each check (`apt-get update`, needs
    /// root; dnf's metadata download; `rpm-ostree upgrade --check`). Off:
    /// the lists the host's own timers keep fresh are used as they are.
    pub refresh: bool,
}

impl Default for OsUpdatesConfig {
    fn default() -> Self {
        OsUpdatesConfig {
            enabled: true,
            manager: ManagerChoice::Auto,
            interval: Duration::from_secs(6 * 3600),
            first_check_after: Duration::from_secs(120),
            timeout: Duration::from_secs(300),
            refresh: false,
        }
    }
}

impl OsUpdatesConfig {
    /// Checks `[os_updates]`, naming the key.
    pub fn validate(&self, section: &str) -> Result<(), ConfigError> {
        validate(self, section)
    }

    /// The source this section enables. `system_bus` is `[systemd.system]`'s
    /// address (Flatcar's update_engine answers there).
    pub fn build(&self, cx: &Context, system_bus: &str) -> Vec<Spawnable> {
        let bus = crate::systemd::config::ManagerKind::System.address(system_bus, cx.env);
        spawnable(self, &cx.paths, bus, cx.poke.clone())
            .into_iter()
            .collect()
    }
}

fn validate(c: &OsUpdatesConfig, section: &str) -> Result<(), ConfigError> {
    let key =
        |k: &str, m: &str| ConfigError::key(format!("{section}.{}", k.trim_start_matches("os_updates.")), m);
    if c.interval < Duration::from_secs(60) {
        return Err(key(
            "os_updates.interval",
            "expected a duration of at least 1m (a check costs seconds of CPU), such as \"6h\"",
        ));
    }
    if c.timeout < Duration::from_secs(1) {
        return Err(key(
            "os_updates.timeout",
            "expected a duration of at least 1s, such as \"5m\"",
        ));
    }
    Ok(())
}

/// A package manager found on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    /// apt.
    Apt,
    /// dnf (4 or 5).
    Dnf,
    /// rpm-ostree.
    RpmOstree,
    /// update_engine.
    UpdateEngine,
}

impl Manager {
    /// The name shown in attributes and logs.
    pub fn name(self) -> &'static str {
        match self {
            Manager::Apt => "apt",
            Manager::Dnf => "dnf",
            Manager::RpmOstree => "rpm-ostree",
            Manager::UpdateEngine => "update_engine",
        }
    }
}

/// The manager `choice` names, or the one the host root shows.
pub fn detect(choice: ManagerChoice, paths: &HostPaths) -> Option<Manager> {
    let has = |p: &str| paths.root(p).exists();
    match choice {
        ManagerChoice::Apt => Some(Manager::Apt),
        ManagerChoice::Dnf => Some(Manager::Dnf),
        ManagerChoice::RpmOstree => Some(Manager::RpmOstree),
        ManagerChoice::UpdateEngine => Some(Manager::UpdateEngine),
        ManagerChoice::Auto if has(UPDATE_ENGINE_POLICY) => Some(Manager::UpdateEngine),
        ManagerChoice::Auto if has("/run/ostree-booted") && has("/usr/bin/rpm-ostree") => {
            Some(Manager::RpmOstree)
        }
        ManagerChoice::Auto if has("/usr/bin/apt-get") => Some(Manager::Apt),
        ManagerChoice::Auto if has("/usr/bin/dnf") || has("/usr/bin/dnf5") => Some(Manager::Dnf),
        ManagerChoice::Auto => None,
    }
}

/// One pending package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Its name.
    pub name: String,
    /// The installed version, where the manager says.
    pub from: Option<String>,
    /// The version it would install.
    pub to: String,
    /// It comes from a security repository.
    pub security: bool,
}

/// The result of one check.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// The version that runs.
    pub installed: String,
    /// A newer version of the whole OS (image-based systems); `None` for
    /// package-based ones, whose news is `packages`.
    pub newer: Option<String>,
    /// Pending packages (apt, dnf).
    pub packages: Vec<Package>,
    /// An update is downloading or being applied.
    pub in_progress: bool,
    /// Packages apt keeps back.
    pub held_back: u64,
    /// When it ran.
    pub at: SystemTime,
}

impl Check {
    /// Pending updates: packages, or 1 for a newer OS image.
    pub fn pending(&self) -> u64 {
        match &self.newer {
            Some(_) => 1,
            None => self.packages.len() as u64,
        }
    }

    /// HA's release summary: how many, then the first packages, within the
    /// 255 characters HA keeps.
    pub fn summary(&self) -> Option<String> {
        if let Some(v) = &self.newer {
            return Some(format!("Version {v} is available."));
        }
        let n = self.packages.len();
        if n == 0 {
            return None;
        }
        let security = self.packages.iter().filter(|p| p.security).count();
        let mut out = format!("{n} package update{}", if n == 1 { "" } else { "s" });
        if security > 0 {
            out.push_str(&format!(" ({security} security)"));
        }
        out.push_str(": ");
        for (i, p) in self.packages.iter().enumerate() {
            let item = format!("{}{} {}", if i > 0 { ", " } else { "" }, p.name, p.to);
            let rest = format!(", … and {} more.", n - i);
            if out.len() + item.len() + rest.len() > 255 {
                out.push_str(&format!("{}… and {} more.", if i > 0 { ", " } else { "" }, n - i));
                return Some(out);
            }
            out.push_str(&item);
        }
        out.push('.');
        Some(out)
    }
}

/// What HA gets: the update entity and the count. `check` is the last
/// good check, `error` why the latest one failed (then both values are
/// unknown); neither: not checked yet.
pub fn readings(title: &str, manager: Manager, check: Option<&Check>, error: Option<&str>) -> Vec<Reading> {
    let fresh = check.filter(|_| error.is_none());
    let update = fresh.map_or(Value::Missing, |c| {
        let latest = match (&c.newer, c.packages.len()) {
            (Some(v), _) => v.clone(),
            (None, 0) => c.installed.clone(),
            // Not a version HA can compare, so HA shows it as newer; the
            // count tells how much is waiting.
            (None, n) => format!("{} ({n} update{})", c.installed, if n == 1 { "" } else { "s" }),
        };
        Value::Update(Update {
            installed: c.installed.clone(),
            latest,
            title: title.to_string(),
            in_progress: c.in_progress,
            summary: c.summary(),
        })
    });
    let mut attrs = Map::new();
    attrs.insert("manager".into(), json!(manager.name()));
    if let Some(c) = fresh {
        let first: Vec<String> = c
            .packages
            .iter()
            .take(20)
            .map(|p| match &p.from {
                Some(from) => format!("{} {from} → {}", p.name, p.to),
                None => format!("{} {}", p.name, p.to),
            })
            .collect();
        attrs.insert("packages".into(), json!(first));
        attrs.insert(
            "security".into(),
            json!(c.packages.iter().filter(|p| p.security).count()),
        );
        attrs.insert("held_back".into(), json!(c.held_back));
        attrs.insert(
            "checked_at".into(),
            json!(crate::discovery::format_timestamp(c.at)),
        );
    }
    if let Some(e) = error {
        attrs.insert("error".into(), json!(e));
    }
    vec![
        Reading::new("os_update", "Operating system", Kind::Update, update).in_group(NAME),
        Reading::new(
            "os_updates_pending",
            "OS updates pending",
            Kind::Count,
            fresh.map(Check::pending),
        )
        .in_group(NAME)
        .with_attributes(attrs),
    ]
}

/// The installed version people know their OS by: Debian's point release
/// (`/etc/debian_version`, "12.11"), else os-release's `VERSION_ID`.
pub fn installed_version(paths: &HostPaths) -> String {
    let debian = std::fs::read_to_string(paths.root("/etc/debian_version")).unwrap_or_default();
    let debian = debian.trim();
    if debian.starts_with(|c: char| c.is_ascii_digit()) {
        return debian.to_string();
    }
    crate::host::os_release(paths)
        .map(|r| r.version_id)
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// The OS's name for the update entity's title.
fn title(paths: &HostPaths) -> String {
    crate::host::os_release(paths).map_or_else(|| "Linux".into(), |r| r.pretty_name)
}

/// How a check reaches its manager.
#[derive(Debug, Clone)]
pub struct Checker {
    /// Which manager.
    pub manager: Manager,
    /// The host root (apt's `Dir`, dnf's `--installroot` when not `/`).
    pub root: PathBuf,
    /// The program to run (apt-get, dnf, rpm-ostree); unused for update_engine.
    pub program: PathBuf,
    /// The system bus address, for update_engine.
    pub system_bus: Option<String>,
    /// Refresh the lists first.
    pub refresh: bool,
    /// The limit for the whole check.
    pub timeout: Duration,
    /// The installed version (apt, dnf, update_engine).
    pub installed: String,
}

impl Checker {
    /// The checker for `manager` on the host at `paths`.
    pub fn new(
        manager: Manager,
        paths: &HostPaths,
        cfg: &OsUpdatesConfig,
        system_bus: Option<String>,
    ) -> Self {
        let program = match manager {
            Manager::Apt => "apt-get",
            Manager::Dnf if paths.root("/usr/bin/dnf").exists() || !paths.root("/usr/bin/dnf5").exists() => {
                "dnf"
            }
            Manager::Dnf => "dnf5",
            Manager::RpmOstree => "rpm-ostree",
            Manager::UpdateEngine => "",
        };
        Checker {
            manager,
            root: paths.root.clone(),
            program: PathBuf::from(program),
            system_bus,
            refresh: cfg.refresh,
            timeout: cfg.timeout,
            installed: installed_version(paths),
        }
    }

    fn runner(&self) -> Runner {
        Runner::new(&self.program).with_env("LC_ALL", "C")
    }

    fn foreign_root(&self) -> Option<&Path> {
        (self.root != Path::new("/") && !self.root.as_os_str().is_empty()).then_some(self.root.as_path())
    }

    /// One check, within the timeout.
    pub async fn check(&self) -> Result<Check, String> {
        match tokio::time::timeout(self.timeout, self.check_inner()).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "{} check: no answer within {}",
                self.manager.name(),
                humantime::format_duration(self.timeout)
            )),
        }
    }

    async fn check_inner(&self) -> Result<Check, String> {
        let at = SystemTime::now();
        let base = Check {
            installed: self.installed.clone(),
            newer: None,
            packages: Vec::new(),
            in_progress: false,
            held_back: 0,
            at,
        };
        match self.manager {
            Manager::Apt => {
                let dir = self.foreign_root().map(|r| format!("Dir={}/", r.display()));
                let mut common: Vec<&str> = Vec::new();
                if let Some(d) = &dir {
                    common.extend(["-o", d.as_str()]);
                }
                if self.refresh {
                    let mut args = common.clone();
                    args.extend(["-q", "update"]);
                    self.run_ok(&args, &[0]).await?;
                }
                let mut args = common;
                args.extend(["-s", "-o", "Debug::NoLocking=1", "upgrade"]);
                let out = self.run_ok(&args, &[0]).await?;
                let sim = apt::parse_simulation(&out).map_err(|e| format!("apt-get -s upgrade: {e}"))?;
                Ok(Check {
                    packages: sim.packages,
                    held_back: sim.held_back,
                    ..base
                })
            }
            Manager::Dnf => {
                let root = self
                    .foreign_root()
                    .map(|r| format!("--installroot={}", r.display()));
                let mut args: Vec<&str> = Vec::new();
                if let Some(r) = &root {
                    args.push(r);
                }
                if !self.refresh {
                    // Cache only: no metadata download behind the user's back.
                    args.push("--cacheonly");
                }
                args.push("check-update");
                let out = self.run_ok(&args, &[0, 100]).await?;
                Ok(Check {
                    packages: dnf::parse_check_update(&out),
                    ..base
                })
            }
            Manager::RpmOstree => {
                if self.refresh {
                    // 77: no update available; 0: one was found (and cached).
                    self.run_ok(&["upgrade", "--check"], &[0, 77]).await?;
                }
                let out = self.run_ok(&["status", "--json"], &[0]).await?;
                let status = rpmostree::parse_status(&out).map_err(|e| format!("rpm-ostree status: {e}"))?;
                Ok(Check {
                    installed: status.booted,
                    newer: status.newer.map(|(v, _)| v),
                    ..base
                })
            }
            Manager::UpdateEngine => {
                let address = self
                    .system_bus
                    .as_deref()
                    .ok_or("no system bus address to reach update_engine")?;
                let bus = crate::systemd::bus::Bus::connect(address, self.timeout)
                    .await
                    .map_err(|e| e.to_string())?;
                let status = bus.update_engine_status().await.map_err(|e| e.to_string())?;
                Ok(update_engine_check(base, &status.operation, &status.new_version))
            }
        }
    }

    /// Runs the program; an exit code outside `ok` is an error with its last
    /// stderr line.
    async fn run_ok(&self, args: &[&str], ok: &[i32]) -> Result<String, String> {
        let out = self
            .runner()
            .run(args, self.timeout)
            .await
            .map_err(|e| e.to_string())?;
        match out.status.code() {
            Some(code) if ok.contains(&code) => Ok(out.stdout),
            code => Err(format!(
                "{} {} exited with {}: {}",
                self.program.display(),
                args.join(" "),
                code.map_or_else(|| "a signal".to_string(), |c| c.to_string()),
                out.error_line()
            )),
        }
    }
}

/// update_engine's status as a check: a new version once it found one;
/// downloading, verifying or finalizing counts as in progress.
pub fn update_engine_check(base: Check, operation: &str, new_version: &str) -> Check {
    let found = matches!(
        operation,
        "UPDATE_STATUS_UPDATE_AVAILABLE"
            | "UPDATE_STATUS_DOWNLOADING"
            | "UPDATE_STATUS_VERIFYING"
            | "UPDATE_STATUS_FINALIZING"
            | "UPDATE_STATUS_UPDATED_NEED_REBOOT"
    );
    Check {
        newer: (found && !new_version.is_empty() && new_version != base.installed)
            .then(|| new_version.to_string()),
        in_progress: matches!(
            operation,
            "UPDATE_STATUS_DOWNLOADING" | "UPDATE_STATUS_VERIFYING" | "UPDATE_STATUS_FINALIZING"
        ),
        ..base
    }
}

/// The OS updates source.
pub struct OsUpdatesSource {
    /// How to check.
    checker: Checker,
    /// The update entity's title.
    title: String,
    /// First check after start.
    first: Duration,
    /// Between checks.
    period: Duration,
    /// The last good check.
    last: Option<Check>,
    /// Why the latest check failed.
    error: Option<String>,
}

impl OsUpdatesSource {
    /// What the agent shows now.
    pub fn state(&self) -> SourceState {
        SourceState {
            available: self.error.is_none(),
            readings: readings(
                &self.title,
                self.checker.manager,
                self.last.as_ref(),
                self.error.as_deref(),
            ),
        }
    }

    /// Runs one check and keeps its result, logging a failure once and
    /// the recovery once.
    pub async fn refresh(&mut self) {
        let started = std::time::Instant::now();
        match self.checker.check().await {
            Ok(check) => {
                if self.error.take().is_some() {
                    tracing::info!(
                        manager = self.checker.manager.name(),
                        "OS update check works again"
                    );
                }
                tracing::debug!(
                    manager = self.checker.manager.name(),
                    pending = check.pending(),
                    elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "OS update check"
                );
                self.last = Some(check);
            }
            Err(e) => {
                if self.error.is_none() {
                    tracing::warn!(manager = self.checker.manager.name(), error = %e, "OS update check failed; its entities are unavailable until it works");
                }
                self.error = Some(e);
            }
        }
    }

    /// Checks on schedule, until dropped.
    pub async fn run(mut self, ctx: SourceContext) {
        // "Not checked yet" is an answer: nobody waits minutes for the first check.
        ctx.publish(self.state(), false);
        tokio::time::sleep(self.first).await;
        loop {
            self.refresh().await;
            ctx.publish(self.state(), true);
            // The check's code will not run again for hours.
            crate::residency::drop_text();
            tokio::time::sleep(self.period).await;
        }
    }
}

/// Whether `program` (a bare name, or a path) can be found in `path`.
fn in_path(program: &Path, path: Option<std::ffi::OsString>) -> bool {
    if program.components().count() > 1 {
        return program.exists();
    }
    path.is_some_and(|p| std::env::split_paths(&p).any(|dir| dir.join(program).is_file()))
}

/// The source for `cfg` on the host at `paths`, when a manager is found;
/// `system_bus` is where update_engine answers.
pub fn spawnable(
    cfg: &OsUpdatesConfig,
    paths: &HostPaths,
    system_bus: Option<String>,
    poke: mpsc::Sender<()>,
) -> Option<Spawnable> {
    if !cfg.enabled {
        return None;
    }
    let manager = detect(cfg.manager, paths)?;
    let checker = Checker::new(manager, paths, cfg, system_bus);
    if cfg.manager == ManagerChoice::Auto
        && manager != Manager::UpdateEngine
        && !in_path(&checker.program, std::env::var_os("PATH"))
    {
        // The host has the manager, the agent cannot run it: the image
        // carries no apt-get or dnf. "Nothing here", not a failure that
        // would show as unknown forever.
        tracing::info!(
            manager = manager.name(),
            program = %checker.program.display(),
            "OS updates: the host uses this package manager but its program is not in the agent's PATH (the container image); no OS update entities (run the agent natively for them)"
        );
        return None;
    }
    let source = OsUpdatesSource {
        checker,
        title: title(paths),
        first: cfg.first_check_after,
        period: cfg.interval,
        last: None,
        error: None,
    };
    tracing::info!(
        manager = manager.name(),
        "OS updates: checking with this package manager"
    );
    let initial = source.state();
    Some(wire(NAME, initial, poke, move |ctx| source.run(ctx)))
}

#[cfg(test)]
mod tests;
