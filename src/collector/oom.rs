//! The host's OOM kills: the `oom_kill` counter of `<proc>/vmstat` (Linux
//! 4.13 and later), which counts every process the kernel's OOM killer
//! ended since boot, cgroup limits included. A total that only grows, so
//! HA's statistics show "kills per day"; older kernels have no such line,
//! and then there is nothing to report.

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

/// The `oom_kill` count in a vmstat file, `None` where the kernel has none.
pub fn parse_vmstat_oom_kill(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("oom_kill "))
        .and_then(|v| v.trim().parse().ok())
}

/// Reports the host's OOM kill count.
#[derive(Debug)]
pub struct OomCollector {
    /// `<proc>/vmstat`, kept open.
    vmstat: ProcFile,
}

impl OomCollector {
    /// A collector reading `<proc>/vmstat`.
    pub fn new(paths: HostPaths, _cfg: &OomConfig) -> Self {
        OomCollector {
            vmstat: ProcFile::new(paths.proc("vmstat")),
        }
    }
}

impl Collector for OomCollector {
    fn name(&self) -> &'static str {
        "oom"
    }

    fn collect(&mut self, _tick: &Tick, out: &mut Vec<Reading>) -> Result<(), CollectError> {
        if let Some(kills) = self.vmstat.read_optional()?.and_then(parse_vmstat_oom_kill) {
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
    }
}
