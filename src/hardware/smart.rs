//! The `smart` source: disk health from `smartctl --json` on a slow
//! schedule (hourly by default, the first check shortly after start), each
//! run with a timeout, never on the cycle path.
//!
//! Per disk: SMART overall health (a `problem` binary sensor, on when the
//! drive says it is failing or a pre-failure attribute crossed its
//! threshold), the temperature, and for NVMe the critical warning byte
//! (decoded into attributes) and "percentage used" (wear). The disks come
//! from `smartctl --scan --json`, or from the config.
//!
//! smartctl's exit status is a bit mask (smartctl(8), "RETURN VALUES"):
//! bits 0–1 mean it could not ask the disk at all; bits 2–7 are findings
//! reported next to a usable answer. Opening a disk needs root (or
//! CAP_SYS_RAWIO, and CAP_SYS_ADMIN for NVMe): when every disk says
//! "Permission denied" there is one log line saying so, and the group is
//! unavailable.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Map};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};

use super::{run_failure, Failure, Latch};
use crate::container::runner::Runner;
use crate::reading::{key, Kind, Reading, Value};
use crate::source::{wire, SourceContext, SourceState, Spawnable};

/// The source's name and availability group.
pub const NAME: &str = "smart";

/// Disk health (`[hardware.smart]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmartConfig {
    /// Ask `smartctl` (a host without it has no disk health entities).
    pub enabled: bool,
    /// The program ("smartctl": looked up in PATH).
    pub command: PathBuf,
    /// The disks to check, such as "/dev/sda". Empty: what
    /// `smartctl --scan` finds. From the environment: comma-separated.
    #[serde(deserialize_with = "crate::context::comma_list")]
    pub devices: Vec<String>,
    /// How often to check.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// The first check after the agent starts.
    #[serde(with = "humantime_serde")]
    pub first_check_after: Duration,
    /// Longest one smartctl run may take; it is killed after that.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for SmartConfig {
    fn default() -> Self {
        SmartConfig {
            enabled: true,
            command: PathBuf::from("smartctl"),
            devices: Vec::new(),
            interval: Duration::from_secs(3600),
            first_check_after: Duration::from_secs(20),
            timeout: Duration::from_secs(30),
        }
    }
}

/// smartctl's exit-status bits 2–7: what it found next to an answer.
const FINDINGS: [(u8, &str); 6] = [
    (
        2,
        "a SMART command failed or a data structure had a checksum error",
    ),
    (3, "SMART status: disk failing"),
    (4, "pre-failure attributes at or below threshold"),
    (5, "attributes were at or below threshold in the past"),
    (6, "the error log has errors"),
    (7, "the self-test log has errors"),
];

/// The findings of an exit status, in words.
pub fn exit_findings(status: u8) -> Vec<&'static str> {
    FINDINGS
        .iter()
        .filter(|(bit, _)| status & (1 << bit) != 0)
        .map(|(_, what)| *what)
        .collect()
}

/// NVMe critical warning bits (NVMe base spec, SMART / Health log byte 0).
const CRITICAL_WARNINGS: [(u8, &str); 6] = [
    (0, "available spare below threshold"),
    (1, "temperature outside its thresholds"),
    (2, "reliability degraded"),
    (3, "media in read-only mode"),
    (4, "volatile memory backup failed"),
    (5, "persistent memory region read-only"),
];

/// The NVMe critical warning byte, in words.
pub fn critical_warnings(byte: u8) -> Vec<&'static str> {
    CRITICAL_WARNINGS
        .iter()
        .filter(|(bit, _)| byte & (1 << bit) != 0)
        .map(|(_, what)| *what)
        .collect()
}

/// One disk as smartctl describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskHealth {
    /// The device path ("/dev/sda").
    pub device: String,
    /// The model name.
    pub model: Option<String>,
    /// "ATA", "NVMe", "SCSI".
    pub protocol: Option<String>,
    /// SMART overall health: `Some(false)` is "failing".
    pub passed: Option<bool>,
    /// Current temperature, °C.
    pub temperature_celsius: Option<f64>,
    /// NVMe critical warning byte.
    pub critical_warning: Option<u8>,
    /// NVMe "percentage used" (may exceed 100).
    pub percentage_used: Option<u64>,
    /// smartctl's exit-status bit mask.
    pub exit_status: u8,
}

