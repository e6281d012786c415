//! CPU usage: shares of the ticks counted in `<proc>/stat` between two
//! cycles. The counters only grow, so one sample says nothing; the first
//! cycle reports every reading as missing rather than a since-boot average.

use std::collections::BTreeMap;

use procfs_core::{ExplicitSystemInfo, FromReadSI, KernelStats, ProcError};

use serde::Deserialize;

use super::CollectorSection;
use super::{CollectError, Collector, ProcFile, Tick};
use crate::context::Context;
use crate::host::HostPaths;
use crate::reading::{key, Kind, Reading};

/// Reports CPU usage, iowait and steal, optionally per core.
#[derive(Debug)]
pub struct CpuCollector {
    /// `<proc>/stat`, kept open.
    stat: ProcFile,
    /// Also one usage reading per core.
    per_core: bool,
    /// The previous cycle's counters; `None` until the first cycle.
    prev: Option<CpuSample>,
}

/// Tick counters of one read of /proc/stat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuSample {
    /// All CPUs together (the `cpu` line).
    pub all: CpuTicks,
    /// Each online core by its number (`cpuN`); offline cores have no line,
    /// so numbers can have gaps.
    pub cores: BTreeMap<u32, CpuTicks>,
}

/// The counters of one `cpu` line that usage is computed from, in ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTicks {
    /// Every tick, except guest time which the kernel already counts in user
    /// and nice (adding it again would count it twice).
    pub total: u64,
    /// Idle with nothing waiting.
    pub idle: u64,
    /// Idle while some task waited for I/O.
    pub iowait: u64,
    /// Taken by the hypervisor for someone else.
    pub steal: u64,
}

/// Shares of the ticks between two samples, 0–100.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuShares {
    /// Neither idle nor iowait.
    pub usage_percent: f64,
    /// Idle while waiting for I/O.
    pub iowait_percent: f64,
    /// Stolen by the hypervisor.
    pub steal_percent: f64,
}

impl CpuCollector {
    /// A collector reading `<proc>/stat`.
    pub fn new(paths: HostPaths, config: &CpuConfig) -> Self {
        CpuCollector {
            stat: ProcFile::new(paths.proc("stat")),
            per_core: config.per_core,
            prev: None,
        }
    }
}

impl Collector for CpuCollector {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn collect(&mut self, _tick: &Tick, out: &mut Vec<Reading>) -> Result<(), CollectError> {
        let (path, text) = self.stat.read_with_path()?;
        let sample = parse_cpu_sample(text).map_err(|e| CollectError::parse(path, e))?;
        let prev = self.prev.as_ref();
        let shares = prev.and_then(|p| compute_shares(&p.all, &sample.all));
        out.extend(cpu_readings(shares));
        if self.per_core {
            for (n, now) in &sample.cores {
                let before = prev.and_then(|p| p.cores.get(n));
                let usage = before
                    .and_then(|b| compute_shares(b, now))
                    .map(|s| s.usage_percent);
                out.push(Reading::new(
                    key(&["cpu", &format!("core{n}"), "usage"]),
                    format!("CPU core {n} usage"),
                    Kind::Percent,
                    usage,
                ));
            }
        }
        self.prev = Some(sample);
        Ok(())
    }
}

/// The machine-wide readings; all missing without two samples.
fn cpu_readings(shares: Option<CpuShares>) -> [Reading; 3] {
    [
        Reading::new(
            "cpu_usage",
            "CPU usage",
            Kind::Percent,
            shares.map(|s| s.usage_percent),
        ),
        Reading::new(
            "cpu_iowait",
            "CPU iowait",
            Kind::Percent,
            shares.map(|s| s.iowait_percent),
        ),
        Reading::new(
            "cpu_steal",
            "CPU steal",
            Kind::Percent,
            shares.map(|s| s.steal_percent),
        ),
    ]
}

/// Parses /proc/stat with procfs-core. The tick rate it asks for only
/// matters for its millisecond helpers, which we do not use: we work in
/// raw ticks, and boot time is read from the parsed `btime`.
pub fn parse_stat(text: &str) -> Result<KernelStats, ProcError> {
    let info = ExplicitSystemInfo {
        boot_time_secs: 0,
        ticks_per_second: 100,
        page_size: 4096,
        is_little_endian: cfg!(target_endian = "little"),
    };
    KernelStats::from_read(text.as_bytes(), &info)
}

