//! Filesystem usage per mount point: the mounts from `<proc>/1/mountinfo`
//! (the host's mount namespace, which a container sees through the host's
//! /proc), filtered by the config, each measured with statvfs(2) under
//! `host.root`.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use procfs_core::process::MountInfos;
use procfs_core::{FromRead, ProcError};

use serde::Deserialize;

use super::filter::NameFilter;
use super::CollectorSection;
use super::{read_file, CollectError, Collector, Tick};
use crate::context::{check_globs, Context};
use crate::host::HostPaths;
use crate::reading::{key, label, Kind, Label, Labels, PartLabels, Reading, Value};

/// Measures a filesystem: statvfs(2) normally, a table in tests.
pub type StatFs = fn(&Path) -> io::Result<FsStats>;

/// Reports used and free space, and inode use, per mounted filesystem.
#[derive(Debug)]
pub struct DiskCollector {
    /// Where the host's /proc and / are.
    paths: HostPaths,
    /// Which mount points to report (`mount_points_include`/`_exclude`).
    mount_points: NameFilter,
    /// Which filesystem types to report (`fs_types_include`/`_exclude`).
    fs_types: NameFilter,
    /// How a mount point is measured; the seam that lets tests give exact
    /// numbers for mounts this machine does not have.
    stat_fs: StatFs,
    /// Mount points whose statvfs is still running in its own thread: a
    /// network filesystem whose server went away blocks it for minutes.
    in_flight: Arc<Mutex<HashSet<String>>>,
    /// How long to wait for a filesystem that may hang.
    stat_timeout: Duration,
    /// Mount points reported as hung (logged once, and once on recovery).
    hung: HashSet<String>,
    /// The mounts selected from the last mountinfo read, and the file kept
    /// open to learn when the table changes (see [`MountTable`]).
    table: Option<MountTable>,
    /// Each mount point's reading keys and names ([`disk_labels`]).
    labels: Labels,
    /// pid 1's mountinfo and our own, under the host's /proc.
    init_table: PathBuf,
    own_table: PathBuf,
}

/// The selected mounts, each with where it is under the host's root:
/// shared with the kept [`MountTable`], so a cycle copies nothing.
type Selected = Arc<[(Mount, PathBuf)]>;

/// The selected mounts, re-read only when the mount table changed: the
/// kernel flags an open mountinfo with POLLPRI after any mount or unmount
/// in its namespace (proc(5)), so a zero-timeout poll replaces reading and
/// parsing the whole table every cycle. statvfs still runs every cycle.
#[derive(Debug)]
struct MountTable {
    /// Open since before the read the mounts came from, so no change is missed.
    watch: std::fs::File,
    /// The mounts worth measuring, in mountinfo order.
    mounts: Selected,
}

impl MountTable {
    /// True when the kernel says the table changed since `watch` was
    /// opened or last polled (a regular file, as in tests, never does).
    fn changed(&self) -> bool {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let mut fds = [PollFd::new(&self.watch, PollFlags::PRI)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        match poll(&mut fds, Some(&zero)) {
            Ok(_) => fds[0]
                .revents()
                .intersects(PollFlags::PRI | PollFlags::ERR | PollFlags::NVAL),
            Err(_) => true,
        }
    }
}

/// How long a network or FUSE filesystem gets to answer statvfs.
const STAT_TIMEOUT: Duration = Duration::from_secs(1);

/// The answer of a statvfs that may hang.
enum Bounded {
    Done(io::Result<FsStats>),
    /// No answer within the timeout.
    TimedOut,
    /// An earlier call has still not returned.
    StillRunning,
}

/// Filesystems reached over a network or through a user-space daemon: the
/// ones whose statvfs can block for minutes when the far side is gone.
/// Local filesystems are measured inline (a thread each would cost more
/// than the call).
fn may_hang(fs_type: &str) -> bool {
    matches!(
        fs_type,
        "nfs" | "nfs4" | "cifs" | "smb3" | "smbfs" | "ceph" | "glusterfs" | "9p" | "afs" | "lustre" | "davfs"
    ) || fs_type.starts_with("fuse")
}

/// One line of mountinfo, the parts we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The mount's id, which mounts on top of it name as their parent.
    pub id: i32,
    /// The id of the mount this one sits on.
    pub parent_id: i32,
    /// `major:minor` of the filesystem's device.
    pub device: String,
    /// The directory within the filesystem that is mounted here (not `/`
    /// for bind mounts of a subtree).
    pub root: String,
    /// Where it is mounted, with mountinfo's octal escapes undone.
    pub mount_point: String,
    /// Filesystem type, e.g. `ext4`, `fuse.sshfs`.
    pub fs_type: String,
}

