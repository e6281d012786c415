//! Pressure stall information from `<proc>/pressure/{cpu,memory,io}`: the
//! share of the last 60 s in which some (or all) tasks were stalled waiting
//! for the resource. Kernels before 4.20, or booted with `psi=0`, have no
//! /proc/pressure; that is nothing to report, not an error.

use procfs_core::{parse_pressure_record, ProcError};

use super::{widen_f32, CollectError, Collector, ProcFile, Tick};
use crate::host::HostPaths;
use crate::reading::{Kind, Reading};

/// The resources /proc/pressure reports on: file name, key part, name.
const RESOURCES: [(&str, &str, &str); 3] = [
    ("cpu", "cpu", "CPU"),
    ("memory", "memory", "Memory"),
    ("io", "io", "I/O"),
];

/// Reports the 60 s stall averages.
#[derive(Debug)]
pub struct PressureCollector {
    /// `<proc>/pressure/{cpu,memory,io}`, kept open, in [`RESOURCES`]' order.
    files: [ProcFile; 3],
}

/// The 60 s averages of one pressure file, in percent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pressure {
    /// Some task was stalled.
    pub some_percent: f64,
    /// Every non-idle task was stalled at once; `None` where the file has no
    /// `full` line (cpu before Linux 5.13).
    pub full_percent: Option<f64>,
}

impl PressureCollector {
    /// A collector reading `<proc>/pressure`.
    pub fn new(paths: HostPaths) -> Self {
        PressureCollector {
            files: RESOURCES.map(|(file, _, _)| ProcFile::new(paths.proc(&format!("pressure/{file}")))),
        }
    }
}

impl Collector for PressureCollector {
    fn name(&self) -> &'static str {
        "pressure"
    }

    fn collect(&mut self, _tick: &Tick, out: &mut Vec<Reading>) -> Result<(), CollectError> {
        for ((_, key_part, label), file) in RESOURCES.iter().zip(&mut self.files) {
            let text = match file.read_optional() {
                Ok(Some(text)) => text,
                // Absent, or present but switched off (EOPNOTSUPP with psi=0
                // on some kernels): nothing here.
                Ok(None) => continue,
                Err(CollectError::Io { source, .. }) if source.kind() == std::io::ErrorKind::Unsupported => {
                    continue
                }
                Err(e) => return Err(e),
            };
            let pressure = parse_pressure(text).map_err(|e| CollectError::parse(file.path(), e))?;
            out.extend(pressure_readings(key_part, label, &pressure));
        }
        Ok(())
    }
}

/// Parses one pressure file: a `some` line and, except for cpu on kernels
/// before 5.13, a `full` line. procfs-core's `CpuPressure` insists on both,
/// so we use its per-line parser instead.
pub fn parse_pressure(text: &str) -> Result<Pressure, ProcError> {
    let mut some = None;
    let mut full = None;
    for line in text.lines() {
        // procfs-core slices past the 5-byte prefix; checking for the
        // trailing space first keeps a truncated line from panicking it.
        if line.starts_with("some ") {
            some = Some(widen_f32(parse_pressure_record(line)?.avg60));
        } else if line.starts_with("full ") {
            full = Some(widen_f32(parse_pressure_record(line)?.avg60));
        }
    }
    let some_percent = some.ok_or(ProcError::Incomplete(None))?;
    Ok(Pressure {
        some_percent,
        full_percent: full,
    })
}

/// The readings of one resource (`key_part` "cpu", `label` "CPU").
pub fn pressure_readings(key_part: &str, label: &str, p: &Pressure) -> Vec<Reading> {
    let mut out = vec![Reading::new(
        format!("pressure_{key_part}_some"),
        format!("{label} pressure (some)"),
        Kind::Percent,
        p.some_percent,
    )];
    if let Some(full) = p.full_percent {
        out.push(Reading::new(
            format!("pressure_{key_part}_full"),
            format!("{label} pressure (full)"),
            Kind::Percent,
            full,
        ));
    }
    out
}

/// Pressure stall information (`[collectors.pressure]`): nothing to set but on/off.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PressureConfig {
    /// Collect this.
    pub enabled: bool,
}

impl Default for PressureConfig {
    fn default() -> Self {
        PressureConfig { enabled: true }
    }
}

impl super::CollectorSection for PressureConfig {
    fn build(&self, cx: &crate::context::Context) -> Option<Box<dyn super::Collector>> {
        self.enabled
            .then(|| Box::new(PressureCollector::new(cx.paths.clone())) as Box<dyn super::Collector>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testing::*;
    use crate::reading::Value;
    use std::time::Instant;

    fn float(key: &str, v: f64) -> (String, Value) {
        (key.to_string(), Value::Float(v))
    }

    #[test]
    fn two_cycles_report_the_captured_60s_averages() {
        let start = Instant::now();
        let mut c = PressureCollector::new(fixture_paths("proc/vm/t0", "sys/vm", "root/vm"));
        let first = collect_once(&mut c, &tick_at(start, 0));
        c = PressureCollector::new(fixture_paths("proc/vm/t1", "sys/vm", "root/vm"));
        let second = collect_once(&mut c, &tick_at(start, 10));
        assert_eq!(
            keyed_values(&first),
            [
                float("pressure_cpu_some", 6.73),
                float("pressure_cpu_full", 0.0),
                float("pressure_memory_some", 0.0),
                float("pressure_memory_full", 0.0),
                float("pressure_io_some", 0.29),
                float("pressure_io_full", 0.17),
            ]
        );
        assert_eq!(
            keyed_values(&second),
            [
                float("pressure_cpu_some", 6.73),
                float("pressure_cpu_full", 0.0),
                float("pressure_memory_some", 0.0),
                float("pressure_memory_full", 0.0),
                float("pressure_io_some", 0.27),
                float("pressure_io_full", 0.14),
            ]
        );
        let names: Vec<_> = second.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "CPU pressure (some)",
                "CPU pressure (full)",
                "Memory pressure (some)",
                "Memory pressure (full)",
                "I/O pressure (some)",
                "I/O pressure (full)",
            ]
        );
    }

    #[test]
    fn a_cpu_file_without_a_full_line_gives_no_cpu_full_reading() {
        let mut c = PressureCollector::new(fixture_paths("proc/old-kernel", "sys/vm", "root/vm"));
        let out = collect_once(&mut c, &tick_at(Instant::now(), 0));
        let keys: Vec<_> = out.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "pressure_cpu_some",
                "pressure_memory_some",
                "pressure_memory_full",
                "pressure_io_some",
                "pressure_io_full"
            ]
        );
    }

    #[test]
    fn no_pressure_directory_is_no_readings_and_no_error() {
        let mut c = PressureCollector::new(fixture_paths("proc/swap", "sys/vm", "root/vm"));
        assert_eq!(collect_once(&mut c, &tick_at(Instant::now(), 0)), []);
    }

    #[test]
    fn parse_pressure_rejects_garbage_without_panicking() {
        assert!(parse_pressure("").is_err());
        assert!(parse_pressure("some\n").is_err());
        assert!(parse_pressure("some avg10=x avg60=1 avg300=1 total=1\n").is_err());
        assert_eq!(
            parse_pressure("some avg10=1.00 avg60=2.50 avg300=3.00 total=9\n").ok(),
            Some(Pressure {
                some_percent: 2.5,
                full_percent: None
            })
        );
    }
}