impl DiskHealth {
    /// Whether the health entity shows a problem.
    pub fn problem(&self) -> Option<bool> {
        let failing_bits = self.exit_status & 0b1_1000 != 0;
        match self.passed {
            Some(passed) => Some(!passed || failing_bits),
            None => failing_bits.then_some(true),
        }
    }
}

/// Why smartctl could not describe a disk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmartError {
    /// The disk could not be opened for lack of privilege.
    #[error("{0}")]
    PermissionDenied(String),
    /// Any other reason (no such device, unknown USB bridge, not JSON).
    #[error("{0}")]
    Other(String),
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Report {
    smartctl: Meta,
    device: Option<Device>,
    model_name: Option<String>,
    smart_status: Option<Status>,
    temperature: Option<Temperature>,
    nvme_smart_health_information_log: Option<NvmeLog>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Meta {
    exit_status: Option<u8>,
    messages: Vec<Message>,
}

#[derive(Deserialize)]
struct Message {
    string: String,
}

#[derive(Deserialize)]
struct Device {
    name: String,
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    protocol: Option<String>,
}

#[derive(Deserialize)]
struct Status {
    passed: Option<bool>,
}

#[derive(Deserialize)]
struct Temperature {
    current: Option<f64>,
}

#[derive(Deserialize)]
struct NvmeLog {
    critical_warning: Option<u8>,
    percentage_used: Option<u64>,
}

/// One disk `smartctl --scan` found: its path and `--device` type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedDevice {
    /// "/dev/sda".
    pub name: String,
    /// "scsi", "nvme", "sat", "megaraid,0"…
    pub kind: String,
}

/// Parses `smartctl --scan --json`.
pub fn parse_scan(text: &str) -> Result<Vec<ScannedDevice>, String> {
    #[derive(Deserialize)]
    struct Scan {
        #[serde(default)]
        devices: Vec<Device>,
    }
    let scan: Scan = serde_json::from_str(text).map_err(|e| format!("smartctl --scan: {e}"))?;
    Ok(scan
        .devices
        .into_iter()
        .map(|d| ScannedDevice {
            name: d.name,
            kind: d.kind,
        })
        .collect())
}

/// Parses `smartctl --json --info --health --attributes DEVICE`.
/// `process_status` is the exit code, used when the JSON lacks its own.
pub fn parse_smartctl(
    device: &str,
    text: &str,
    process_status: Option<i32>,
) -> Result<DiskHealth, SmartError> {
    let report: Report = serde_json::from_str(text)
        .map_err(|e| SmartError::Other(format!("smartctl {device}: not JSON ({e})")))?;
    let exit_status = report
        .smartctl
        .exit_status
        .or_else(|| process_status.and_then(|c| u8::try_from(c).ok()))
        .unwrap_or(0);
    // Bits 0–1: it could not ask the disk at all.
    if exit_status & 0b11 != 0 || report.smart_status.is_none() && report.temperature.is_none() {
        let said: Vec<&str> = report
            .smartctl
            .messages
            .iter()
            .map(|m| m.string.as_str())
            .collect();
        let said = if said.is_empty() {
            format!("exit status {exit_status}")
        } else {
            said.join("; ")
        };
        let message = format!("smartctl {device}: {said}");
        return Err(
            if said.contains("Permission denied") || said.contains("Operation not permitted") {
                SmartError::PermissionDenied(message)
            } else {
                SmartError::Other(message)
            },
        );
    }
    let nvme = report.nvme_smart_health_information_log;
    Ok(DiskHealth {
        device: report
            .device
            .as_ref()
            .map_or_else(|| device.to_string(), |d| d.name.clone()),
        model: report.model_name,
        protocol: report.device.and_then(|d| d.protocol),
        passed: report.smart_status.and_then(|s| s.passed),
        temperature_celsius: report.temperature.and_then(|t| t.current),
        critical_warning: nvme.as_ref().and_then(|n| n.critical_warning),
        percentage_used: nvme.and_then(|n| n.percentage_used),
        exit_status,
    })
}