/// The counters of the `cpu` and `cpuN` lines of /proc/stat. They come
/// first in the file; the rest (the long `intr` line above all) is not
/// looked at.
pub fn parse_cpu_sample(text: &str) -> Result<CpuSample, String> {
    let mut all = None;
    let mut cores = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("cpu") else {
            break;
        };
        match rest.strip_prefix(' ') {
            Some(counters) => all = Some(parse_cpu_ticks(counters)?),
            None => {
                // `cpuN`: the number is read from the line, so a gap (an
                // offline core) does not shift later cores.
                let (n, counters) = rest.split_once(' ').unwrap_or((rest, ""));
                if let Ok(n) = n.parse::<u32>() {
                    cores.insert(n, parse_cpu_ticks(counters)?);
                }
            }
        }
    }
    Ok(CpuSample {
        all: all.ok_or("no cpu line")?,
        cores,
    })
}

/// The counters of one `cpu` line (`user nice system idle iowait irq
/// softirq steal guest guest_nice`, in ticks); fields older kernels lack
/// count as zero. Guest time is left out of the total: the kernel already
/// counts it in user and nice (adding it again would count it twice).
fn parse_cpu_ticks(counters: &str) -> Result<CpuTicks, String> {
    let mut fields = [0u64; 8];
    let mut seen = 0;
    for (slot, field) in fields.iter_mut().zip(counters.split_ascii_whitespace()) {
        *slot = field.parse().map_err(|_| format!("not a tick count: {field}"))?;
        seen += 1;
    }
    if seen < 4 {
        return Err(format!("too few fields in a cpu line: {counters}"));
    }
    let [_, _, _, idle, iowait, _, _, steal] = fields;
    Ok(CpuTicks {
        total: fields.iter().fold(0u64, |sum, v| sum.saturating_add(*v)),
        idle,
        iowait,
        steal,
    })
}

