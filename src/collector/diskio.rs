//! Block device throughput from `<proc>/diskstats`, for physical devices
//! only: partitions, device-mapper, loop, ram and zram devices would count
//! the same bytes again or none that reach a disk.

use std::collections::HashMap;
use std::time::Instant;

use serde::Deserialize;

use super::filter::NameFilter;
use super::CollectorSection;
use super::{rate_per_second, CollectError, Collector, ProcFile, Tick};
use crate::context::{check_globs, Context};
use crate::host::HostPaths;
use crate::reading::{key, label, Kind, Label, Labels, PartLabels, Reading};

/// diskstats counts in 512-byte sectors whatever the device's own sector
/// size (Documentation/admin-guide/iostats.rst).
const SECTOR_BYTES: u64 = 512;

/// Reports bytes read and written per second per physical block device.
#[derive(Debug)]
pub struct DiskIoCollector {
    /// Where the host's /proc and /sys are.
    paths: HostPaths,
    /// `<proc>/diskstats`, kept open.
    diskstats: ProcFile,
    /// Which devices to report (`devices_include`/`_exclude`).
    devices: NameFilter,
    /// Each device's counters at the previous cycle; a device not seen then
    /// gets missing rates this cycle.
    prev: HashMap<String, DiskCounters>,
    /// Whether each device name seen is reported (a physical disk the
    /// filters allow), decided once: a stat of /sys per device per cycle
    /// cost more than the rest of the collector, and a name's nature does
    /// not change while it exists.
    physical: HashMap<String, bool>,
    /// Each device's reading keys and names ([`diskio_labels`]).
    labels: Labels,
}

/// Cumulative bytes of one device at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskCounters {
    /// Bytes read since boot.
    pub read_bytes: u64,
    /// Bytes written since boot.
    pub written_bytes: u64,
    /// When they were read.
    pub at: Instant,
}

impl DiskIoCollector {
    /// A collector with the filters of `config`, compiled once here.
    pub fn new(paths: HostPaths, config: &DiskIoConfig) -> Self {
        DiskIoCollector {
            diskstats: ProcFile::new(paths.proc("diskstats")),
            paths,
            devices: NameFilter::for_names(
                "collectors.diskio.devices",
                &config.devices_include,
                &config.devices_exclude,
            ),
            prev: HashMap::new(),
            physical: HashMap::new(),
            labels: Labels::default(),
        }
    }
}

/// Whether device `name` is reported: a whole physical device the
/// `devices` filter allows. Decided once per name (`known`).
fn reported(paths: &HostPaths, devices: &NameFilter, known: &mut HashMap<String, bool>, name: &str) -> bool {
    if let Some(known) = known.get(name) {
        return *known;
    }
    let reported = devices.allows(name) && is_physical(paths, name);
    known.insert(name.to_string(), reported);
    reported
}

/// Whether `name` is a whole physical device: only those have a `device`
/// link in /sys/block (partitions are not in /sys/block at all; loop, dm,
/// zram are virtual). A `/` in a name (cciss/c0d0) is `!` in sysfs.
fn is_physical(paths: &HostPaths, name: &str) -> bool {
    paths
        .sys(&format!("block/{}/device", name.replace('/', "!")))
        .exists()
}

impl Collector for DiskIoCollector {
    fn name(&self) -> &'static str {
        "diskio"
    }

    fn collect(&mut self, tick: &Tick, out: &mut Vec<Reading>) -> Result<(), CollectError> {
        let (path, text) = self.diskstats.read_with_path()?;
        let mut lines = 0;
        let mut next = HashMap::with_capacity(self.prev.len());
        for line in text.lines() {
            // The name first: most lines are partitions, loop or zram
            // devices, decided once by name and not parsed further.
            let Some(name) = line.split_ascii_whitespace().nth(2) else {
                continue;
            };
            lines += 1;
            if !reported(&self.paths, &self.devices, &mut self.physical, name) {
                continue;
            }
            let Some(stat) = parse_diskstats_line(line).map_err(|e| CollectError::parse(path, e))? else {
                continue;
            };
            let now = DiskCounters {
                read_bytes: stat.sectors_read.saturating_mul(SECTOR_BYTES),
                written_bytes: stat.sectors_written.saturating_mul(SECTOR_BYTES),
                at: tick.mono,
            };
            let labels = self.labels.of(stat.name, diskio_labels);
            out.extend(labelled_diskio_readings(labels, self.prev.get(stat.name), &now));
            next.insert(stat.name.to_string(), now);
        }
        self.prev = next;
        self.labels.sweep();
        // Forget devices that went away (a USB disk, a loop device): the
        // next device of that name is decided afresh.
        if self.physical.len() > lines {
            let seen: std::collections::HashSet<&str> = text
                .lines()
                .filter_map(|l| l.split_ascii_whitespace().nth(2))
                .collect();
            self.physical.retain(|name, _| seen.contains(name.as_str()));
        }
        Ok(())
    }
}

