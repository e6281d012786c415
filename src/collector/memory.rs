//! Memory and swap from `<proc>/meminfo`.

use procfs_core::{FromRead, Meminfo, ProcError};

use super::{read_parsed, CollectError, Collector, Tick};
use crate::host::HostPaths;
use crate::reading::{Kind, Reading};

/// Reports memory use and, on hosts with swap, swap use.
#[derive(Debug)]
pub struct MemoryCollector {
    /// Where the host's /proc is.
    paths: HostPaths,
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
        MemoryCollector { paths }
    }
}

impl Collector for MemoryCollector {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn collect(&mut self, _tick: &Tick, out: &mut Vec<Reading>) -> Result<(), CollectError> {
        let info = read_parsed(&self.paths.proc("meminfo"), parse_meminfo)?;
        out.extend(memory_readings(&figures_of(&info)));
        Ok(())
    }
}

/// Parses /proc/meminfo with procfs-core (values come out in bytes).
pub fn parse_meminfo(text: &str) -> Result<Meminfo, ProcError> {
    Meminfo::from_read(text.as_bytes())
}

/// The figures we report from a parsed meminfo. Kernels before 3.14 have
/// no MemAvailable; free + buffers + page cache is what `free` used then.
pub fn figures_of(info: &Meminfo) -> MemoryFigures {
    let available = info.mem_available.unwrap_or_else(|| {
        info.mem_free
            .saturating_add(info.buffers)
            .saturating_add(info.cached)
            .min(info.mem_total)
    });
    MemoryFigures {
        total_bytes: info.mem_total,
        available_bytes: available,
        swap_total_bytes: info.swap_total,
        swap_free_bytes: info.swap_free,
    }
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
        Reading::new("memory_total", "Memory total", Kind::Bytes, f.total_bytes).diagnostic(),
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
        c.paths = fixture_paths("proc/vm/t1", "sys/vm", "root/vm");
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
        let f = figures_of(&parse_meminfo(&old).expect("parse"));
        // MemFree 18888008 + Buffers 128168 + Cached 4248984 kB.
        assert_eq!(f.available_bytes, (18_888_008 + 128_168 + 4_248_984) * 1024);
    }
}
