//! Memory and swap from `<proc>/meminfo`.

use super::{CollectError, Collector, ProcFile, Tick};
use crate::host::HostPaths;
use crate::reading::{Kind, Reading};

/// Reports memory use and, on hosts with swap, swap use.
#[derive(Debug)]
pub struct MemoryCollector {
    /// `<proc>/meminfo`, kept open.
    meminfo: ProcFile,
}

/// The figures the readings are made of, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryFigures {
    /// Usable RAM.
    pub total_bytes: u64,
    /// What new work can get without swapping (the kernel's estimate).
    pub available_bytes: u64,
    /// Swap space; 0 on hosts without swap.
    pub swap_total_bytes: u64,
    /// Unused swap space.
    pub swap_free_bytes: u64,
}

impl MemoryCollector {
    /// A collector reading `<proc>/meminfo`.
    pub fn new(paths: HostPaths) -> Self {
        MemoryCollector {
            meminfo: ProcFile::new(paths.proc("meminfo")),
        }
    }
}

impl Collector for MemoryCollector {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn collect(&mut self, _tick: &Tick, out: &mut Vec<Reading>) -> Result<(), CollectError> {
        let text = self.meminfo.read()?;
        let figures = parse_meminfo(text).map_err(|e| CollectError::parse(self.meminfo.path(), e))?;
        out.extend(memory_readings(&figures));
        Ok(())
    }
}

/// The figures we report from /proc/meminfo, in bytes. Only the lines we
/// use are parsed (six of ~55). Kernels before 3.14 have no MemAvailable;
/// free + buffers + page cache is what `free` used then.
pub fn parse_meminfo(text: &str) -> Result<MemoryFigures, String> {
    let mut total = None;
    let (mut available, mut free, mut buffers, mut cached) = (None, 0, 0, 0);
    let (mut swap_total, mut swap_free) = (0, 0);
    // The seven lines come within the first twenty or so of ~55; stop
    // once all were seen.
    let mut wanted = 7;
    for line in text.lines() {
        if wanted == 0 {
            break;
        }
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let slot = match name {
            "MemTotal" => &mut total,
            "MemAvailable" => &mut available,
            _ => {
                let field = match name {
                    "MemFree" => &mut free,
                    "Buffers" => &mut buffers,
                    "Cached" => &mut cached,
                    "SwapTotal" => &mut swap_total,
                    "SwapFree" => &mut swap_free,
                    _ => continue,
                };
                *field = meminfo_bytes(name, rest)?;
                wanted -= 1;
                continue;
            }
        };
        *slot = Some(meminfo_bytes(name, rest)?);
        wanted -= 1;
    }
    let total = total.ok_or("no MemTotal line")?;
    let available =
        available.unwrap_or_else(|| free.saturating_add(buffers).saturating_add(cached).min(total));
    Ok(MemoryFigures {
        total_bytes: total,
        available_bytes: available,
        swap_total_bytes: swap_total,
        swap_free_bytes: swap_free,
    })
}

/// The value of one meminfo line (`  24684084 kB`) in bytes.
fn meminfo_bytes(name: &str, rest: &str) -> Result<u64, String> {
    let mut words = rest.split_whitespace();
    let value: u64 = words
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{name}: not a number"))?;
    Ok(match words.next() {
        Some("kB") => value.saturating_mul(1024),
        _ => value,
    })
}

/// The readings for `f`. No swap is nothing to report, not an error, so a
/// host without swap simply has no swap reading.
pub fn memory_readings(f: &MemoryFigures) -> Vec<Reading> {
    let mut out = vec![
        Reading::new(
            "memory_used",
            "Memory used",
            Kind::Percent,
            used_percent(f.total_bytes, f.available_bytes),
        ),
        Reading::new(
            "memory_available",
            "Memory available",
            Kind::Bytes,
            f.available_bytes,
        ),
        Reading::new("memory_total", "Memory total", Kind::Bytes, f.total_bytes)
            .diagnostic()
            .steady(),
    ];
    if f.swap_total_bytes > 0 {
        out.push(Reading::new(
            "swap_used",
            "Swap used",
            Kind::Percent,
            used_percent(f.swap_total_bytes, f.swap_free_bytes),
        ));
    }
    out
}