/// What statvfs(2) says about a filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FsStats {
    /// Size of a block in the counts below (`f_frsize`).
    pub block_size: u64,
    /// Blocks in the filesystem.
    pub blocks: u64,
    /// Free blocks, including those reserved for root.
    pub blocks_free: u64,
    /// Free blocks an unprivileged user may use.
    pub blocks_available: u64,
    /// Inodes in the filesystem; 0 where the filesystem has no fixed table
    /// (btrfs, some network filesystems).
    pub files: u64,
    /// Free inodes.
    pub files_free: u64,
}

impl DiskCollector {
    /// A collector with the filters of `config`, compiled once here.
    pub fn new(paths: HostPaths, config: &DiskConfig) -> Self {
        DiskCollector {
            init_table: paths.proc("1/mountinfo"),
            own_table: paths.proc("self/mountinfo"),
            paths,
            mount_points: NameFilter::for_paths(
                "collectors.disk.mount_points",
                &config.mount_points_include,
                &config.mount_points_exclude,
            ),
            fs_types: NameFilter::for_names(
                "collectors.disk.fs_types",
                &config.fs_types_include,
                &config.fs_types_exclude,
            ),
            stat_fs: statvfs_stats,
            in_flight: Arc::default(),
            stat_timeout: STAT_TIMEOUT,
            hung: HashSet::new(),
            table: None,
            labels: Labels::default(),
        }
    }

    /// statvfs in a thread of its own, waited for `stat_timeout`. While it
    /// has not returned, the mount counts as hung and no second thread is
    /// started for it; the thread clears the mark when the call returns.
    fn stat_bounded(&self, mount_point: &str, at: std::path::PathBuf) -> Bounded {
        {
            let Ok(mut in_flight) = self.in_flight.lock() else {
                return Bounded::StillRunning;
            };
            if !in_flight.insert(mount_point.to_string()) {
                return Bounded::StillRunning;
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let in_flight = Arc::clone(&self.in_flight);
        let stat_fs = self.stat_fs;
        let name = mount_point.to_string();
        let spawned = std::thread::Builder::new()
            .name("statvfs".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let result = stat_fs(&at);
                if let Ok(mut set) = in_flight.lock() {
                    set.remove(&name);
                }
                let _ = tx.send(result);
            });
        if let Err(e) = spawned {
            if let Ok(mut set) = self.in_flight.lock() {
                set.remove(mount_point);
            }
            return Bounded::Done(Err(e));
        }
        match rx.recv_timeout(self.stat_timeout) {
            Ok(result) => Bounded::Done(result),
            Err(_) => Bounded::TimedOut,
        }
    }

    /// The host's mount table: pid 1's, which is the host's namespace even
    /// when we run in a container with the host's /proc; our own when pid 1's
    /// is unreadable (no CAP_SYS_PTRACE, hidepid).
    fn read_mountinfo(&self) -> Result<(std::path::PathBuf, String, Option<std::fs::File>), CollectError> {
        // Opened before the read: a change in between is reported next cycle.
        let read = |path: std::path::PathBuf| {
            let watch = std::fs::File::open(&path).ok();
            read_file(&path).map(|text| (path, text, watch))
        };
        read(self.init_table.clone()).or_else(|error| {
            tracing::debug!(%error, "falling back to self/mountinfo");
            read(self.own_table.clone())
        })
    }

    /// The mounts to measure: from the kept table while the kernel reports
    /// no change, else read, parsed and selected again.
    fn mounts(&mut self) -> Result<Selected, CollectError> {
        if let Some(t) = &self.table {
            if !t.changed() {
                return Ok(Arc::clone(&t.mounts));
            }
        }
        self.table = None;
        let (path, text, watch) = self.read_mountinfo()?;
        let mounts = parse_mountinfo(&text).map_err(|e| CollectError::parse(&path, e))?;
        let mounts: Selected = select_mounts(mounts, &self.mount_points, &self.fs_types)
            .into_iter()
            .map(|m| {
                let at = self.paths.root(&m.mount_point);
                (m, at)
            })
            .collect();
        if let Some(watch) = watch {
            self.table = Some(MountTable {
                watch,
                mounts: Arc::clone(&mounts),
            });
        }
        Ok(mounts)
    }
}

impl Collector for DiskCollector {
    fn name(&self) -> &'static str {
        "disk"
    }

