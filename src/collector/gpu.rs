//! GPUs the kernel describes in sysfs, per `<sys>/class/drm/cardN`:
//!
//! * AMD (`amdgpu`, vendor 0x1002): `device/gpu_busy_percent`,
//!   `device/mem_info_vram_used` and `mem_info_vram_total`.
//! * Intel (`i915`, vendor 0x8086): `gt_act_freq_mhz` (else
//!   `gt_cur_freq_mhz`), the only load-like figure i915 exposes.
//!
//! GPU temperatures and fans are hwmon sensors (`amdgpu/edge`), reported by
//! the `sensors` collector. NVIDIA's driver exposes none of this: see
//! `crate::hardware::nvidia`. Connector entries (`card0-DP-1`) and render
//! nodes are skipped.

use std::path::Path;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{CollectError, Collector, Tick};
use crate::host::HostPaths;
use crate::reading::{key, Kind, Reading};

/// GPUs in sysfs (`[collectors.gpu]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GpuConfig {
    /// Collect this (nothing is reported without an AMD or Intel GPU).
    pub enabled: bool,
}

impl Default for GpuConfig {
    fn default() -> Self {
        GpuConfig { enabled: true }
    }
}

/// A one-line sysfs file, trimmed; `None` when absent or unreadable.
fn read_line(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|t| t.trim().to_string())
}

/// A sysfs integer.
pub fn parse_sysfs_u64(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The readings of one card directory (`card0`), by vendor.
pub fn card_readings(card: &str, dir: &Path) -> Vec<Reading> {
    let number = |rel: &str| read_line(&dir.join(rel)).as_deref().and_then(parse_sysfs_u64);
    let name = |what: &str| format!("GPU {card} {what}");
    let mut out = Vec::new();
    match read_line(&dir.join("device/vendor")).as_deref() {
        Some("0x1002") => {
            if let Some(busy) = number("device/gpu_busy_percent") {
                out.push(Reading::new(
                    key(&["gpu", card, "load"]),
                    name("load"),
                    Kind::Percent,
                    busy as f64,
                ));
            }
            if let Some(used) = number("device/mem_info_vram_used") {
                out.push(Reading::new(
                    key(&["gpu", card, "vram_used"]),
                    name("VRAM used"),
                    Kind::Bytes,
                    used,
                ));
            }
            if let Some(total) = number("device/mem_info_vram_total") {
                out.push(
                    Reading::new(
                        key(&["gpu", card, "vram_total"]),
                        name("VRAM total"),
                        Kind::Bytes,
                        total,
                    )
                    .diagnostic(),
                );
            }
        }
        Some("0x8086") => {
            if let Some(mhz) = number("gt_act_freq_mhz").or_else(|| number("gt_cur_freq_mhz")) {
                out.push(Reading::new(
                    key(&["gpu", card, "frequency"]),
                    name("frequency"),
                    Kind::Megahertz,
                    mhz as f64,
                ));
            }
        }
        _ => {}
    }
    out
}

/// How long a host where no GPU gave a reading is left alone before
/// `<sys>/class/drm` is looked at again (most servers and VMs: a failed
/// open, or a virtual card, every cycle otherwise).
const RESCAN_WITHOUT_GPU: Duration = Duration::from_secs(60);

/// Reports AMD and Intel GPUs from sysfs.
#[derive(Debug)]
pub struct GpuCollector {
    /// Where the host's /sys is.
    paths: HostPaths,
    /// When the last look found nothing to report: no look before
    /// [`RESCAN_WITHOUT_GPU`] has passed.
    found_nothing_at: Option<Instant>,
}

impl GpuCollector {
    /// A collector reading `<sys>/class/drm`.
    pub fn new(paths: HostPaths, _cfg: &GpuConfig) -> Self {
        GpuCollector {
            paths,
            found_nothing_at: None,
        }
    }
}

impl Collector for GpuCollector {
    fn name(&self) -> &'static str {
        "gpu"
    }

    fn collect(&mut self, tick: &Tick, out: &mut Vec<Reading>) -> Result<(), CollectError> {
        if let Some(at) = self.found_nothing_at {
            if tick.mono.saturating_duration_since(at) < RESCAN_WITHOUT_GPU {
                return Ok(());
            }
        }
        let before = out.len();
        self.collect_cards(out);
        self.found_nothing_at = (out.len() == before).then_some(tick.mono);
        Ok(())
    }
}