/// The share of `total` not in `unused`; `None` for an empty total.
fn used_percent(total: u64, unused: u64) -> Option<f64> {
    (total > 0).then(|| total.saturating_sub(unused) as f64 / total as f64 * 100.0)
}

/// Memory and swap (`[collectors.memory]`): nothing to set but on/off.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// Collect this.
    pub enabled: bool,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig { enabled: true }
    }
}

impl super::CollectorSection for MemoryConfig {
    fn build(&self, cx: &crate::context::Context) -> Option<Box<dyn super::Collector>> {
        self.enabled
            .then(|| Box::new(MemoryCollector::new(cx.paths.clone())) as Box<dyn super::Collector>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testing::*;
    use crate::reading::Value;
    use std::time::Instant;

    const TOTAL: u64 = 24_684_084 * 1024;

    #[test]
    fn two_cycles_report_the_captured_figures_and_no_swap() {
        let start = Instant::now();
        let mut c = MemoryCollector::new(fixture_paths("proc/vm/t0", "sys/vm", "root/vm"));
        let first = collect_once(&mut c, &tick_at(start, 0));
        c.meminfo = ProcFile::new(fixture_paths("proc/vm/t1", "sys/vm", "root/vm").proc("meminfo"));
        let second = collect_once(&mut c, &tick_at(start, 10));

        for (out, available_kib) in [(&first, 23_263_856u64), (&second, 23_434_376)] {
            let available = available_kib * 1024;
            assert_eq!(
                keyed_values(out),
                [
                    (
                        "memory_used".to_string(),
                        Value::Float((TOTAL - available) as f64 / TOTAL as f64 * 100.0)
                    ),
                    ("memory_available".to_string(), Value::Int(available)),
                    ("memory_total".to_string(), Value::Int(TOTAL)),
                ]
            );
        }
        let total = second.iter().find(|r| r.key == "memory_total");
        assert!(total.is_some_and(|r| r.diagnostic && r.kind == Kind::Bytes && r.name == "Memory total"));
    }

    #[test]
    fn swap_used_appears_only_when_there_is_swap() {
        let mut c = MemoryCollector::new(fixture_paths("proc/swap", "sys/vm", "root/vm"));
        let out = collect_once(&mut c, &tick_at(Instant::now(), 0));
        let keys: Vec<_> = out.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(
            keys,
            ["memory_used", "memory_available", "memory_total", "swap_used"]
        );
        // 8388604 kB of swap, 6291452 kB free.
        assert_close(&value_of(&out, "swap_used"), 2_097_152.0 / 8_388_604.0 * 100.0);
        assert_eq!(out.last().map(|r| r.name.as_str()), Some("Swap used"));
    }

    #[test]
    fn an_empty_total_gives_a_missing_percentage_not_nan() {
        let f = MemoryFigures {
            total_bytes: 0,
            available_bytes: 0,
            swap_total_bytes: 0,
            swap_free_bytes: 0,
        };
        assert_eq!(value_of(&memory_readings(&f), "memory_used"), Value::Missing);
    }

    #[test]
    fn a_meminfo_without_mem_available_falls_back_to_free_buffers_and_cache() {
        let text = std::fs::read_to_string(fixture("proc/vm/t0/meminfo")).expect("fixture");
        let old: String = text
            .lines()
            .filter(|l| !l.starts_with("MemAvailable"))
            .map(|l| format!("{l}\n"))
            .collect();
        let f = parse_meminfo(&old).expect("parse");
        // MemFree 18888008 + Buffers 128168 + Cached 4248984 kB.
        assert_eq!(f.available_bytes, (18_888_008 + 128_168 + 4_248_984) * 1024);
    }

    #[test]
    fn parse_meminfo_reads_the_lines_we_use_and_names_a_bad_one() {
        let text = std::fs::read_to_string(fixture("proc/vm/t0/meminfo")).expect("fixture");
        let f = parse_meminfo(&text).expect("parse");
        assert_eq!(f.total_bytes, TOTAL);
        assert_eq!(f.available_bytes, 23_263_856 * 1024);
        assert_eq!((f.swap_total_bytes, f.swap_free_bytes), (0, 0));
        assert_eq!(
            parse_meminfo("MemTotal: 10 kB\nMemFree: x kB\n"),
            Err("MemFree: not a number".to_string())
        );
        assert_eq!(
            parse_meminfo("MemFree: 1 kB\n"),
            Err("no MemTotal line".to_string())
        );
    }
}