    fn collect(&mut self, _tick: &Tick, out: &mut Vec<Reading>) -> Result<(), CollectError> {
        for (mount, at) in self.mounts()?.iter() {
            let result = if may_hang(&mount.fs_type) {
                match self.stat_bounded(&mount.mount_point, at.clone()) {
                    Bounded::Done(result) => {
                        if self.hung.remove(&mount.mount_point) {
                            tracing::info!(mount_point = %mount.mount_point, "statvfs answers again");
                        }
                        result
                    }
                    hung => {
                        if matches!(hung, Bounded::TimedOut) && self.hung.insert(mount.mount_point.clone()) {
                            tracing::warn!(mount_point = %mount.mount_point, fs_type = %mount.fs_type, timeout_ms = self.stat_timeout.as_millis() as u64, "statvfs does not answer; its entities show no value until it does");
                        }
                        // The mount is there but not answering: keep its
                        // entities (inodes too), without values.
                        let shape = FsStats {
                            files: 1,
                            ..FsStats::default()
                        };
                        out.extend(
                            disk_readings(&mount.mount_point, &shape)
                                .into_iter()
                                .map(|r| Reading {
                                    value: Value::Missing,
                                    ..r
                                }),
                        );
                        continue;
                    }
                }
            } else {
                (self.stat_fs)(at)
            };
            match result {
                // A filesystem without blocks (proc, sysfs let in by a wide
                // filter) has no usage to speak of.
                Ok(stats) if stats.blocks == 0 => {
                    tracing::debug!(mount_point = %mount.mount_point, fs_type = %mount.fs_type, "skipping mount without blocks");
                }
                Ok(stats) => {
                    let labels = self.labels.of(&mount.mount_point, disk_labels);
                    out.extend(labelled_disk_readings(labels, &stats));
                }
                // One stale NFS share or unreadable mount must not cost us
                // every other filesystem.
                Err(error) => {
                    tracing::debug!(mount_point = %mount.mount_point, path = %at.display(), %error, "skipping mount: statvfs failed");
                }
            }
        }
        self.labels.sweep();
        Ok(())
    }
}

/// Parses mountinfo with procfs-core, undoing the octal escapes it leaves
/// in mount points (`/mnt/my\040disk`).
pub fn parse_mountinfo(text: &str) -> Result<Vec<Mount>, ProcError> {
    let infos = MountInfos::from_read(text.as_bytes())?;
    Ok(infos
        .into_iter()
        .map(|m| Mount {
            id: m.mnt_id,
            parent_id: m.pid,
            device: m.majmin,
            root: unescape_octal(&m.root),
            mount_point: unescape_octal(&m.mount_point.to_string_lossy()),
            fs_type: m.fs_type,
        })
        .collect())
}