impl GpuCollector {
    /// The readings of every card in `<sys>/class/drm`, in card order.
    fn collect_cards(&self, out: &mut Vec<Reading>) {
        let Ok(entries) = std::fs::read_dir(self.paths.sys("class/drm")) else {
            return;
        };
        let mut cards: Vec<(u32, String)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_string();
                let n = name.strip_prefix("card")?.parse().ok()?;
                Some((n, name))
            })
            .collect();
        cards.sort();
        let drm = self.paths.sys("class/drm");
        for (_, card) in cards {
            out.extend(card_readings(&card, &drm.join(&card)));
        }
    }
}

impl super::CollectorSection for GpuConfig {
    fn build(&self, cx: &crate::context::Context) -> Option<Box<dyn Collector>> {
        self.enabled
            .then(|| Box::new(GpuCollector::new(cx.paths.clone(), self)) as Box<dyn Collector>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testing::*;
    use crate::reading::Value;
    use std::time::Instant;

    fn collect(sys: &str) -> Vec<Reading> {
        let mut c = GpuCollector::new(fixture_paths("proc/vm/t0", sys, "root/vm"), &GpuConfig::default());
        collect_once(&mut c, &tick_at(Instant::now(), 0))
    }

    #[test]
    fn an_amd_card_reports_load_and_vram_and_its_connectors_are_skipped() {
        let out = collect("sys/amd");
        assert_eq!(
            keyed_values(&out),
            [
                ("gpu_card0_load".to_string(), Value::Float(7.0)),
                ("gpu_card0_vram_used".to_string(), Value::Int(1_100_963_840)),
                ("gpu_card0_vram_total".to_string(), Value::Int(8_573_157_376)),
            ]
        );
        assert_eq!(out[0].name, "GPU card0 load");
        assert!(out[2].diagnostic);
    }

    #[test]
    fn an_intel_card_reports_its_actual_frequency() {
        let out = collect("sys/nuc");
        assert_eq!(
            keyed_values(&out),
            [("gpu_card0_frequency".to_string(), Value::Float(300.0))]
        );
        assert_eq!(out[0].kind, Kind::Megahertz);
    }

    #[test]
    fn no_drm_directory_is_no_readings() {
        assert_eq!(collect("sys/vm"), []);
        assert_eq!(collect("sys/pi"), []);
    }

    #[test]
    fn a_host_without_a_gpu_is_looked_at_again_after_a_minute_not_every_cycle() {
        let sys = tempfile::tempdir().expect("tempdir");
        let paths = HostPaths {
            sys: sys.path().to_path_buf(),
            ..HostPaths::default()
        };
        let mut c = GpuCollector::new(paths, &GpuConfig::default());
        let start = Instant::now();
        assert_eq!(collect_once(&mut c, &tick_at(start, 0)), []);
        let card = sys.path().join("class/drm/card0");
        std::fs::create_dir_all(card.join("device")).expect("mkdir");
        std::fs::write(card.join("device/vendor"), "0x8086\n").expect("write");
        std::fs::write(card.join("gt_act_freq_mhz"), "300\n").expect("write");
        assert_eq!(collect_once(&mut c, &tick_at(start, 30)), []);
        let keys = |out: Vec<Reading>| out.into_iter().map(|r| r.key).collect::<Vec<_>>();
        assert_eq!(
            keys(collect_once(&mut c, &tick_at(start, 60))),
            ["gpu_card0_frequency"]
        );
        assert_eq!(
            keys(collect_once(&mut c, &tick_at(start, 70))),
            ["gpu_card0_frequency"]
        );
    }
}