/// The entities of one disk; `values` false gives the same entities with
/// no value (this check could not read it).
pub fn disk_readings(d: &DiskHealth, values: bool) -> Vec<Reading> {
    let dev = d.device.rsplit('/').next().unwrap_or(&d.device);
    let v = |x: Value| if values { x } else { Value::Missing };
    let mut attrs = Map::new();
    attrs.insert("device".into(), json!(d.device));
    if let Some(m) = &d.model {
        attrs.insert("model".into(), json!(m));
    }
    attrs.insert("smartctl_findings".into(), json!(exit_findings(d.exit_status)));
    let mut out = vec![Reading::new(
        key(&["smart", dev, "health"]),
        format!("Disk {dev} health"),
        Kind::Problem,
        v(d.problem().map_or(Value::Missing, Value::Bool)),
    )
    .with_attributes(attrs)];
    if d.temperature_celsius.is_some() {
        out.push(Reading::new(
            key(&["smart", dev, "temperature"]),
            format!("Disk {dev} temperature"),
            Kind::Celsius,
            v(d.temperature_celsius.into()),
        ));
    }
    if let Some(byte) = d.critical_warning {
        let mut attrs = Map::new();
        attrs.insert("warnings".into(), json!(critical_warnings(byte)));
        out.push(
            Reading::new(
                key(&["smart", dev, "critical_warning"]),
                format!("Disk {dev} critical warning"),
                Kind::Problem,
                v(Value::Bool(byte != 0)),
            )
            .with_attributes(attrs),
        );
    }
    if let Some(used) = d.percentage_used {
        out.push(Reading::new(
            key(&["smart", dev, "wear"]),
            format!("Disk {dev} wear"),
            Kind::Percent,
            v(Value::Float(used as f64)),
        ));
    }
    out
}

/// Checks the disks on a schedule and keeps the last answers.
pub struct SmartSource {
    /// Runs smartctl with a timeout.
    runner: Runner,
    /// Per run.
    timeout: Duration,
    /// After start.
    first: Duration,
    /// Between checks.
    period: Duration,
    /// Configured disks; empty: scan.
    devices: Vec<String>,
    /// The last good answer per disk: entities stay while a disk fails.
    disks: BTreeMap<String, DiskHealth>,
    /// Disks whose latest check failed, with why.
    failing: BTreeMap<String, String>,
    /// Logs the whole source's failures once.
    latch: Latch,
}

impl SmartSource {
    /// A source for `cfg`.
    pub fn new(cfg: &SmartConfig) -> Self {
        SmartSource {
            runner: Runner::new(&cfg.command),
            timeout: cfg.timeout,
            first: cfg.first_check_after,
            period: cfg.interval,
            devices: cfg.devices.clone(),
            disks: BTreeMap::new(),
            failing: BTreeMap::new(),
            latch: Latch::default(),
        }
    }

    /// What HA gets now.
    pub fn state(&self) -> SourceState {
        // An absent tool is nothing here, not something broken.
        let ok = !matches!(self.latch.failure(), Some(Failure::Failed(_)));
        SourceState {
            available: ok,
            readings: self
                .disks
                .values()
                .flat_map(|d| disk_readings(d, ok && !self.failing.contains_key(&d.device)))
                .collect(),
        }
    }

    /// The disks to check: configured, or scanned.
    async fn targets(&self) -> Result<Vec<ScannedDevice>, Failure> {
        if !self.devices.is_empty() {
            return Ok(self
                .devices
                .iter()
                .map(|d| ScannedDevice {
                    name: d.clone(),
                    kind: String::new(),
                })
                .collect());
        }
        let out = self
            .runner
            .run(&["--scan", "--json"], self.timeout)
            .await
            .map_err(|e| run_failure(e, "disk health"))?;
        parse_scan(&out.stdout).map_err(Failure::Failed)
    }

    /// Asks smartctl about one disk.
    async fn check(&self, target: &ScannedDevice) -> Result<DiskHealth, SmartError> {
        let device_arg = format!("--device={}", target.kind);
        let mut args = vec!["--json", "--info", "--health", "--attributes"];
        // --scan calls a SATA disk "scsi"; smartctl's own probe then finds
        // the SAT layer, which `--device=scsi` would skip.
        if !target.kind.is_empty() && target.kind != "scsi" {
            args.push(&device_arg);
        }
        args.push(&target.name);
        let out = self
            .runner
            .run(&args, self.timeout)
            .await
            .map_err(|e| SmartError::Other(e.to_string()))?;
        parse_smartctl(&target.name, &out.stdout, out.status.code())
    }

    /// Checks every disk once and records the answers.
    pub async fn refresh(&mut self) {
        let outcome = self.check_all().await;
        self.latch.record(NAME, outcome);
    }

