//! Temperatures and fan speeds from `<sys>/class/hwmon/*` (`name`,
//! `tempN_input`, `tempN_label`, `fanN_input`, `fanN_label`) and
//! `<sys>/class/thermal/thermal_zone*` (`type`, `temp`), plus a headline
//! "CPU temperature": the hottest CPU sensor, so every host has the same
//! entity for dashboards and blueprints whatever its CPU.
//!
//! A thermal zone usually registers an hwmon chip of the same name (with `-`
//! written `_`); that chip is the zone again and is skipped, so the zone's
//! name ("cpu-thermal") is the one shown. A VM or container host without
//! hwmon has no sensors: no readings, not an error.
//!
//! Sensors that read absurd values (firmware placeholders such as 127 °C or
//! −128 °C, −273 °C for "no probe") are never published; one that read well
//! once and then reads nonsense keeps its entity with no value.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::filter::NameFilter;
use super::{CollectError, Collector, Tick};
use crate::context::{check_globs, Context};
use crate::host::HostPaths;
use crate::reading::{key, Kind, Reading, Value};

/// Temperatures and fans (`[collectors.sensors]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SensorsConfig {
    /// Collect this.
    pub enabled: bool,
    /// Only sensors matching one of these globs (empty: all). An hwmon
    /// sensor is matched as `chip/label` (`coretemp/Package id 0`,
    /// `nvme/Composite`, `nct6798/fan2`), a thermal zone as its type
    /// (`acpitz`, `cpu-thermal`). The "CPU temperature" headline is always
    /// computed from every CPU sensor, filtered or not.
    #[serde(deserialize_with = "crate::context::comma_list")]
    pub include: Vec<String>,
    /// Sensors matching one of these globs are left out. The default drops
    /// per-core and per-CCD readings (the headline is their maximum), NVMe
    /// sub-sensors, the duplicate of the CPU package as a zone, and Wi-Fi.
    #[serde(deserialize_with = "crate::context::comma_list")]
    pub exclude: Vec<String>,
    /// Fan speeds too (rpm).
    pub fans: bool,
}

impl Default for SensorsConfig {
    fn default() -> Self {
        SensorsConfig {
            enabled: true,
            include: Vec::new(),
            exclude: [
                "coretemp/Core *",
                "k10temp/Tccd*",
                "zenpower/Tccd*",
                "nvme/Sensor *",
                "x86_pkg_temp",
                "iwlwifi*",
            ]
            .map(String::from)
            .to_vec(),
            fans: true,
        }
    }
}

impl super::CollectorSection for SensorsConfig {
    fn validate(&self, key: &str) -> Result<(), crate::error::ConfigError> {
        check_globs(&format!("{key}.include"), &self.include)?;
        check_globs(&format!("{key}.exclude"), &self.exclude)
    }

    fn build(&self, cx: &Context) -> Option<Box<dyn Collector>> {
        self.enabled
            .then(|| Box::new(SensorsCollector::new(cx.paths.clone(), self)) as Box<dyn Collector>)
    }
}

/// Readings outside this range are placeholders or broken probes, not
/// temperatures of a running machine: −40 °C and below, 127 °C and above.
pub fn plausible_celsius(celsius: f64) -> bool {
    celsius > -40.0 && celsius < 127.0
}

/// A sysfs temperature: an integer in millidegrees Celsius.
pub fn parse_millidegrees(text: &str) -> Option<f64> {
    text.trim().parse::<i64>().ok().map(|m| m as f64 / 1000.0)
}

/// A sysfs fan speed: an integer in rpm.
pub fn parse_rpm(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// What one sensor is and where its value comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Sensor {
    /// hwmon chip `name`, or thermal zone `type`.
    pub chip: String,
    /// 1 for the first chip of this name, 2 for the second…
    pub instance: usize,
    /// `tempN_label`/`fanN_label`, else `tempN`/`fanN`; empty for a zone.
    pub label: String,
    /// Temperature or fan.
    pub fan: bool,
    /// The file holding the value.
    pub input: PathBuf,
}

impl Sensor {
    /// What the include/exclude globs are matched against.
    pub fn filter_id(&self) -> String {
        if self.label.is_empty() {
            self.chip.clone()
        } else {
            format!("{}/{}", self.chip, self.label)
        }
    }

