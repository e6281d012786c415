//! Facts about the host as a whole: when it booted, how many processes
//! run, which OS and kernel. (Whether it waits for a reboot is the
//! `reboot` source's, in `crate::systemd::reboot`.)

use std::ffi::OsStr;
use std::time::{Duration, Instant, SystemTime};

use procfs_core::KernelStats;

use super::cpu::parse_stat;
use super::{read_parsed, CollectError, Collector, ProcFile, Tick};
use crate::host::{kernel_release, os_release, HostPaths};
use crate::reading::{Kind, Reading, Value};

/// How long boot time, OS and kernel are kept before being read again.
/// They change at boot (which restarts us) or at an OS upgrade; /proc/stat
/// is one of the dearer files to generate on a many-core host.
const STATIC_REFRESH: Duration = Duration::from_secs(600);

/// How long a process count is reported before /proc is listed again.
/// Listing /proc makes the kernel walk every task: the dearest thing a
/// cycle did (0.37 ms of ~2 ms, issue 13), for a figure that is a trend.
const PROCESS_REFRESH: Duration = Duration::from_secs(60);

/// Reports boot time, process count, OS and kernel.
#[derive(Debug)]
pub struct SystemCollector {
    /// Where the host's /proc and / are.
    paths: HostPaths,
    /// Boot time, OS and kernel readings, and when they were read.
    facts: Option<(Instant, Vec<Reading>)>,
    /// The last process count, and when /proc was listed for it.
    processes: Option<(Instant, u64)>,
}

impl SystemCollector {
    /// A collector reading `<proc>` and a few files under `<root>`.
    pub fn new(paths: HostPaths) -> Self {
        SystemCollector {
            paths,
            facts: None,
            processes: None,
        }
    }

    /// Boot time, OS and kernel: the facts that change at boot or upgrade.
    fn read_facts(&self) -> Result<Vec<Reading>, CollectError> {
        let stats = read_parsed(&mut ProcFile::new(self.paths.proc("stat")), parse_stat)?;
        let mut facts =
            vec![Reading::new("boot_time", "Boot time", Kind::Timestamp, boot_time_of(&stats)).steady()];
        // A root without os-release (a minimal container image mounted as
        // the "host") has no OS to name: no reading rather than an error.
        if let Some(release) = os_release(&self.paths) {
            facts.push(
                Reading::new("os", "Operating system", Kind::Text, release.pretty_name)
                    .diagnostic()
                    .steady(),
            );
        }
        if let Some(kernel) = kernel_release(&self.paths) {
            facts.push(
                Reading::new("kernel", "Kernel", Kind::Text, kernel)
                    .diagnostic()
                    .steady(),
            );
        }
        Ok(facts)
    }

    /// How many processes `<proc>` lists.
    fn count_processes(&self) -> Result<u64, CollectError> {
        let io_error = |source| CollectError::Io {
            path: self.paths.proc.clone(),
            source,
        };
        let entries = std::fs::read_dir(&self.paths.proc).map_err(io_error)?;
        // A process may exit while we list; its entry failing is no error.
        Ok(count_pids(entries.filter_map(Result::ok).map(|e| e.file_name())))
    }
}

impl Collector for SystemCollector {
    fn name(&self) -> &'static str {
        "system"
    }

    fn collect(&mut self, tick: &Tick, out: &mut Vec<Reading>) -> Result<(), CollectError> {
        let fresh =
            matches!(&self.facts, Some((at, _)) if tick.mono.saturating_duration_since(*at) < STATIC_REFRESH);
        if !fresh {
            self.facts = Some((tick.mono, self.read_facts()?));
        }
        if let Some((_, facts)) = &self.facts {
            out.extend_from_slice(facts);
        }
        let count = match self.processes {
            Some((at, n)) if tick.mono.saturating_duration_since(at) < PROCESS_REFRESH => n,
            _ => {
                let n = self.count_processes()?;
                self.processes = Some((tick.mono, n));
                n
            }
        };
        out.push(Reading::new("processes", "Processes", Kind::Count, count));
        Ok(())
    }
}

/// When the host booted (`btime`): a fixed point in time, so HA shows it
/// as "3 days ago" without a new value every cycle as an uptime would need.
pub fn boot_time_of(stats: &KernelStats) -> Value {
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_secs(stats.btime))
        .map_or(Value::Missing, Value::Time)
}

