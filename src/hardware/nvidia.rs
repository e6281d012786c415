//! The `nvidia` source: load, memory, temperature and power of each NVIDIA
//! GPU from `nvidia-smi --query-gpu=… --format=csv,noheader,nounits`, run
//! on its own task with a timeout. A host without `nvidia-smi` has no
//! NVIDIA entities (one info line); a failing or hung `nvidia-smi` (the
//! driver went away, a GPU fell off the bus) makes them unavailable.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Map};
use tokio::sync::mpsc;

use super::{last_line, run_failure, Failure, Latch};
use crate::container::runner::Runner;
use crate::reading::{key, Kind, Reading, Value};
use crate::source::{wire, SourceContext, SourceState, Spawnable};

/// The source's name and availability group.
pub const NAME: &str = "nvidia";

/// What is asked, in this order.
pub const QUERY_ARGS: &[&str] = &[
    "--query-gpu=index,name,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw",
    "--format=csv,noheader,nounits",
];

/// NVIDIA GPUs (`[hardware.nvidia]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NvidiaConfig {
    /// Ask `nvidia-smi` (a host without it has no NVIDIA entities).
    pub enabled: bool,
    /// The program ("nvidia-smi": looked up in PATH).
    pub command: PathBuf,
    /// How often to ask; "0s" means the agent's interval.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Longest one run may take; it is killed after that.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for NvidiaConfig {
    fn default() -> Self {
        NvidiaConfig {
            enabled: true,
            command: PathBuf::from("nvidia-smi"),
            interval: Duration::ZERO,
            timeout: Duration::from_secs(10),
        }
    }
}

/// One GPU as `nvidia-smi` reports it; `None` where it says `[N/A]` or
/// `[Not Supported]` (power on many laptop GPUs, memory on unified-memory
/// parts).
#[derive(Debug, Clone, PartialEq)]
pub struct Gpu {
    /// nvidia-smi's index.
    pub index: u32,
    /// The product name ("NVIDIA GeForce RTX 4080").
    pub name: String,
    /// GPU utilisation, percent.
    pub utilization_percent: Option<f64>,
    /// Memory used, bytes.
    pub memory_used_bytes: Option<u64>,
    /// Memory in total, bytes.
    pub memory_total_bytes: Option<u64>,
    /// Core temperature, °C.
    pub temperature_celsius: Option<f64>,
    /// Board power draw, W.
    pub power_watts: Option<f64>,
}

const MIB: u64 = 1024 * 1024;

/// Parses the CSV of [`QUERY_ARGS`]: one line per GPU, seven fields.
pub fn parse_nvidia_smi(text: &str) -> Result<Vec<Gpu>, String> {
    let number = |s: &str| s.parse::<f64>().ok().filter(|v| v.is_finite());
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            if f.len() != 7 {
                return Err(format!(
                    "expected 7 comma-separated fields, got {}: {line:?}",
                    f.len()
                ));
            }
            let index = f[0]
                .parse()
                .map_err(|_| format!("expected a GPU index, got {:?}", f[0]))?;
            Ok(Gpu {
                index,
                name: f[1].to_string(),
                utilization_percent: number(f[2]),
                memory_used_bytes: number(f[3]).map(|m| m as u64 * MIB),
                memory_total_bytes: number(f[4]).map(|m| m as u64 * MIB),
                temperature_celsius: number(f[5]),
                power_watts: number(f[6]),
            })
        })
        .collect()
}

/// The entities of `gpus`; with `values` false, the same entities with no
/// value (the source is failing).
pub fn readings(gpus: &[Gpu], values: bool) -> Vec<Reading> {
    let mut out = Vec::new();
    for g in gpus {
        let id = format!("nvidia{}", g.index);
        let name = |what: &str| format!("NVIDIA GPU {} {what}", g.index);
        let v = |x: Value| if values { x } else { Value::Missing };
        let mut attrs = Map::new();
        attrs.insert("model".into(), json!(g.name));
        out.push(
            Reading::new(
                key(&["gpu", &id, "load"]),
                name("load"),
                Kind::Percent,
                v(g.utilization_percent.into()),
            )
            .with_attributes(attrs),
        );
        out.push(Reading::new(
            key(&["gpu", &id, "memory_used"]),
            name("memory used"),
            Kind::Bytes,
            v(g.memory_used_bytes.into()),
        ));
        out.push(
            Reading::new(
                key(&["gpu", &id, "memory_total"]),
                name("memory total"),
                Kind::Bytes,
                v(g.memory_total_bytes.into()),
            )
            .diagnostic(),
        );
        out.push(Reading::new(
            key(&["gpu", &id, "temperature"]),
            name("temperature"),
            Kind::Celsius,
            v(g.temperature_celsius.into()),
        ));
        out.push(Reading::new(
            key(&["gpu", &id, "power"]),
            name("power"),
            Kind::Watts,
            v(g.power_watts.into()),
        ));
    }
    out
}