/// The figures of one /proc/diskstats line that the rates come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskStatLine<'a> {
    /// The device's name (`sda`, `nvme0n1`, `loop0`).
    pub name: &'a str,
    /// 512-byte sectors read since boot.
    pub sectors_read: u64,
    /// 512-byte sectors written since boot.
    pub sectors_written: u64,
}

/// Parses every line of /proc/diskstats (see [`parse_diskstats_line`]).
pub fn parse_diskstats(text: &str) -> Result<Vec<DiskStatLine<'_>>, String> {
    text.lines()
        .filter_map(|line| parse_diskstats_line(line).transpose())
        .collect()
}

/// Parses one /proc/diskstats line (`major minor name reads merged
/// sectors_read ms writes merged sectors_written …`); `None` for a blank
/// line. Only the fields used are parsed, without allocating.
pub fn parse_diskstats_line(line: &str) -> Result<Option<DiskStatLine<'_>>, String> {
    let mut fields = line.split_ascii_whitespace();
    let Some(major) = fields.next() else {
        return Ok(None);
    };
    let bad = || format!("not a diskstats line: {line}");
    let (Some(minor), Some(name)) = (fields.next(), fields.next()) else {
        return Err(bad());
    };
    major.parse::<u32>().map_err(|_| bad())?;
    minor.parse::<u32>().map_err(|_| bad())?;
    // After the name: reads, merged, sectors read, ms, writes, merged,
    // sectors written.
    let mut number = |skip: usize| -> Result<u64, String> {
        fields.nth(skip).and_then(|f| f.parse().ok()).ok_or_else(bad)
    };
    let sectors_read = number(2)?;
    let sectors_written = number(3)?;
    Ok(Some(DiskStatLine {
        name,
        sectors_read,
        sectors_written,
    }))
}

/// The read and write rates of device `dev` since `prev`; missing without
/// an earlier sample or after the counters went backwards.
pub fn diskio_readings(dev: &str, prev: Option<&DiskCounters>, now: &DiskCounters) -> [Reading; 2] {
    labelled_diskio_readings(&diskio_labels(dev), prev, now)
}

/// The keys and names of device `dev`'s readings: read, write.
pub fn diskio_labels(dev: &str) -> PartLabels {
    vec![
        (
            key(&["diskio", dev, "read"]).into(),
            format!("Disk {dev} read").into(),
        ),
        (
            key(&["diskio", dev, "write"]).into(),
            format!("Disk {dev} write").into(),
        ),
    ]
}

/// [`diskio_readings`] with the device's [`diskio_labels`].
fn labelled_diskio_readings(
    labels: &[(Label, Label)],
    prev: Option<&DiskCounters>,
    now: &DiskCounters,
) -> [Reading; 2] {
    let read = rate_per_second(prev.map(|p| (p.read_bytes, p.at)), (now.read_bytes, now.at));
    let write = rate_per_second(prev.map(|p| (p.written_bytes, p.at)), (now.written_bytes, now.at));
    let reading = |i, value: Option<f64>| {
        let (key, name) = label(labels, i);
        Reading::new(key, name, Kind::BytesPerSecond, value)
    };
    [reading(0, read), reading(1, write)]
}

/// Block device throughput.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiskIoConfig {
    /// Collect this.
    pub enabled: bool,
    /// Only devices matching one of these globs (empty: every physical device).
    #[serde(deserialize_with = "crate::context::comma_list")]
    pub devices_include: Vec<String>,
    /// Devices matching one of these globs are left out.
    #[serde(deserialize_with = "crate::context::comma_list")]
    pub devices_exclude: Vec<String>,
}

impl Default for DiskIoConfig {
    fn default() -> Self {
        DiskIoConfig {
            enabled: true,
            devices_include: vec![],
            devices_exclude: vec![],
        }
    }
}

impl CollectorSection for DiskIoConfig {
    fn validate(&self, key: &str) -> Result<(), crate::error::ConfigError> {
        check_globs(&format!("{key}.devices_include"), &self.devices_include)?;
        check_globs(&format!("{key}.devices_exclude"), &self.devices_exclude)
    }