    /// The reading key: `temp_coretemp_package_id_0`, `fan_nct6798_fan1`,
    /// `temp_acpitz`, `temp_nvme_2_composite`.
    pub fn key(&self) -> String {
        let instance = self.instance.to_string();
        // Spaces are common in labels ("Package id 0") and map to `_` like
        // other separators, rather than costing the key a hash suffix.
        let label = self.label.replace(' ', "_");
        let mut parts = vec![if self.fan { "fan" } else { "temp" }, self.chip.as_str()];
        if self.instance > 1 {
            parts.push(&instance);
        }
        if !label.is_empty() {
            parts.push(&label);
        }
        key(&parts)
    }

    /// The entity name: "CPU package", "NVMe composite", "cpu-thermal".
    pub fn name(&self) -> String {
        let chip = match self.chip.as_str() {
            "coretemp" | "k10temp" | "zenpower" => "CPU",
            "nvme" => "NVMe",
            "amdgpu" => "GPU",
            "acpitz" => "ACPI",
            other => other,
        };
        let mut name = chip.to_string();
        if self.instance > 1 {
            name.push_str(&format!(" {}", self.instance));
        }
        let label = match self.label.as_str() {
            "Package id 0" => "package".to_string(),
            l if l.starts_with("Package id ") => format!("package {}", &l["Package id ".len()..]),
            "Composite" => "composite".to_string(),
            l => l.to_string(),
        };
        if !label.is_empty() {
            name.push(' ');
            name.push_str(&label);
        }
        name
    }

    /// Whether this sensor measures the CPU, for the headline.
    pub fn is_cpu(&self) -> bool {
        if self.fan {
            return false;
        }
        let chip = self.chip.replace('-', "_");
        match chip.as_str() {
            "coretemp" | "x86_pkg_temp" => true,
            "k10temp" | "zenpower" => matches!(self.label.as_str(), "Tctl" | "Tdie"),
            c => (c.starts_with("cpu") && c.contains("thermal")) || c == "soc_thermal",
        }
    }
}

/// The directory entries of `dir` whose name starts with `prefix` followed
/// by a number, in numeric order (`hwmon2` before `hwmon10`).
fn numbered_entries(dir: &Path, prefix: &str) -> Vec<(u32, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(u32, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let n = name.to_str()?.strip_prefix(prefix)?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    out.sort_by_key(|(n, _)| *n);
    out
}

/// A one-line sysfs file, trimmed; `None` when absent, unreadable (a
/// sleeping device answers EIO or ENODATA) or blank.
fn read_line(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.trim();
    (!line.is_empty()).then(|| line.to_string())
}

/// `tempN_input`/`fanN_input` files of one hwmon chip directory, as
/// (N, is_fan), in order: temperatures first.
fn chip_inputs(dir: &Path) -> Vec<(u32, bool)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(u32, bool)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            let rest = name.strip_suffix("_input")?;
            if let Some(n) = rest.strip_prefix("temp") {
                Some((n.parse().ok()?, false))
            } else {
                Some((rest.strip_prefix("fan")?.parse().ok()?, true))
            }
        })
        .collect();
    out.sort_by_key(|(n, fan)| (*fan, *n));
    out
}

/// Every temperature sensor and fan under `paths`: thermal zones first,
/// then hwmon chips that are not one of those zones again.
pub fn discover(paths: &HostPaths) -> Vec<Sensor> {
    let mut out = Vec::new();
    let mut seen_chips: Vec<String> = Vec::new();
    let instance_of = |chip: &str, seen: &mut Vec<String>| {
        seen.push(chip.to_string());
        seen.iter().filter(|c| *c == chip).count()
    };
    let mut zone_types = HashSet::new();
    for (_, dir) in numbered_entries(&paths.sys("class/thermal"), "thermal_zone") {
        let Some(kind) = read_line(&dir.join("type")) else {
            continue;
        };
        zone_types.insert(kind.replace('-', "_"));
        let instance = instance_of(&kind, &mut seen_chips);
        out.push(Sensor {
            chip: kind,
            instance,
            label: String::new(),
            fan: false,
            input: dir.join("temp"),
        });
    }
    for (_, mut dir) in numbered_entries(&paths.sys("class/hwmon"), "hwmon") {
        // Drivers from before Linux 3.x keep their files under device/.
        let chip = match read_line(&dir.join("name")) {
            Some(chip) => chip,
            None => {
                dir = dir.join("device");
                match read_line(&dir.join("name")) {
                    Some(chip) => chip,
                    None => continue,
                }
            }
        };
        if zone_types.contains(&chip) {
            continue;
        }
        let instance = instance_of(&chip, &mut seen_chips);
        for (n, fan) in chip_inputs(&dir) {
            let stem = format!("{}{n}", if fan { "fan" } else { "temp" });
            let label = read_line(&dir.join(format!("{stem}_label"))).unwrap_or_else(|| stem.clone());
            out.push(Sensor {
                chip: chip.clone(),
                instance,
                label,
                fan,
                input: dir.join(format!("{stem}_input")),
            });
        }
    }
    out
}

