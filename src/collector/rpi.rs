//! Raspberry Pi power and throttling problems, as `problem` binary sensors.
//!
//! The firmware's throttle word comes from
//! `<sys>/devices/platform/soc/soc:firmware/get_throttled` (Raspberry Pi
//! OS kernels; the same bits as `vcgencmd get_throttled`, printed as bare
//! hex). Mainline kernels have only the `rpi_volt` hwmon chip, whose
//! `in0_lcrit_alarm` is "under-voltage now": then that one entity is all
//! there is. Other hardware has neither; the collector looks once and then
//! costs nothing.

use std::path::PathBuf;

use serde::Deserialize;

use super::{CollectError, Collector, Tick};
use crate::host::HostPaths;
use crate::reading::{Kind, Reading};

/// Raspberry Pi throttling (`[collectors.rpi]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RpiConfig {
    /// Collect this (nothing is reported on other hardware).
    pub enabled: bool,
}

impl Default for RpiConfig {
    fn default() -> Self {
        RpiConfig { enabled: true }
    }
}

/// The bits of the firmware's throttle word that become entities: bit,
/// key, name. Bits 16–19 are sticky "has occurred since boot" copies of
/// bits 0–3.
const BITS: [(u32, &str, &str); 5] = [
    (0, "rpi_under_voltage", "Under-voltage"),
    (16, "rpi_under_voltage_since_boot", "Under-voltage since boot"),
    (2, "rpi_throttled", "Throttled"),
    (18, "rpi_throttled_since_boot", "Throttled since boot"),
    (1, "rpi_frequency_capped", "Frequency capped"),
];

/// Parses the throttle word: `50005` as the kernel prints it, also
/// `0x50005` and `throttled=0x50005` as `vcgencmd` does.
pub fn parse_throttled(text: &str) -> Option<u32> {
    let t = text.trim();
    let t = t.strip_prefix("throttled=").unwrap_or(t);
    let t = t.strip_prefix("0x").unwrap_or(t);
    u32::from_str_radix(t, 16).ok()
}

/// The entities of a throttle word.
pub fn throttled_readings(word: u32) -> Vec<Reading> {
    BITS.iter()
        .map(|(bit, key, name)| Reading::new(*key, *name, Kind::Problem, word & (1 << bit) != 0))
        .collect()
}

/// Where this host tells about throttling, found once.
#[derive(Debug, Clone, PartialEq)]
enum Origin {
    /// Not looked yet.
    Unknown,
    /// The firmware's `get_throttled` file.
    Firmware(PathBuf),
    /// `rpi_volt`'s `in0_lcrit_alarm`.
    Hwmon(PathBuf),
    /// Not a Raspberry Pi.
    None,
}

/// Reports Raspberry Pi under-voltage and throttling.
#[derive(Debug)]
pub struct RpiCollector {
    /// Where the host's /sys is.
    paths: HostPaths,
    /// Where the state comes from.
    origin: Origin,
}

impl RpiCollector {
    /// A collector looking under `<sys>`.
    pub fn new(paths: HostPaths, _cfg: &RpiConfig) -> Self {
        RpiCollector {
            paths,
            origin: Origin::Unknown,
        }
    }

    fn find(&self) -> Origin {
        let firmware = self.paths.sys("devices/platform/soc/soc:firmware/get_throttled");
        if firmware.exists() {
            return Origin::Firmware(firmware);
        }
        let Ok(entries) = std::fs::read_dir(self.paths.sys("class/hwmon")) else {
            return Origin::None;
        };
        entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|dir| std::fs::read_to_string(dir.join("name")).is_ok_and(|n| n.trim() == "rpi_volt"))
            .map_or(Origin::None, |dir| Origin::Hwmon(dir.join("in0_lcrit_alarm")))
    }
}

impl Collector for RpiCollector {
    fn name(&self) -> &'static str {
        "rpi"
    }

    fn collect(&mut self, _tick: &Tick, out: &mut Vec<Reading>) -> Result<(), CollectError> {
        if self.origin == Origin::Unknown {
            self.origin = self.find();
        }
        match &self.origin {
            Origin::Unknown | Origin::None => {}
            Origin::Firmware(path) => {
                let text = super::read_file(path)?;
                let word = parse_throttled(&text)
                    .ok_or_else(|| CollectError::parse(path, "expected a hex number"))?;
                out.extend(throttled_readings(word));
            }
            Origin::Hwmon(path) => {
                let text = super::read_file(path)?;
                let alarm = match text.trim() {
                    "0" => false,
                    "1" => true,
                    _ => return Err(CollectError::parse(path, "expected 0 or 1")),
                };
                out.push(Reading::new(BITS[0].1, BITS[0].2, Kind::Problem, alarm));
            }
        }
        Ok(())
    }
}

impl super::CollectorSection for RpiConfig {
    fn build(&self, cx: &crate::context::Context) -> Option<Box<dyn Collector>> {
        self.enabled
            .then(|| Box::new(RpiCollector::new(cx.paths.clone(), self)) as Box<dyn Collector>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testing::*;
    use crate::reading::Value;
    use std::time::Instant;

    fn collect(sys: &str) -> Vec<Reading> {
        let mut c = RpiCollector::new(fixture_paths("proc/vm/t0", sys, "root/vm"), &RpiConfig::default());
        collect_once(&mut c, &tick_at(Instant::now(), 0))
    }

    fn flag(key: &str, on: bool) -> (String, Value) {
        (key.to_string(), Value::Bool(on))
    }

    #[test]
    fn the_firmware_word_50005_is_under_voltage_and_throttled_now_and_since_boot() {
        let out = collect("sys/pi");
        assert_eq!(
            keyed_values(&out),
            [
                flag("rpi_under_voltage", true),
                flag("rpi_under_voltage_since_boot", true),
                flag("rpi_throttled", true),
                flag("rpi_throttled_since_boot", true),
                flag("rpi_frequency_capped", false),
            ]
        );
        assert!(out.iter().all(|r| r.kind == Kind::Problem));
    }

    #[test]
    fn a_mainline_kernel_gives_under_voltage_from_rpi_volt_only() {
        assert_eq!(
            keyed_values(&collect("sys/pi-mainline")),
            [flag("rpi_under_voltage", true)]
        );
    }

    #[test]
    fn other_hardware_has_no_entities() {
        assert_eq!(collect("sys/nuc"), []);
        assert_eq!(collect("sys/vm"), []);
    }

    #[test]
    fn parse_throttled_takes_the_kernel_and_vcgencmd_forms() {
        assert_eq!(parse_throttled("50005\n"), Some(0x50005));
        assert_eq!(parse_throttled("0\n"), Some(0));
        assert_eq!(parse_throttled("throttled=0x80008"), Some(0x80008));
        assert_eq!(parse_throttled(""), None);
        assert_eq!(parse_throttled("zz"), None);
        let capped = throttled_readings(0x20002);
        assert_eq!(capped[4].value, Value::Bool(true));
        assert_eq!(capped[0].value, Value::Bool(false));
    }
}
