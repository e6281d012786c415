//! Load averages from `<proc>/loadavg`: runnable plus uninterruptible tasks,
//! averaged by the kernel over 1, 5 and 15 minutes.

use super::{CollectError, Collector, ProcFile, Tick};
use crate::host::HostPaths;
use crate::reading::{Kind, Reading};

/// Reports the three load averages.
#[derive(Debug)]
pub struct LoadCollector {
    /// `<proc>/loadavg`, kept open.
    loadavg: ProcFile,
}

impl LoadCollector {
    /// A collector reading `<proc>/loadavg`.
    pub fn new(paths: HostPaths) -> Self {
        LoadCollector {
            loadavg: ProcFile::new(paths.proc("loadavg")),
        }
    }
}

impl Collector for LoadCollector {
    fn name(&self) -> &'static str {
        "load"
    }

    fn collect(&mut self, _tick: &Tick, out: &mut Vec<Reading>) -> Result<(), CollectError> {
        let text = self.loadavg.read()?;
        let load = parse_loadavg(text).map_err(|e| CollectError::parse(self.loadavg.path(), e))?;
        out.extend(load_readings(&load));
        Ok(())
    }
}

/// The three load averages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadAverage {
    /// Over 1 minute.
    pub one: f64,
    /// Over 5 minutes.
    pub five: f64,
    /// Over 15 minutes.
    pub fifteen: f64,
}

/// Parses /proc/loadavg (`0.12 0.34 0.56 1/234 5678`). The kernel writes
/// two decimals, which parse to the same `f64` as that decimal text.
pub fn parse_loadavg(text: &str) -> Result<LoadAverage, String> {
    let mut fields = text.split_ascii_whitespace();
    let mut average = || -> Result<f64, String> {
        let field = fields.next().ok_or("too few fields")?;
        field.parse().map_err(|_| format!("not a load average: {field}"))
    };
    let (one, five, fifteen) = (average()?, average()?, average()?);
    // The runnable/total tasks and the last PID: not used, but a line
    // without them is not the file we know.
    if fields.next().is_none_or(|f| !f.contains('/')) || fields.next().is_none() {
        return Err("too few fields".into());
    }
    Ok(LoadAverage { one, five, fifteen })
}

/// The 1, 5 and 15 minute readings.
pub fn load_readings(load: &LoadAverage) -> [Reading; 3] {
    [
        Reading::new("load_1m", "Load (1 min)", Kind::Load, load.one),
        Reading::new("load_5m", "Load (5 min)", Kind::Load, load.five),
        Reading::new("load_15m", "Load (15 min)", Kind::Load, load.fifteen),
    ]
}

/// Load averages (`[collectors.load]`): nothing to set but on/off.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoadConfig {
    /// Collect this.
    pub enabled: bool,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig { enabled: true }
    }
}

impl super::CollectorSection for LoadConfig {
    fn build(&self, cx: &crate::context::Context) -> Option<Box<dyn super::Collector>> {
        self.enabled
            .then(|| Box::new(LoadCollector::new(cx.paths.clone())) as Box<dyn super::Collector>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testing::*;
    use crate::reading::Value;
    use std::time::Instant;

    #[test]
    fn each_cycle_reports_the_captured_averages() {
        let start = Instant::now();
        let mut c = LoadCollector::new(fixture_paths("proc/vm/t0", "sys/vm", "root/vm"));
        let first = collect_once(&mut c, &tick_at(start, 0));
        c.loadavg = ProcFile::new(fixture_paths("proc/vm/t1", "sys/vm", "root/vm").proc("loadavg"));
        let second = collect_once(&mut c, &tick_at(start, 10));
        let expect = |a: f64, b: f64, c: f64| {
            vec![
                ("load_1m".to_string(), Value::Float(a)),
                ("load_5m".to_string(), Value::Float(b)),
                ("load_15m".to_string(), Value::Float(c)),
            ]
        };
        assert_eq!(keyed_values(&first), expect(1.25, 0.81, 0.35));
        assert_eq!(keyed_values(&second), expect(1.21, 0.81, 0.35));
        let names: Vec<_> = second.iter().map(|r| (r.name.as_str(), r.kind)).collect();
        assert_eq!(
            names,
            [
                ("Load (1 min)", Kind::Load),
                ("Load (5 min)", Kind::Load),
                ("Load (15 min)", Kind::Load)
            ]
        );
    }

    #[test]
    fn a_truncated_loadavg_is_a_parse_error_naming_the_file() {
        assert!(parse_loadavg("0.00 0.01").is_err());
        let mut c = LoadCollector::new(fixture_paths("proc/does-not-exist", "sys/vm", "root/vm"));
        let err = c.collect(&tick_at(Instant::now(), 0), &mut Vec::new()).err();
        assert!(err.is_some_and(|e| e.to_string().contains("loadavg")));
    }
}