    fn build(&self, cx: &Context) -> Option<Box<dyn super::Collector>> {
        self.enabled
            .then(|| Box::new(DiskIoCollector::new(cx.paths.clone(), self)) as Box<dyn super::Collector>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testing::*;
    use crate::reading::Value;

    fn missing(k: &str) -> (String, Value) {
        (k.to_string(), Value::Missing)
    }

    #[test]
    fn a_diskstats_line_gives_its_name_and_sectors_and_garbage_is_an_error() {
        let line = "   8       0 sda 6473 2036 582196 1734 9130 7637 309794 8212 0 11700 11105 0 0 0 0";
        assert_eq!(
            parse_diskstats_line(line),
            Ok(Some(DiskStatLine {
                name: "sda",
                sectors_read: 582_196,
                sectors_written: 309_794
            }))
        );
        assert_eq!(parse_diskstats_line("  "), Ok(None));
        assert!(parse_diskstats_line("8 0 sda 1 2").is_err());
        assert!(parse_diskstats_line("x 0 sda 1 2 3 4 5 6 7 8 9 10 11").is_err());
        let text = std::fs::read_to_string(fixture("proc/vm/t0/diskstats")).expect("fixture");
        assert!(parse_diskstats(&text)
            .expect("parse")
            .iter()
            .any(|d| d.name == "vda"));
    }

    #[test]
    fn two_cycles_give_bytes_per_second_of_the_physical_disk_only() {
        let start = Instant::now();
        let mut c = DiskIoCollector::new(
            fixture_paths("proc/vm/t0", "sys/vm", "root/vm"),
            &DiskIoConfig::default(),
        );
        let first = collect_once(&mut c, &tick_at(start, 0));
        assert_eq!(
            keyed_values(&first),
            [missing("diskio_vda_read"), missing("diskio_vda_write")]
        );
        c.diskstats = ProcFile::new(fixture_paths("proc/vm/t1", "sys/vm", "root/vm").proc("diskstats"));
        let second = collect_once(&mut c, &tick_at(start, 10));
        // vda: 176 sectors read and 750888 written in the 10 s between.
        assert_eq!(
            keyed_values(&second),
            [
                ("diskio_vda_read".to_string(), Value::Float(176.0 * 512.0 / 10.0)),
                (
                    "diskio_vda_write".to_string(),
                    Value::Float(750_888.0 * 512.0 / 10.0)
                ),
            ]
        );
        let names: Vec<_> = second.iter().map(|r| (r.name.as_str(), r.kind)).collect();
        assert_eq!(
            names,
            [
                ("Disk vda read", Kind::BytesPerSecond),
                ("Disk vda write", Kind::BytesPerSecond)
            ]
        );
    }

    #[test]
    fn partitions_mappers_loops_and_zram_are_left_out() {
        let mut c = DiskIoCollector::new(
            fixture_paths("proc/nvme", "sys/nvme", "root/vm"),
            &DiskIoConfig::default(),
        );
        let out = collect_once(&mut c, &tick_at(Instant::now(), 0));
        let keys: Vec<_> = out.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "diskio_nvme0n1_read",
                "diskio_nvme0n1_write",
                "diskio_sda_read",
                "diskio_sda_write"
            ]
        );
    }

    #[test]
    fn the_device_globs_narrow_the_physical_devices() {
        let config = DiskIoConfig {
            devices_exclude: vec!["sd*".into()],
            ..DiskIoConfig::default()
        };
        let mut c = DiskIoCollector::new(fixture_paths("proc/nvme", "sys/nvme", "root/vm"), &config);
        let out = collect_once(&mut c, &tick_at(Instant::now(), 0));
        let keys: Vec<_> = out.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["diskio_nvme0n1_read", "diskio_nvme0n1_write"]);
    }

    #[test]
    fn counters_going_backwards_give_missing_not_a_huge_rate() {
        let t0 = Instant::now();
        let prev = DiskCounters {
            read_bytes: 1000,
            written_bytes: 1000,
            at: t0,
        };
        let now = DiskCounters {
            read_bytes: 10,
            written_bytes: 3000,
            at: t0 + std::time::Duration::from_secs(2),
        };
        let out = diskio_readings("sda", Some(&prev), &now);
        assert_eq!(
            keyed_values(&out),
            [
                missing("diskio_sda_read"),
                ("diskio_sda_write".to_string(), Value::Float(1000.0))
            ]
        );
    }
}