/// Undoes the `\ooo` escapes the kernel writes for space, tab, newline and
/// backslash in mountinfo paths; anything else is kept as it is.
pub fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| b == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)))
            .and_then(|d| u8::from_str_radix(std::str::from_utf8(d).ok()?, 8).ok());
        match octal {
            Some(decoded) => {
                out.push(decoded);
                i += 4;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mounts worth reporting, in mountinfo order:
/// * only the visible one where several are stacked on one mount point
///   (they would all measure the top one, under one key);
/// * those the mount point and type filters allow;
/// * one per filesystem (device): a bind mount of a directory of an
///   already-listed filesystem (`/run/netns` after `ip netns add`, a
///   container volume) measures the same space, so the filesystem is
///   reported once, at its shortest mount point.
pub fn select_mounts(mounts: Vec<Mount>, mount_points: &NameFilter, fs_types: &NameFilter) -> Vec<Mount> {
    let covered: HashSet<(i32, &str)> = mounts
        .iter()
        .map(|m| (m.parent_id, m.mount_point.as_str()))
        .collect();
    let visible: Vec<&Mount> = mounts
        .iter()
        .filter(|m| !covered.contains(&(m.id, m.mount_point.as_str())))
        .filter(|m| mount_points.allows(&m.mount_point) && fs_types.allows(&m.fs_type))
        .collect();
    let mut shortest: HashMap<&str, &str> = HashMap::new();
    for m in &visible {
        let best = shortest.entry(&m.device).or_insert(&m.mount_point);
        if (m.mount_point.len(), m.mount_point.as_str()) < (best.len(), *best) {
            *best = &m.mount_point;
        }
    }
    visible
        .iter()
        .filter(|m| shortest.get(m.device.as_str()) == Some(&m.mount_point.as_str()))
        .map(|m| (*m).clone())
        .collect()
}

/// The readings of one filesystem, named after its raw mount point.
pub fn disk_readings(mount_point: &str, s: &FsStats) -> Vec<Reading> {
    labelled_disk_readings(&disk_labels(mount_point), s)
}

/// The keys and names of a mount point's readings: used, free, inodes used.
pub fn disk_labels(mount_point: &str) -> PartLabels {
    [("used", "used"), ("free", "free"), ("inodes_used", "inodes used")]
        .iter()
        .map(|(k, n)| {
            (
                key(&["disk", mount_point, k]).into(),
                format!("Disk {mount_point} {n}").into(),
            )
        })
        .collect()
}

/// [`disk_readings`] with the mount point's [`disk_labels`].
fn labelled_disk_readings(labels: &[(Label, Label)], s: &FsStats) -> Vec<Reading> {
    let reading = |i, kind, value: Value| {
        let (key, name) = label(labels, i);
        Reading::new(key, name, kind, value)
    };
    let used_blocks = s.blocks.saturating_sub(s.blocks_free);
    // df's formula: the root reserve counts neither as used nor as usable,
    // so a full disk reads 100 % to a user even with reserved blocks left.
    let usable = used_blocks.saturating_add(s.blocks_available);
    let used_percent = (usable > 0).then(|| used_blocks as f64 / usable as f64 * 100.0);
    let mut out = vec![
        reading(0, Kind::Percent, used_percent.into()),
        reading(
            1,
            Kind::Bytes,
            s.blocks_available.saturating_mul(s.block_size).into(),
        ),
    ];
    if s.files > 0 {
        let used_files = s.files.saturating_sub(s.files_free);
        out.push(reading(
            2,
            Kind::Percent,
            (used_files as f64 / s.files as f64 * 100.0).into(),
        ));
    }
    out
}

/// statvfs(2) of `path`.
pub fn statvfs_stats(path: &Path) -> io::Result<FsStats> {
    let s = rustix::fs::statvfs(path)?;
    Ok(FsStats {
        // Some filesystems leave the fragment size 0; the block size is
        // then the unit of the counts.
        block_size: if s.f_frsize > 0 { s.f_frsize } else { s.f_bsize },
        blocks: s.f_blocks,
        blocks_free: s.f_bfree,
        blocks_available: s.f_bavail,
        files: s.f_files,
        files_free: s.f_ffree,
    })
}

/// Filesystems, per mount point.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiskConfig {
    /// Collect this.
    pub enabled: bool,
    /// Only mount points matching one of these globs (empty: all).
    #[serde(deserialize_with = "crate::context::comma_list")]
    pub mount_points_include: Vec<String>,
    /// Mount points matching one of these globs are left out.
    #[serde(deserialize_with = "crate::context::comma_list")]
    pub mount_points_exclude: Vec<String>,
    /// Only these filesystem types (empty: all).
    #[serde(deserialize_with = "crate::context::comma_list")]
    pub fs_types_include: Vec<String>,
    /// These filesystem types are left out.
    #[serde(deserialize_with = "crate::context::comma_list")]
    pub fs_types_exclude: Vec<String>,
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            enabled: true,
            mount_points_include: vec![],
            mount_points_exclude: [
                "/proc",
                "/proc/**",
                "/sys",
                "/sys/**",
                "/dev",
                "/dev/**",
                "/run/credentials/**",
                "/run/user/**",
                "/var/lib/containers/storage/**",
                "/var/lib/docker/**",
                "/var/lib/kubelet/**",
                "/snap/**",
                "/boot/efi",
            ]
            .map(String::from)
            .to_vec(),
            fs_types_include: vec![],
            fs_types_exclude: [
                "autofs",
                "binfmt_misc",
                "bpf",
                "cgroup",
                "cgroup2",
                "configfs",
                "debugfs",
                "devpts",
                "devtmpfs",
                "efivarfs",
                "fuse.lxcfs",
                "fuse.portal",
                "fusectl",
                "hugetlbfs",
                "iso9660",
                "mqueue",
                "nsfs",
                "overlay",
                "proc",
                "pstore",
                "ramfs",
                "rpc_pipefs",
                "securityfs",
                "selinuxfs",
                "squashfs",
                "erofs",
                "sysfs",
                "tmpfs",
                "tracefs",
                "nfsd",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

impl CollectorSection for DiskConfig {
    fn validate(&self, key: &str) -> Result<(), crate::error::ConfigError> {
        check_globs(&format!("{key}.mount_points_include"), &self.mount_points_include)?;
        check_globs(&format!("{key}.mount_points_exclude"), &self.mount_points_exclude)?;
        check_globs(&format!("{key}.fs_types_include"), &self.fs_types_include)?;
        check_globs(&format!("{key}.fs_types_exclude"), &self.fs_types_exclude)
    }

    fn build(&self, cx: &Context) -> Option<Box<dyn super::Collector>> {
        self.enabled
            .then(|| Box::new(DiskCollector::new(cx.paths.clone(), self)) as Box<dyn super::Collector>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::testing::*;
    use crate::reading::Value;
    use std::time::Instant;

    fn read_fixture(rel: &str) -> String {
        std::fs::read_to_string(fixture(rel)).expect("fixture")
    }

    fn default_filters() -> (NameFilter, NameFilter) {
        let d = DiskConfig::default();
        (
            NameFilter::for_paths("k", &d.mount_points_include, &d.mount_points_exclude),
            NameFilter::for_names("k", &d.fs_types_include, &d.fs_types_exclude),
        )
    }

    fn mount_points(mounts: &[Mount]) -> Vec<&str> {
        mounts.iter().map(|m| m.mount_point.as_str()).collect()
    }

    /// The filesystems of the `containers` fixture as statvfs would see
    /// them; the NFS share is stale.
    fn fake_stat(path: &Path) -> io::Result<FsStats> {
        let stats = |blocks, free, avail, files, ffree| FsStats {
            block_size: 4096,
            blocks,
            blocks_free: free,
            blocks_available: avail,
            files,
            files_free: ffree,
        };
        match path.to_str() {
            Some("/") => Ok(stats(66_053_021, 62_550_174, 20_318_625, 16_777_216, 16_281_393)),
            Some("/home") => Ok(stats(1000, 250, 250, 0, 0)),
            Some("/data") => Ok(stats(66_053_021, 62_550_174, 20_318_625, 16_777_216, 16_281_393)),
            Some("/var/backup") => Ok(stats(1000, 250, 250, 0, 0)),
            Some("/mnt/my disk") => Ok(stats(100, 100, 0, 10, 10)),
            Some("/mnt/stack") => Ok(stats(256, 256, 256, 1000, 999)),
            Some("/mnt/nas") => Err(io::Error::from_raw_os_error(116)), // ESTALE
            _ => Ok(FsStats::default()),
        }
    }

    #[test]
    fn parse_mountinfo_reads_the_captured_table() {
        let mounts = parse_mountinfo(&read_fixture("proc/vm/t0/1/mountinfo")).expect("parse");
        assert_eq!(mounts.len(), 19);
        let root = mounts.iter().find(|m| m.mount_point == "/");
        assert_eq!(
            root,
            Some(&Mount {
                id: 27,
                parent_id: 1,
                device: "254:0".into(),
                root: "/".into(),
                mount_point: "/".into(),
                fs_type: "ext4".into(),
            })
        );
    }

    #[test]
    fn parse_mountinfo_undoes_octal_escapes() {
        let mounts = parse_mountinfo(&read_fixture("proc/containers/1/mountinfo")).expect("parse");
        assert!(mounts.iter().any(|m| m.mount_point == "/mnt/my disk"));
        assert_eq!(unescape_octal(r"/a\040b\011c\134d\12"), "/a b\tc\\d\\12");
        assert_eq!(unescape_octal("\\"), "\\");
    }

    #[test]
    fn parse_mountinfo_rejects_a_truncated_line() {
        assert!(parse_mountinfo("27 1 254:0 / /\n").is_err());
    }

    #[test]
    fn the_defaults_keep_real_filesystems_once_each() {
        let mounts = parse_mountinfo(&read_fixture("proc/containers/1/mountinfo")).expect("parse");
        let (points, types) = default_filters();
        let selected = select_mounts(mounts, &points, &types);
        // Out: pseudo filesystems, /boot/efi, tmpfs, container overlays,
        // /mnt/stack (its xfs is under a tmpfs), and the bind mounts of
        // filesystems already listed: /data (a directory of /'s ext4),
        // /home/user/data (the same) and /var/backup (a subvolume of
        // /home's btrfs: the same free space).
        assert_eq!(
            mount_points(&selected),
            ["/", "/home", "/mnt/my disk", "/mnt/nas"]
        );
    }

    #[test]
    fn a_tmpfs_can_be_included_by_overriding_the_type_excludes() {
        let mounts = parse_mountinfo(&read_fixture("proc/containers/1/mountinfo")).expect("parse");
        let config = DiskConfig {
            mount_points_include: vec!["/mnt/stack".into()],
            fs_types_exclude: vec![],
            ..DiskConfig::default()
        };
        let c = DiskCollector::new(HostPaths::default(), &config);
        let selected = select_mounts(mounts, &c.mount_points, &c.fs_types);
        assert_eq!(mount_points(&selected), ["/mnt/stack"]);
        assert_eq!(selected.first().map(|m| m.fs_type.as_str()), Some("tmpfs"));
    }

    #[test]
    fn disk_readings_use_dfs_formula_and_skip_inodes_when_there_are_none() {
        // statvfs of this machine's root when the fixtures were captured.
        let root = fake_stat(Path::new("/")).expect("stats");
        let out = disk_readings("/", &root);
        let used = 66_053_021.0 - 62_550_174.0;
        assert_eq!(
            keyed_values(&out),
            [
                (
                    key(&["disk", "/", "used"]),
                    Value::Float(used / (used + 20_318_625.0) * 100.0)
                ),
                (key(&["disk", "/", "free"]), Value::Int(20_318_625 * 4096)),
                (
                    key(&["disk", "/", "inodes_used"]),
                    Value::Float((16_777_216.0 - 16_281_393.0) / 16_777_216.0 * 100.0)
                ),
            ]
        );
        let names: Vec<_> = out.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["Disk / used", "Disk / free", "Disk / inodes used"]);

        let btrfs = disk_readings("/var/lib", &fake_stat(Path::new("/home")).expect("stats"));
        let keys: Vec<_> = btrfs.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(keys, ["disk_var_lib_used", "disk_var_lib_free"]);
        assert_eq!(btrfs.first().map(|r| r.name.as_str()), Some("Disk /var/lib used"));
    }

    #[test]
    fn two_cycles_measure_each_selected_mount_and_skip_a_stale_one() {
        let paths = HostPaths {
            proc: fixture("proc/containers"),
            ..HostPaths::default()
        };
        let mut c = DiskCollector::new(paths, &DiskConfig::default());
        c.stat_fs = fake_stat;
        let start = Instant::now();
        let first = collect_once(&mut c, &tick_at(start, 0));
        let second = collect_once(&mut c, &tick_at(start, 10));
        assert_eq!(first, second);
        let mut expected = Vec::new();
        for mp in ["/", "/home", "/mnt/my disk"] {
            expected.extend(disk_readings(mp, &fake_stat(Path::new(mp)).expect("stats")));
        }
        assert_eq!(second, expected);
        let keys: Vec<_> = second.iter().map(|r| r.key.as_str()).collect();
        assert!(!keys.contains(&"disk_var_backup_used"), "{keys:?}");
        assert!(!keys.iter().any(|k| k.contains("nas")), "{keys:?}");
        assert_eq!(value_of(&second, "disk_home_used"), Value::Float(75.0));
        assert_eq!(
            value_of(&second, &key(&["disk", "/mnt/my disk", "used"])),
            Value::Missing
        );
    }

    /// The NFS share of the `containers` fixture, when it answers.
    const NAS: FsStats = FsStats {
        block_size: 4096,
        blocks: 100,
        blocks_free: 50,
        blocks_available: 50,
        files: 10,
        files_free: 5,
    };

    /// Like `fake_stat`, but the NFS share hangs for a second and a half.
    fn hanging_stat(path: &Path) -> io::Result<FsStats> {
        if path == Path::new("/mnt/nas") {
            std::thread::sleep(Duration::from_millis(1500));
            return Ok(NAS);
        }
        fake_stat(path)
    }

    #[test]
    fn a_hanging_network_mount_keeps_its_entities_without_values_and_blocks_nothing() {
        let paths = HostPaths {
            proc: fixture("proc/containers"),
            ..HostPaths::default()
        };
        let mut c = DiskCollector::new(paths, &DiskConfig::default());
        c.stat_fs = hanging_stat;
        c.stat_timeout = Duration::from_millis(200);
        let nas = key(&["disk", "/mnt/nas", "used"]);
        let start = Instant::now();

        let first = collect_once(&mut c, &tick_at(start, 0));
        assert!(
            start.elapsed() < Duration::from_millis(1000),
            "waited for the hung mount"
        );
        assert_eq!(value_of(&first, &nas), Value::Missing);
        assert_eq!(
            value_of(&first, "disk_home_used"),
            Value::Float(75.0),
            "others still measured"
        );
        assert!(first
            .iter()
            .any(|r| r.key == key(&["disk", "/mnt/nas", "inodes_used"])));

        // Still running: no second thread, no wait at all.
        let again = Instant::now();
        let second = collect_once(&mut c, &tick_at(start, 10));
        assert!(again.elapsed() < Duration::from_millis(100));
        assert_eq!(value_of(&second, &nas), Value::Missing);

        // Once the call returns, the mount is measured again.
        std::thread::sleep(Duration::from_millis(1500));
        c.stat_fs = fake_stat_answering;
        let third = collect_once(&mut c, &tick_at(start, 20));
        assert_eq!(value_of(&third, &nas), Value::Float(50.0));
    }

    fn fake_stat_answering(path: &Path) -> io::Result<FsStats> {
        if path == Path::new("/mnt/nas") {
            return Ok(NAS);
        }
        fake_stat(path)
    }

    #[test]
    fn the_real_root_filesystem_is_measured_with_statvfs() {
        let paths = HostPaths {
            proc: fixture("proc/vm/t0"),
            ..HostPaths::default()
        };
        let mut c = DiskCollector::new(paths, &DiskConfig::default());
        let start = Instant::now();
        let first = collect_once(&mut c, &tick_at(start, 0));
        let second = collect_once(&mut c, &tick_at(start, 10));
        for out in [&first, &second] {
            let keys: Vec<_> = out.iter().map(|r| r.key.clone()).collect();
            assert_eq!(
                keys,
                [
                    key(&["disk", "/", "used"]),
                    key(&["disk", "/", "free"]),
                    key(&["disk", "/", "inodes_used"])
                ]
            );
            for r in out.iter().filter(|r| r.kind == Kind::Percent) {
                assert!(
                    matches!(r.value, Value::Float(v) if (0.0..=100.0).contains(&v)),
                    "{r:?}"
                );
            }
            assert!(matches!(value_of(out, &key(&["disk", "/", "free"])), Value::Int(b) if b > 0));
        }
    }

    #[test]
    fn mountinfo_falls_back_to_self_when_pid_1_is_unreadable() {
        let paths = HostPaths {
            proc: fixture("proc/self-only"),
            ..HostPaths::default()
        };
        let mut c = DiskCollector::new(paths, &DiskConfig::default());
        let out = collect_once(&mut c, &tick_at(Instant::now(), 0));
        assert_eq!(out.first().map(|r| r.name.as_str()), Some("Disk / used"));
    }

    #[test]
    fn no_mountinfo_at_all_is_an_error_naming_self() {
        let paths = HostPaths {
            proc: fixture("proc/does-not-exist"),
            ..HostPaths::default()
        };
        let mut c = DiskCollector::new(paths, &DiskConfig::default());
        let err = c.collect(&tick_at(Instant::now(), 0), &mut Vec::new()).err();
        assert!(err.is_some_and(|e| e.to_string().contains("self/mountinfo")));
    }

    #[test]
    fn the_mount_table_is_kept_until_the_kernel_reports_a_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("1")).expect("mkdir");
        let table = dir.path().join("1/mountinfo");
        std::fs::copy(fixture("proc/containers/1/mountinfo"), &table).expect("copy");
        let paths = HostPaths {
            proc: dir.path().to_path_buf(),
            ..HostPaths::default()
        };
        let mut c = DiskCollector::new(paths, &DiskConfig::default());
        c.stat_fs = fake_stat;
        let first = collect_once(&mut c, &tick_at(Instant::now(), 0));
        // A regular file never signals POLLPRI: the kept table is used and
        // the file is not read again.
        std::fs::remove_file(&table).expect("rm");
        let second = collect_once(&mut c, &tick_at(Instant::now(), 10));
        assert_eq!(keyed_values(&first), keyed_values(&second));
    }

    #[test]
    fn a_real_mountinfo_is_watched_for_changes() {
        let paths = HostPaths::default();
        let mut c = DiskCollector::new(paths, &DiskConfig::default());
        c.mounts().expect("this machine's mounts");
        assert!(c.table.is_some(), "kept with its open mountinfo");
    }
}
