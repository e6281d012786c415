//! Pressure stall information from `<proc>/pressure/{cpu,memory,io}`: the
//! share of the last 60 s in which some (or all) tasks were stalled waiting
//! for the resource. Kernels before 4.20, or booted with `psi=0`, have no
//! /proc/pressure; that is nothing to report, not an error.

use super::{CollectError, Collector, ProcFile, Tick};
use crate::host::HostPaths;
use crate::reading::{Kind, Reading};

/// The resources /proc/pressure reports on: file name, then the key and
/// name of the `some` and the `full` reading (fixed text, not formatted
/// every cycle).
const RESOURCES: [(&str, Names, Names); 3] = [
    (
        "cpu",
        ("pressure_cpu_some", "CPU pressure (some)"),
        ("pressure_cpu_full", "CPU pressure (full)"),
    ),
    (
        "memory",
        ("pressure_memory_some", "Memory pressure (some)"),
        ("pressure_memory_full", "Memory pressure (full)"),
    ),
    (
        "io",
        ("pressure_io_some", "I/O pressure (some)"),
        ("pressure_io_full", "I/O pressure (full)"),
    ),
];

/// A reading's key and name.
type Names = (&'static str, &'static str);

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
        for ((_, some, full), file) in RESOURCES.iter().zip(&mut self.files) {
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
            out.extend(pressure_readings(*some, *full, &pressure));
        }
        Ok(())
    }
}

/// Parses one pressure file: a `some` line and, except for cpu on kernels
/// before 5.13, a `full` line, each `avg10=… avg60=… avg300=… total=…`.
/// Only avg60 is used, but every field must be there and be a number.
/// The kernel writes the averages with two decimals, which parse to the
/// same `f64` as that decimal text.
pub fn parse_pressure(text: &str) -> Result<Pressure, String> {
    let mut some = None;
    let mut full = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("some ") {
            some = Some(parse_avg60(rest)?);
        } else if let Some(rest) = line.strip_prefix("full ") {
            full = Some(parse_avg60(rest)?);
        }
    }
    let some_percent = some.ok_or("no some line")?;
    Ok(Pressure {
        some_percent,
        full_percent: full,
    })
}

/// The avg60 of one record's fields (`avg10=0.00 avg60=1.23 avg300=0.50 total=123`).
fn parse_avg60(fields: &str) -> Result<f64, String> {
    let mut avg60 = None;
    let mut seen = 0;
    for field in fields.split_ascii_whitespace() {
        let (name, value) = field
            .split_once('=')
            .ok_or_else(|| format!("not name=value: {field}"))?;
        let number = |v: &str| v.parse::<f64>().map_err(|_| format!("{name}: not a number"));
        match name {
            // Checked, not converted: only avg60 is reported, and a float
            // parse is dearer than the rest of the line (issue 13).
            "avg10" | "avg300" if !is_plain_decimal(value) => return Err(format!("{name}: not a number")),
            "avg10" | "avg300" => {}
            "avg60" => avg60 = Some(number(value)?),
            "total" => {
                value
                    .parse::<u64>()
                    .map_err(|_| "total: not a number".to_string())?;
            }
            _ => continue,
        }
        seen += 1;
    }
    match avg60 {
        Some(v) if seen == 4 => Ok(v),
        _ => Err("incomplete record".into()),
    }
}

/// The readings of one resource: `some` always, `full` where the file has it.
/// Digits with at most one `.` among them (how PSI prints its averages).
fn is_plain_decimal(s: &str) -> bool {
    let mut dots = 0;
    !s.is_empty()
        && s.bytes().all(|b| match b {
            b'0'..=b'9' => true,
            b'.' => {
                dots += 1;
                dots == 1
            }
            _ => false,
        })
        && s != "."
}

pub fn pressure_readings(some: Names, full: Names, p: &Pressure) -> Vec<Reading> {
    let mut out = vec![Reading::new(some.0, some.1, Kind::Percent, p.some_percent)];
    if let Some(v) = p.full_percent {
        out.push(Reading::new(full.0, full.1, Kind::Percent, v));
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