/// Reports temperatures, fans and the CPU headline.
#[derive(Debug)]
pub struct SensorsCollector {
    /// Where the host's /sys is.
    paths: HostPaths,
    /// Which sensors get their own entity.
    filter: NameFilter,
    /// Fans too.
    fans: bool,
    /// Keys that once had a plausible value: they keep their entity (with
    /// no value) when the sensor later reads nonsense.
    published: HashSet<crate::reading::Label>,
    /// The sensors found by the last scan: listing the directories and
    /// reading the labels is most of the cost, and they rarely change.
    layout: Vec<Sensor>,
    /// Cycles left before the next scan (0: scan now).
    cycles_to_rescan: u32,
}

/// How many cycles a scan of the sensors is reused: a chip that appears
/// later (a driver loaded after start) shows within this many cycles.
const RESCAN_EVERY: u32 = 10;

impl SensorsCollector {
    /// A collector reading `<sys>/class/{hwmon,thermal}`.
    pub fn new(paths: HostPaths, cfg: &SensorsConfig) -> Self {
        SensorsCollector {
            paths,
            filter: NameFilter::for_names("collectors.sensors", &cfg.include, &cfg.exclude),
            fans: cfg.fans,
            published: HashSet::new(),
            layout: Vec::new(),
            cycles_to_rescan: 0,
        }
    }

    /// Pushes `value` under `key`, or no value when it is implausible and
    /// the entity exists already, or nothing at all.
    fn push(&mut self, out: &mut Vec<Reading>, reading: Reading, plausible: bool) {
        if plausible {
            self.published.insert(reading.key.clone());
            out.push(reading);
        } else if self.published.contains(reading.key.as_str()) {
            out.push(Reading {
                value: Value::Missing,
                ..reading
            });
        }
    }
}