/// How many of `names` are process ids (all digits), as in a /proc listing.
pub fn count_pids<I, S>(names: I) -> u64
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    names.into_iter().filter(|n| is_pid(n.as_ref())).count() as u64
}

fn is_pid(name: &OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    !bytes.is_empty() && bytes.iter().all(u8::is_ascii_digit)
}

/// Uptime, boot time and processes (`[collectors.system]`): nothing to set but on/off.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SystemConfig {
    /// Collect this.
    pub enabled: bool,
}

impl Default for SystemConfig {
    fn default() -> Self {
        SystemConfig { enabled: true }
    }
}

impl super::CollectorSection for SystemConfig {
    fn build(&self, cx: &crate::context::Context) -> Option<Box<dyn super::Collector>> {
        self.enabled
            .then(|| Box::new(SystemCollector::new(cx.paths.clone())) as Box<dyn super::Collector>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testing::*;
    use std::time::Instant;

    fn text(k: &str, v: &str) -> (String, Value) {
        (k.to_string(), Value::Text(v.to_string()))
    }

    #[test]
    fn two_cycles_report_the_captured_host() {
        let start = Instant::now();
        let mut c = SystemCollector::new(fixture_paths("proc/vm/t0", "sys/vm", "root/vm"));
        let first = collect_once(&mut c, &tick_at(start, 0));
        c.paths = fixture_paths("proc/vm/t1", "sys/vm", "root/vm");
        let cached = collect_once(&mut c, &tick_at(start, 10));
        assert_eq!(
            value_of(&cached, "processes"),
            Value::Int(5),
            "counted once a minute"
        );
        let second = collect_once(&mut c, &tick_at(start, 60));
        let booted = Value::Time(SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_273_458));
        for (out, processes) in [(&first, 5), (&second, 4)] {
            assert_eq!(
                keyed_values(out),
                [
                    ("boot_time".to_string(), booted.clone()),
                    text("os", "Debian GNU/Linux 12 (bookworm)"),
                    text("kernel", "6.18.44-fc-v669"),
                    ("processes".to_string(), Value::Int(processes)),
                ]
            );
        }
        let shape: Vec<_> = second
            .iter()
            .map(|r| (r.name.as_str(), r.kind, r.diagnostic))
            .collect();
        assert_eq!(
            shape,
            [
                ("Boot time", Kind::Timestamp, false),
                ("Operating system", Kind::Text, true),
                ("Kernel", Kind::Text, true),
                ("Processes", Kind::Count, false),
            ]
        );
    }

    #[test]
    fn os_and_kernel_are_read_again_only_after_the_refresh_interval() {
        let start = Instant::now();
        let mut c = SystemCollector::new(fixture_paths("proc/vm/t0", "sys/vm", "root/vm"));
        collect_once(&mut c, &tick_at(start, 0));
        c.paths = fixture_paths("proc/vm/t0", "sys/vm", "root/reboot");
        let cached = collect_once(&mut c, &tick_at(start, 30));
        assert_eq!(
            value_of(&cached, "os"),
            Value::Text("Debian GNU/Linux 12 (bookworm)".into())
        );
        let refreshed = collect_once(&mut c, &tick_at(start, 601));
        assert_eq!(
            value_of(&refreshed, "os"),
            Value::Text("Ubuntu 24.04.1 LTS".into())
        );
    }

    #[test]
    fn a_root_with_only_usr_lib_os_release_names_its_os() {
        let mut c = SystemCollector::new(fixture_paths("proc/vm/t0", "sys/vm", "root/reboot"));
        let out = collect_once(&mut c, &tick_at(Instant::now(), 0));
        assert_eq!(value_of(&out, "os"), Value::Text("Ubuntu 24.04.1 LTS".into()));
    }

    #[test]
    fn a_root_without_os_release_has_no_os_reading() {
        let mut c = SystemCollector::new(fixture_paths("proc/vm/t0", "sys/vm", "sys/vm"));
        let out = collect_once(&mut c, &tick_at(Instant::now(), 0));
        assert!(out.iter().all(|r| r.key != "os"), "{out:?}");
    }

    #[test]
    fn count_pids_counts_only_all_digit_names() {
        assert_eq!(
            count_pids(["1", "42", "self", "thread-self", "net", "4a", "", "sys"]),
            2
        );
    }
}
