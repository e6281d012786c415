//! The host's OOM kills: the `oom_kill` counter of `<proc>/vmstat` (Linux
//! 4.13 and later), which counts every process the kernel's OOM killer
//! ended since boot, cgroup limits included. A total that only grows, so
//! HA's statistics show "kills per day"; older kernels have no such line,
//! and then there is nothing to report.

use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{CollectError, Collector, ProcFile, Tick};
use crate::host::HostPaths;
use crate::reading::{Kind, Reading};

/// OOM kills (`[collectors.oom]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OomConfig {
    /// Collect this.
    pub enabled: bool,
}

impl Default for OomConfig {
    fn default() -> Self {
        OomConfig { enabled: true }
    }
}

/// How long a count is reported before /proc/vmstat is read again. The
/// kernel sums ~180 counters over every CPU to write the file (34 µs, a
/// tenth of a cycle's kernel time, issue 13) for the one line we use; a
/// kill shows within a minute.
const VMSTAT_REFRESH: Duration = Duration::from_secs(60);

/// The `oom_kill` count in a vmstat file, `None` where the kernel has none.
pub fn parse_vmstat_oom_kill(text: &str) -> Option<u64> {
    let at = if text.starts_with("oom_kill ") {
        0
    } else {
        text.find("\noom_kill ")? + 1
    };
    let rest = text.get(at + "oom_kill ".len()..)?;
    rest.split('\n').next()?.trim().parse().ok()
}

/// Reports the host's OOM kill count.
#[derive(Debug)]
pub struct OomCollector {
    /// `<proc>/vmstat`, kept open.
    vmstat: ProcFile,
    /// The last count (`None`: the kernel has none) and when it was read.
    last: Option<(Instant, Option<u64>)>,
}

impl OomCollector {
    /// A collector reading `<proc>/vmstat`.
    pub fn new(paths: HostPaths, _cfg: &OomConfig) -> Self {
        OomCollector {
            vmstat: ProcFile::new(paths.proc("vmstat")),
            last: None,
        }
    }
}

impl Collector for OomCollector {
    fn name(&self) -> &'static str {
        "oom"
    }

    fn collect(&mut self, tick: &Tick, out: &mut Vec<Reading>) -> Result<(), CollectError> {
        let kills = match self.last {
            Some((at, kills)) if tick.mono.saturating_duration_since(at) < VMSTAT_REFRESH => kills,
            _ => {
                let kills = self.vmstat.read_optional()?.and_then(parse_vmstat_oom_kill);
                self.last = Some((tick.mono, kills));
                kills
            }
        };
        if let Some(kills) = kills {
            out.push(Reading::new("oom_kills", "OOM kills", Kind::Total, kills));
        }
        Ok(())
    }
}

impl super::CollectorSection for OomConfig {
    fn build(&self, cx: &crate::context::Context) -> Option<Box<dyn Collector>> {
        self.enabled
            .then(|| Box::new(OomCollector::new(cx.paths.clone(), self)) as Box<dyn Collector>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testing::*;
    use crate::reading::Value;
    use std::time::Instant;

    #[test]
    fn the_captured_vmstat_has_one_oom_kill() {
        let mut c = OomCollector::new(
            fixture_paths("proc/oom", "sys/vm", "root/vm"),
            &OomConfig::default(),
        );
        let out = collect_once(&mut c, &tick_at(Instant::now(), 0));
        assert_eq!(keyed_values(&out), [("oom_kills".to_string(), Value::Int(1))]);
        assert_eq!(out[0].kind, Kind::Total);
    }

    #[test]
    fn no_vmstat_or_no_oom_kill_line_is_no_reading() {
        let mut c = OomCollector::new(
            fixture_paths("proc/vm/t0", "sys/vm", "root/vm"),
            &OomConfig::default(),
        );
        assert_eq!(collect_once(&mut c, &tick_at(Instant::now(), 0)), []);
        assert_eq!(parse_vmstat_oom_kill("nr_free_pages 1\npgfault 2\n"), None);
        assert_eq!(parse_vmstat_oom_kill("oom_kill 12\n"), Some(12));
        assert_eq!(parse_vmstat_oom_kill("oom_kill x\n"), None);
        assert_eq!(parse_vmstat_oom_kill("a 1\noom_kill 3\noom_kill_x 4\n"), Some(3));
        assert_eq!(parse_vmstat_oom_kill("a 1\noom_kill 5"), Some(5));
    }

    #[test]
    fn the_count_is_read_again_after_a_minute_not_every_cycle() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("vmstat"), "pgfault 2\noom_kill 1\n").expect("write");
        let paths = HostPaths {
            proc: dir.path().to_path_buf(),
            ..HostPaths::default()
        };
        let mut c = OomCollector::new(paths, &OomConfig::default());
        let start = Instant::now();
        let kills = |c: &mut OomCollector, secs| keyed_values(&collect_once(c, &tick_at(start, secs)));
        assert_eq!(kills(&mut c, 0), [("oom_kills".to_string(), Value::Int(1))]);
        std::fs::write(dir.path().join("vmstat"), "pgfault 2\noom_kill 2\n").expect("write");
        assert_eq!(kills(&mut c, 30), [("oom_kills".to_string(), Value::Int(1))]);
        assert_eq!(kills(&mut c, 60), [("oom_kills".to_string(), Value::Int(2))]);
    }
}