impl Collector for SensorsCollector {
    fn name(&self) -> &'static str {
        "sensors"
    }

    fn collect(&mut self, _tick: &Tick, out: &mut Vec<Reading>) -> Result<(), CollectError> {
        let mut cpu_max: Option<f64> = None;
        let mut any_cpu = false;
        let mut found = Vec::new();
        if self.cycles_to_rescan == 0 {
            self.layout = discover(&self.paths);
            self.cycles_to_rescan = RESCAN_EVERY;
        }
        self.cycles_to_rescan -= 1;
        for sensor in &self.layout {
            let raw = read_line(&sensor.input);
            if sensor.fan {
                if !self.fans || !self.filter.allows(&sensor.filter_id()) {
                    continue;
                }
                let rpm = raw.as_deref().and_then(parse_rpm);
                let ok = rpm.is_some_and(|r| r < 30_000);
                let reading = Reading::new(sensor.key(), sensor.name(), Kind::Rpm, rpm);
                found.push((reading, ok));
                continue;
            }
            let celsius = raw.as_deref().and_then(parse_millidegrees);
            let ok = celsius.is_some_and(plausible_celsius);
            if sensor.is_cpu() {
                any_cpu = true;
                if let Some(c) = celsius.filter(|c| plausible_celsius(*c)) {
                    cpu_max = Some(cpu_max.map_or(c, |m: f64| m.max(c)));
                }
            }
            if self.filter.allows(&sensor.filter_id()) {
                found.push((
                    Reading::new(sensor.key(), sensor.name(), Kind::Celsius, celsius),
                    ok,
                ));
            }
        }
        if any_cpu {
            let headline = Reading::new("cpu_temperature", "CPU temperature", Kind::Celsius, cpu_max);
            self.push(out, headline, cpu_max.is_some());
        }
        for (reading, ok) in found {
            self.push(out, reading, ok);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testing::*;
    use std::time::Instant;

    fn collect(sys: &str, cfg: &SensorsConfig) -> Vec<Reading> {
        let mut c = SensorsCollector::new(fixture_paths("proc/vm/t0", sys, "root/vm"), cfg);
        collect_once(&mut c, &tick_at(Instant::now(), 0))
    }

    fn named_values(readings: &[Reading]) -> Vec<(String, String, Value)> {
        readings
            .iter()
            .map(|r| (r.key.to_string(), r.name.to_string(), r.value.clone()))
            .collect()
    }

    fn row(key: &str, name: &str, v: f64) -> (String, String, Value) {
        (key.into(), name.into(), Value::Float(v))
    }

    #[test]
    fn a_nuc_shows_the_cpu_package_nvme_composite_and_acpi_but_not_every_core() {
        let out = collect("sys/nuc", &SensorsConfig::default());
        assert_eq!(
            named_values(&out),
            [
                row("cpu_temperature", "CPU temperature", 57.0),
                row("temp_acpitz", "ACPI", 27.8),
                row("temp_nvme_composite", "NVMe composite", 38.85),
                row("temp_coretemp_package_id_0", "CPU package", 57.0),
            ]
        );
        assert!(out.iter().all(|r| r.kind == Kind::Celsius));
    }

    #[test]
    fn an_empty_exclude_list_shows_every_core_and_the_zone_duplicate() {
        let cfg = SensorsConfig {
            exclude: vec![],
            ..SensorsConfig::default()
        };
        let keys: Vec<_> = collect("sys/nuc", &cfg).into_iter().map(|r| r.key).collect();
        assert_eq!(
            keys,
            [
                "cpu_temperature",
                "temp_acpitz",
                "temp_x86_pkg_temp",
                "temp_nvme_composite",
                "temp_nvme_sensor_1",
                "temp_nvme_sensor_2",
                "temp_coretemp_package_id_0",
                "temp_coretemp_core_0",
                "temp_coretemp_core_1",
                "temp_coretemp_core_2",
                "temp_coretemp_core_3",
            ]
        );
    }

    #[test]
    fn an_amd_desktop_shows_tctl_gpu_and_fans_and_skips_the_127_degree_placeholder() {
        let out = collect("sys/amd", &SensorsConfig::default());
        assert_eq!(
            named_values(&out),
            [
                row("cpu_temperature", "CPU temperature", 45.25),
                row("temp_k10temp_tctl", "CPU Tctl", 45.25),
                row("temp_nct6798_systin", "nct6798 SYSTIN", 33.0),
                row("temp_nct6798_cputin", "nct6798 CPUTIN", 40.5),
                ("fan_nct6798_fan1".into(), "nct6798 fan1".into(), Value::Int(1081)),
                ("fan_nct6798_fan2".into(), "nct6798 fan2".into(), Value::Int(0)),
                row("temp_amdgpu_edge", "GPU edge", 41.0),
                ("fan_amdgpu_fan1".into(), "GPU fan1".into(), Value::Int(0)),
            ]
        );
        let fan = out.iter().find(|r| r.key == "fan_nct6798_fan1").expect("fan");
        assert_eq!(fan.kind, Kind::Rpm);
    }

    #[test]
    fn fans_can_be_switched_off() {
        let cfg = SensorsConfig {
            fans: false,
            ..SensorsConfig::default()
        };
        assert!(collect("sys/amd", &cfg).iter().all(|r| r.kind == Kind::Celsius));
    }

    #[test]
    fn a_raspberry_pi_shows_its_zone_once_under_the_zone_name() {
        let out = collect("sys/pi", &SensorsConfig::default());
        assert_eq!(
            named_values(&out),
            [
                row("cpu_temperature", "CPU temperature", 48.686),
                row("temp_cpu_thermal", "cpu-thermal", 48.686),
            ]
        );
    }

    #[test]
    fn include_globs_pick_sensors_and_the_headline_stays() {
        let cfg = SensorsConfig {
            include: vec!["nvme/*".into()],
            ..SensorsConfig::default()
        };
        let keys: Vec<_> = collect("sys/nuc", &cfg).into_iter().map(|r| r.key).collect();
        assert_eq!(keys, ["cpu_temperature", "temp_nvme_composite"]);
    }

    #[test]
    fn a_host_without_hwmon_has_no_sensors_and_no_error() {
        assert_eq!(collect("sys/vm", &SensorsConfig::default()), []);
    }

    #[test]
    fn a_sensor_that_turns_absurd_keeps_its_entity_without_a_value() {
        let dir = tempfile::Builder::new()
            .prefix("n1-sensors")
            .tempdir()
            .expect("tempdir");
        let chip = dir.path().join("class/hwmon/hwmon0");
        std::fs::create_dir_all(&chip).expect("mkdir");
        std::fs::write(chip.join("name"), "coretemp\n").expect("write");
        std::fs::write(chip.join("temp1_label"), "Package id 0\n").expect("write");
        std::fs::write(chip.join("temp1_input"), "50000\n").expect("write");
        let paths = HostPaths {
            sys: dir.path().to_path_buf(),
            ..HostPaths::default()
        };
        let mut c = SensorsCollector::new(paths, &SensorsConfig::default());
        let first = collect_once(&mut c, &tick_at(Instant::now(), 0));
        assert_eq!(value_of(&first, "temp_coretemp_package_id_0"), Value::Float(50.0));
        std::fs::write(chip.join("temp1_input"), "127000\n").expect("write");
        let second = collect_once(&mut c, &tick_at(Instant::now(), 30));
        assert_eq!(value_of(&second, "temp_coretemp_package_id_0"), Value::Missing);
        assert_eq!(value_of(&second, "cpu_temperature"), Value::Missing);
    }

    #[test]
    fn a_chip_that_appears_later_shows_at_the_next_scan() {
        let dir = tempfile::Builder::new()
            .prefix("n1-sensors")
            .tempdir()
            .expect("tempdir");
        let write = |rel: &str, text: &str| {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        };
        write("class/hwmon/hwmon0/name", "nvme\n");
        write("class/hwmon/hwmon0/temp1_label", "Composite\n");
        write("class/hwmon/hwmon0/temp1_input", "38850\n");
        let paths = HostPaths {
            sys: dir.path().to_path_buf(),
            ..HostPaths::default()
        };
        let mut c = SensorsCollector::new(paths, &SensorsConfig::default());
        let start = Instant::now();
        assert_eq!(collect_once(&mut c, &tick_at(start, 0)).len(), 1);
        write("class/hwmon/hwmon1/name", "amdgpu\n");
        write("class/hwmon/hwmon1/temp1_label", "edge\n");
        write("class/hwmon/hwmon1/temp1_input", "41000\n");
        let counts: Vec<usize> = (1..=RESCAN_EVERY as u64)
            .map(|i| collect_once(&mut c, &tick_at(start, i * 30)).len())
            .collect();
        assert_eq!(counts.first(), Some(&1), "the scan is reused");
        assert_eq!(counts.last(), Some(&2), "and redone");
    }

    #[test]
    fn parsers_read_millidegrees_and_rpm_and_refuse_garbage() {
        assert_eq!(parse_millidegrees("48686\n"), Some(48.686));
        assert_eq!(parse_millidegrees("-5000"), Some(-5.0));
        assert_eq!(parse_millidegrees(""), None);
        assert_eq!(parse_millidegrees("n/a"), None);
        assert_eq!(parse_rpm("1081\n"), Some(1081));
        assert_eq!(parse_rpm("-1"), None);
        assert!(plausible_celsius(0.0) && plausible_celsius(105.0));
        assert!(!plausible_celsius(127.0) && !plausible_celsius(-273.15) && !plausible_celsius(-128.0));
    }

    #[test]
    fn an_invalid_glob_names_its_key() {
        let cfg = SensorsConfig {
            exclude: vec!["[".into()],
            ..SensorsConfig::default()
        };
        let err = super::super::CollectorSection::validate(&cfg, "collectors.sensors")
            .expect_err("invalid")
            .to_string();
        assert!(err.contains("collectors.sensors.exclude"), "{err}");
    }
}