/// Asks `nvidia-smi` on a schedule and keeps the last answer.
pub struct NvidiaSource {
    /// Runs the program with a timeout.
    runner: Runner,
    /// Per run.
    timeout: Duration,
    /// Between runs.
    period: Duration,
    /// The GPUs of the last good run: their entities stay when a run fails.
    gpus: Vec<Gpu>,
    /// Logs failures once.
    latch: Latch,
}

impl NvidiaSource {
    /// A source for `cfg`; `agent_interval` when its interval is "0s".
    pub fn new(cfg: &NvidiaConfig, agent_interval: Duration) -> Self {
        NvidiaSource {
            runner: Runner::new(&cfg.command),
            timeout: cfg.timeout,
            period: if cfg.interval.is_zero() {
                agent_interval
            } else {
                cfg.interval
            },
            gpus: Vec::new(),
            latch: Latch::default(),
        }
    }

    /// What HA gets now.
    pub fn state(&self) -> SourceState {
        // An absent tool is nothing here, not something broken.
        let ok = !matches!(self.latch.failure(), Some(Failure::Failed(_)));
        SourceState {
            available: ok,
            readings: readings(&self.gpus, ok),
        }
    }

    /// Runs `nvidia-smi` once and records the answer.
    pub async fn refresh(&mut self) {
        let outcome = self.query().await.map(|gpus| self.gpus = gpus);
        self.latch.record(NAME, outcome);
    }

    async fn query(&self) -> Result<Vec<Gpu>, Failure> {
        let out = self
            .runner
            .run(QUERY_ARGS, self.timeout)
            .await
            .map_err(|e| run_failure(e, "NVIDIA GPU"))?;
        if !out.status.success() {
            // nvidia-smi explains itself on stdout ("NVIDIA-SMI has failed
            // because it couldn't communicate with the NVIDIA driver…").
            let why = Some(last_line(&out.stderr))
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| last_line(&out.stdout));
            let code = out
                .status
                .code()
                .map_or_else(|| "a signal".into(), |c| c.to_string());
            return Err(Failure::Failed(format!(
                "{} exited with {code}: {why}",
                self.runner.program().display()
            )));
        }
        parse_nvidia_smi(&out.stdout)
            .map_err(|e| Failure::Failed(format!("{}: {e}", self.runner.program().display())))
    }

    /// When to run next: an absent program is looked for again rarely.
    fn next_delay(&self) -> Duration {
        match self.latch.failure() {
            Some(Failure::Absent(_)) => self.period.max(Duration::from_secs(600)),
            _ => self.period,
        }
    }

    /// Runs on schedule, until dropped.
    pub async fn run(mut self, ctx: SourceContext) {
        loop {
            self.refresh().await;
            ctx.publish(self.state(), false);
            // On the agent's ticks, so the run shares their wake-up.
            crate::source::sleep_on_grid(self.next_delay()).await;
        }
    }
}