    async fn check_all(&mut self) -> Result<(), Failure> {
        let targets = self.targets().await?;
        let mut errors = Vec::new();
        let mut answered = 0;
        self.disks
            .retain(|name, _| targets.iter().any(|t| &t.name == name));
        for target in &targets {
            match self.check(target).await {
                Ok(health) => {
                    answered += 1;
                    if let Some(was) = self.failing.remove(&target.name) {
                        tracing::info!(source = NAME, device = %target.name, previous_error = %was, "disk answers again");
                    }
                    self.disks.insert(target.name.clone(), health);
                }
                Err(e) => {
                    if !self.failing.contains_key(&target.name) && !self.disks.is_empty() {
                        tracing::warn!(source = NAME, device = %target.name, error = %e, "cannot check this disk");
                    }
                    self.failing.insert(target.name.clone(), e.to_string());
                    errors.push(e);
                }
            }
        }
        if answered > 0 || errors.is_empty() {
            return Ok(());
        }
        if errors
            .iter()
            .any(|e| matches!(e, SmartError::PermissionDenied(_)))
        {
            return Err(Failure::Failed(format!(
                "smartctl cannot open the disks: permission denied ({}); disk health needs host2mqtt to run as root, or with CAP_SYS_RAWIO and CAP_SYS_ADMIN",
                targets.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        Err(Failure::Failed(
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        ))
    }

    /// Checks on schedule, until dropped.
    pub async fn run(mut self, ctx: SourceContext) {
        // "Not checked yet" is an answer: nobody waits for the first check.
        ctx.publish(self.state(), false);
        sleep_until(Instant::now() + self.first).await;
        loop {
            self.refresh().await;
            ctx.publish(self.state(), true);
            // On the agent's ticks, so the check shares their wake-up.
            crate::source::sleep_on_grid(self.period).await;
        }
    }
}

/// The source wired for the agent.
pub fn spawnable(cfg: &SmartConfig, poke: mpsc::Sender<()>) -> Spawnable {
    let source = SmartSource::new(cfg);
    let initial = source.state();
    wire(NAME, initial, poke, move |ctx| source.run(ctx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::testing::{fixture, script, tempdir};

    fn text(name: &str) -> String {
        std::fs::read_to_string(fixture(&format!("smartctl/{name}"))).expect("fixture")
    }

    /// A fake smartctl answering the scan and each disk with a fixture.
    fn fake(dir: &std::path::Path, name: &str, sda: &str, nvme: &str, sda_exit: i32) -> PathBuf {
        let f = |n: &str| fixture(&format!("smartctl/{n}")).display().to_string();
        script(
            dir,
            name,
            &format!(
                "case \"$*\" in\n*--scan*) cat '{}';;\n*/dev/sda*) cat '{}'; exit {sda_exit};;\n*/dev/nvme0*) cat '{}';;\nesac",
                f("scan.json"),
                f(sda),
                f(nvme)
            ),
        )
    }

    fn source(program: &std::path::Path, timeout: Duration) -> SmartSource {
        SmartSource::new(&SmartConfig {
            command: program.to_path_buf(),
            timeout,
            ..SmartConfig::default()
        })
    }

    #[test]
    fn a_healthy_sata_disk_passes_with_its_temperature() {
        let d = parse_smartctl("/dev/sda", &text("sda.json"), Some(0)).expect("parses");
        assert_eq!(d.model.as_deref(), Some("WDC WD140EDFZ-11A0VA0"));
        assert_eq!((d.passed, d.problem()), (Some(true), Some(false)));
        assert_eq!(d.temperature_celsius, Some(32.0));
        assert_eq!((d.critical_warning, d.percentage_used), (None, None));
    }

    #[test]
    fn a_failing_sata_disk_is_a_problem_and_its_exit_bits_are_named() {
        let d = parse_smartctl("/dev/sda", &text("sda-failing.json"), Some(24)).expect("parses");
        assert_eq!(d.problem(), Some(true));
        assert_eq!(
            exit_findings(d.exit_status),
            [
                "SMART status: disk failing",
                "pre-failure attributes at or below threshold"
            ]
        );
    }

    #[test]
    fn an_nvme_disk_reports_wear_and_critical_warning() {
        let ok = parse_smartctl("/dev/nvme0", &text("nvme0.json"), Some(0)).expect("parses");
        assert_eq!((ok.critical_warning, ok.percentage_used), (Some(0), Some(3)));
        let bad = parse_smartctl("/dev/nvme0", &text("nvme0-degraded.json"), Some(8)).expect("parses");
        assert_eq!(
            critical_warnings(bad.critical_warning.unwrap_or(0)),
            ["reliability degraded"]
        );
        let r = disk_readings(&bad, true);
        let keys: Vec<_> = r.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "smart_nvme0_health",
                "smart_nvme0_temperature",
                "smart_nvme0_critical_warning",
                "smart_nvme0_wear"
            ]
        );
        assert_eq!(r[0].value, Value::Bool(true));
        assert_eq!(r[2].value, Value::Bool(true));
        assert_eq!(r[3].value, Value::Float(97.0));
        assert_eq!(r[0].name, "Disk nvme0 health");
    }

    #[test]
    fn permission_denied_and_garbage_are_errors_not_healthy_disks() {
        assert!(matches!(
            parse_smartctl("/dev/sda", &text("denied.json"), Some(2)),
            Err(SmartError::PermissionDenied(m)) if m.contains("/dev/sda")
        ));
        assert!(matches!(
            parse_smartctl("/dev/sda", "", Some(0)),
            Err(SmartError::Other(_))
        ));
        assert!(matches!(
            parse_smartctl("/dev/sda", "{}", Some(0)),
            Err(SmartError::Other(_))
        ));
    }

    #[test]
    fn the_scan_lists_devices_with_their_types() {
        assert_eq!(
            parse_scan(&text("scan.json")),
            Ok(vec![
                ScannedDevice {
                    name: "/dev/sda".into(),
                    kind: "scsi".into()
                },
                ScannedDevice {
                    name: "/dev/nvme0".into(),
                    kind: "nvme".into()
                },
            ])
        );
    }

    #[tokio::test]
    async fn a_check_through_a_fake_smartctl_gives_every_disk() {
        let dir = tempdir();
        let mut s = source(
            &fake(dir.path(), "smartctl", "sda.json", "nvme0.json", 0),
            Duration::from_secs(10),
        );
        s.refresh().await;
        let state = s.state();
        assert!(state.available);
        let keys: Vec<_> = state.readings.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "smart_nvme0_health",
                "smart_nvme0_temperature",
                "smart_nvme0_critical_warning",
                "smart_nvme0_wear",
                "smart_sda_health",
                "smart_sda_temperature",
            ]
        );
    }

    #[tokio::test]
    async fn one_unreadable_disk_keeps_its_entities_without_values() {
        let dir = tempdir();
        let mut s = source(
            &fake(dir.path(), "good", "sda.json", "nvme0.json", 0),
            Duration::from_secs(10),
        );
        s.refresh().await;
        s.runner = Runner::new(&fake(dir.path(), "sda-denied", "denied.json", "nvme0.json", 2));
        s.refresh().await;
        let state = s.state();
        assert!(state.available);
        let sda: Vec<_> = state
            .readings
            .iter()
            .filter(|r| r.key.starts_with("smart_sda"))
            .collect();
        assert_eq!(sda.len(), 2);
        assert!(sda.iter().all(|r| r.value == Value::Missing));
        assert!(s.failing.contains_key("/dev/sda"));
    }

    #[tokio::test]
    async fn permission_denied_everywhere_is_one_clear_failure_and_unavailable() {
        let dir = tempdir();
        let mut s = source(
            &fake(dir.path(), "smartctl", "denied.json", "denied.json", 2),
            Duration::from_secs(10),
        );
        s.refresh().await;
        assert!(!s.state().available);
        let why = s.latch.failure().expect("failing").message().to_string();
        assert!(
            why.contains("permission denied") && why.contains("CAP_SYS_RAWIO"),
            "{why}"
        );
    }

    #[tokio::test]
    async fn a_missing_smartctl_is_absent_not_failed() {
        let mut s = source(
            std::path::Path::new("/nonexistent/smartctl"),
            Duration::from_secs(1),
        );
        s.refresh().await;
        assert!(matches!(s.latch.failure(), Some(Failure::Absent(_))));
        assert_eq!(s.state().readings, vec![]);
        assert!(s.state().available, "nothing here is nothing broken");
    }

    #[tokio::test]
    async fn a_hung_smartctl_is_killed_at_the_timeout() {
        let dir = tempdir();
        let hang = script(dir.path(), "smartctl", "sleep 60");
        let mut s = source(&hang, Duration::from_millis(300));
        s.refresh().await;
        assert!(!s.state().available);
        let why = s.latch.failure().expect("failing").message().to_string();
        assert!(why.contains("killed after"), "{why}");
    }
}