/// Usage, iowait and steal as shares of the ticks between `prev` and `now`.
/// `None` when no tick passed or the total went backwards (a core came back
/// online with fresh counters): no number beats a wrong one.
pub fn compute_shares(prev: &CpuTicks, now: &CpuTicks) -> Option<CpuShares> {
    let total = now.total.checked_sub(prev.total).filter(|t| *t > 0)?;
    // iowait may decrease (proc(5)); the ticks move to idle, so the sum of
    // the two is what stays monotonic.
    let idle = now
        .idle
        .saturating_add(now.iowait)
        .saturating_sub(prev.idle.saturating_add(prev.iowait));
    let busy = total.saturating_sub(idle);
    let iowait = now.iowait.saturating_sub(prev.iowait).min(total);
    let steal = now.steal.saturating_sub(prev.steal).min(total);
    let share = |part: u64| part as f64 / total as f64 * 100.0;
    Some(CpuShares {
        usage_percent: share(busy),
        iowait_percent: share(iowait),
        steal_percent: share(steal),
    })
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

impl CollectorSection for CpuConfig {
    fn build(&self, cx: &Context) -> Option<Box<dyn super::Collector>> {
        self.enabled
            .then(|| Box::new(CpuCollector::new(cx.paths.clone(), self)) as Box<dyn super::Collector>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testing::*;
    use crate::reading::Value;
    use std::time::Instant;

    fn read_fixture(rel: &str) -> String {
        std::fs::read_to_string(fixture(rel)).expect("fixture")
    }

    #[test]
    fn parse_cpu_sample_reads_the_captured_totals_and_cores() {
        let sample = parse_cpu_sample(&read_fixture("proc/vm/t0/stat")).expect("parse");
        assert_eq!(
            sample.all,
            CpuTicks {
                total: 60384,
                idle: 33156,
                iowait: 379,
                steal: 28
            }
        );
        assert_eq!(sample.cores.keys().copied().collect::<Vec<_>>(), [0, 1]);
        assert_eq!(sample.cores.get(&1).map(|c| c.idle), Some(17343));
    }

    #[test]
    fn parse_cpu_sample_keeps_core_numbers_across_an_offline_core() {
        let text = "cpu  10 0 10 80 0 0 0 0 0 0\ncpu0 5 0 5 40 0 0 0 0 0 0\ncpu2 5 0 5 40 0 0 0 0 0 0\n\
                    ctxt 1\nbtime 1\nprocesses 1\n";
        let sample = parse_cpu_sample(text).expect("parse");
        assert_eq!(sample.cores.keys().copied().collect::<Vec<_>>(), [0, 2]);
    }

    #[test]
    fn parse_cpu_sample_rejects_a_stat_without_cpu_line() {
        assert!(parse_cpu_sample("ctxt 1\nbtime 1\nprocesses 1\n").is_err());
        assert!(parse_cpu_sample("").is_err());
    }

    #[test]
    fn compute_shares_is_none_when_no_tick_passed_or_counters_reset() {
        let a = CpuTicks {
            total: 100,
            idle: 50,
            iowait: 0,
            steal: 0,
        };
        assert_eq!(compute_shares(&a, &a), None);
        let reset = CpuTicks { total: 10, ..a };
        assert_eq!(compute_shares(&a, &reset), None);
    }

    #[test]
    fn compute_shares_tolerates_iowait_going_backwards() {
        let prev = CpuTicks {
            total: 100,
            idle: 50,
            iowait: 10,
            steal: 0,
        };
        let now = CpuTicks {
            total: 200,
            idle: 145,
            iowait: 5,
            steal: 0,
        };
        let s = compute_shares(&prev, &now).expect("shares");
        assert_eq!(s.usage_percent, 10.0);
        assert_eq!(s.iowait_percent, 0.0);
    }

    #[test]
    fn cpu_usage_is_missing_on_first_tick() {
        let mut c = CpuCollector::new(
            fixture_paths("proc/vm/t0", "sys/vm", "root/vm"),
            &CpuConfig::default(),
        );
        let out = collect_once(&mut c, &tick_at(Instant::now(), 0));
        assert_eq!(
            keyed_values(&out),
            [
                ("cpu_usage".to_string(), Value::Missing),
                ("cpu_iowait".to_string(), Value::Missing),
                ("cpu_steal".to_string(), Value::Missing),
            ]
        );
        assert_eq!(out.first().map(|r| r.name.as_str()), Some("CPU usage"));
    }

    #[test]
    fn two_cycles_give_shares_of_the_ticks_between_them_per_core_too() {
        let config = CpuConfig {
            enabled: true,
            per_core: true,
        };
        let start = Instant::now();
        let mut c = CpuCollector::new(fixture_paths("proc/vm/t0", "sys/vm", "root/vm"), &config);
        let first = collect_once(&mut c, &tick_at(start, 0));
        assert!(first.iter().all(|r| r.value == Value::Missing), "{first:?}");
        c.stat = ProcFile::new(fixture_paths("proc/vm/t1", "sys/vm", "root/vm").proc("stat"));
        let out = collect_once(&mut c, &tick_at(start, 10));

        let keys: Vec<_> = out.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "cpu_usage",
                "cpu_iowait",
                "cpu_steal",
                "cpu_core0_usage",
                "cpu_core1_usage"
            ]
        );
        assert_eq!(out.get(3).map(|r| r.name.as_str()), Some("CPU core 0 usage"));
        // Deltas of the captured `cpu` lines: 2311 ticks, 1126 idle+iowait,
        // 8 iowait, 1 steal; cpu0 1153 ticks of which 963 idle; cpu1 1159/164.
        assert_close(&value_of(&out, "cpu_usage"), 1185.0 / 2311.0 * 100.0);
        assert_close(&value_of(&out, "cpu_iowait"), 8.0 / 2311.0 * 100.0);
        assert_close(&value_of(&out, "cpu_steal"), 1.0 / 2311.0 * 100.0);
        assert_close(&value_of(&out, "cpu_core0_usage"), 190.0 / 1153.0 * 100.0);
        assert_close(&value_of(&out, "cpu_core1_usage"), 995.0 / 1159.0 * 100.0);
    }
}