/// The source wired for the agent.
pub fn spawnable(cfg: &NvidiaConfig, agent_interval: Duration, poke: mpsc::Sender<()>) -> Spawnable {
    let source = NvidiaSource::new(cfg, agent_interval);
    let initial = source.state();
    wire(NAME, initial, poke, move |ctx| source.run(ctx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hardware::testing::{fixture, script, tempdir};

    fn source(program: &std::path::Path, timeout: Duration) -> NvidiaSource {
        let cfg = NvidiaConfig {
            command: program.to_path_buf(),
            timeout,
            ..NvidiaConfig::default()
        };
        NvidiaSource::new(&cfg, Duration::from_secs(30))
    }

    /// A fake nvidia-smi printing a fixture. Each test writes its own
    /// script once: rewriting one that just ran risks ETXTBSY.
    fn cat_fixture(dir: &std::path::Path, name: &str, exit: i32) -> PathBuf {
        let file = fixture(&format!("nvidia/{name}"));
        script(dir, name, &format!("cat '{}'; exit {exit}", file.display()))
    }

    #[test]
    fn an_rtx_4080_reads_as_one_gpu_in_bytes_and_watts() {
        let text = std::fs::read_to_string(fixture("nvidia/rtx4080.csv")).expect("fixture");
        assert_eq!(
            parse_nvidia_smi(&text),
            Ok(vec![Gpu {
                index: 0,
                name: "NVIDIA GeForce RTX 4080".into(),
                utilization_percent: Some(3.0),
                memory_used_bytes: Some(1234 * MIB),
                memory_total_bytes: Some(16376 * MIB),
                temperature_celsius: Some(45.0),
                power_watts: Some(25.37),
            }])
        );
    }

    #[test]
    fn not_available_fields_are_none_and_short_lines_are_errors() {
        let text = std::fs::read_to_string(fixture("nvidia/two-gpus-na.csv")).expect("fixture");
        let gpus = parse_nvidia_smi(&text).expect("parses");
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[1].power_watts, None);
        assert_eq!(gpus[1].index, 1);
        assert!(parse_nvidia_smi("0, name, 1, 2\n").is_err());
        assert!(parse_nvidia_smi("x, name, 1, 2, 3, 4, 5\n").is_err());
        assert_eq!(parse_nvidia_smi(""), Ok(vec![]));
    }

    #[tokio::test]
    async fn a_working_nvidia_smi_gives_available_gpu_entities() {
        let dir = tempdir();
        let mut s = source(
            &cat_fixture(dir.path(), "rtx4080.csv", 0),
            Duration::from_secs(10),
        );
        s.refresh().await;
        let state = s.state();
        assert!(state.available);
        let keys: Vec<_> = state.readings.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "gpu_nvidia0_load",
                "gpu_nvidia0_memory_used",
                "gpu_nvidia0_memory_total",
                "gpu_nvidia0_temperature",
                "gpu_nvidia0_power"
            ]
        );
        assert_eq!(state.readings[4].value, Value::Float(25.37));
        assert_eq!(state.readings[3].kind, Kind::Celsius);
    }

    #[tokio::test]
    async fn a_missing_nvidia_smi_is_no_entities_and_is_looked_for_rarely() {
        let mut s = source(
            std::path::Path::new("/nonexistent/nvidia-smi"),
            Duration::from_secs(1),
        );
        s.refresh().await;
        assert_eq!(
            s.state(),
            SourceState {
                available: true,
                readings: vec![]
            },
            "nothing here is nothing broken"
        );
        assert!(matches!(s.latch.failure(), Some(Failure::Absent(_))));
        assert_eq!(s.next_delay(), Duration::from_secs(600));
    }

    #[tokio::test]
    async fn a_failing_nvidia_smi_keeps_the_entities_unavailable_and_says_why() {
        let dir = tempdir();
        let mut s = source(
            &cat_fixture(dir.path(), "rtx4080.csv", 0),
            Duration::from_secs(10),
        );
        s.refresh().await;
        s.runner = Runner::new(&cat_fixture(dir.path(), "no-driver.txt", 9));
        s.refresh().await;
        let state = s.state();
        assert!(!state.available);
        assert_eq!(state.readings.len(), 5);
        assert!(state.readings.iter().all(|r| r.value == Value::Missing));
        let why = s.latch.failure().expect("failing").message().to_string();
        assert!(
            why.contains("exited with 9") && why.contains("NVIDIA driver"),
            "{why}"
        );
        assert_eq!(s.next_delay(), Duration::from_secs(30));
    }

    #[tokio::test]
    async fn a_hung_nvidia_smi_is_killed_at_the_timeout_and_unavailable() {
        let dir = tempdir();
        let hang = script(dir.path(), "nvidia-smi", "sleep 60");
        let mut s = source(&hang, Duration::from_millis(300));
        s.refresh().await;
        assert!(!s.state().available);
        let why = s.latch.failure().expect("failing").message().to_string();
        assert!(why.contains("killed after"), "{why}");
    }
}
