//! Start-up code out of the resident set (issue 13).
//!
//! The kernel maps a file page into a process once it is touched and keeps
//! it mapped: the code that ran once (config, wiring, the first discovery,
//! the connect; later each OS update check) stays in RSS for the life of
//! the process, even though link/layout.ld gathers it into its own 64 KiB
//! windows. [`drop_text`] unmaps the binary's text pages from this
//! process; the code the cycle runs maps back in on its next use (minor
//! faults from the page cache, the file is not re-read), the rest stays
//! out. The agent calls [`drop_startup_text`] on its ticks (it acts once,
//! [`STARTUP`] after the start); the OS update source calls [`drop_text`]
//! after each check.
//!
//! The one `unsafe` of the crate: a `madvise(MADV_DONTNEED)` call.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long start-up lasts: connect, the first discovery and the one-off
/// work of the first 20 s (the SMART scan, the NVIDIA probe) are done.
pub const STARTUP: Duration = Duration::from_secs(30);

static STARTUP_DROPPED: AtomicBool = AtomicBool::new(false);

/// [`drop_text`], the first time it is called with `running_for` at least
/// [`STARTUP`] in this process; every other call does nothing.
pub fn drop_startup_text(running_for: Duration) {
    if running_for >= STARTUP && !STARTUP_DROPPED.swap(true, Ordering::Relaxed) {
        drop_text();
    }
}

/// Drops the binary's executable mappings from the page tables, after a
/// burst of code that will not run again soon. A failure is logged and
/// changes nothing else.
pub fn drop_text() {
    let (Ok(maps), Ok(exe)) = (
        std::fs::read_to_string("/proc/self/maps"),
        std::fs::read_link("/proc/self/exe"),
    ) else {
        return;
    };
    let mut dropped_bytes = 0;
    for (start, end) in exe_text_ranges(&maps, &exe) {
        match advise_dont_need(start, end - start) {
            Ok(()) => dropped_bytes += end - start,
            Err(e) => {
                tracing::debug!(error = %e, start, end, "cannot drop text pages");
                return;
            }
        }
    }
    tracing::debug!(dropped_bytes, "dropped text pages");
}

#[allow(unsafe_code)]
fn advise_dont_need(start: usize, len: usize) -> rustix::io::Result<()> {
    // SAFETY: [start, start + len) is a whole mapping from /proc/self/maps
    // that is executable, private and backed by our own binary: code, read
    // only, never written (no copy-on-write page to lose), holding no Rust
    // object. MADV_DONTNEED only unmaps its pages; the next access maps
    // the same file pages again, exactly as after the kernel reclaims
    // them under memory pressure. Nothing dangles, nothing changes.
    unsafe {
        rustix::mm::madvise(
            start as *mut std::ffi::c_void,
            len,
            rustix::mm::Advice::LinuxDontNeed,
        )
    }
}

/// The executable, private mappings of `exe` in a `/proc/PID/maps` text,
/// as (start, end) addresses.
fn exe_text_ranges(maps: &str, exe: &Path) -> Vec<(usize, usize)> {
    let exe = exe.to_string_lossy();
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.splitn(6, ' ');
            let range = fields.next()?;
            let perms = fields.next()?;
            let path = fields.nth(3)?.trim_start();
            let path = path.strip_suffix(" (deleted)").unwrap_or(path);
            if !(perms.starts_with("r-x") && perms.ends_with('p') && path == exe) {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            Some((
                usize::from_str_radix(start, 16).ok()?,
                usize::from_str_radix(end, 16).ok()?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
7f0000000000-7f0000020000 r--p 00000000 fd:01 1234                       /usr/bin/host2mqtt
7f0000020000-7f00002d7000 r-xp 00020000 fd:01 1234                       /usr/bin/host2mqtt
7f00002d7000-7f0000385000 r--p 002d7000 fd:01 1234                       /usr/bin/host2mqtt
7f0000385000-7f000039e000 rw-p 00385000 fd:01 1234                       /usr/bin/host2mqtt
7f000039e000-7f00003c0000 rw-p 00000000 00:00 0                          [heap]
7f1000000000-7f1000010000 r-xp 00000000 fd:01 99                         /usr/lib/libother.so
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]
";

    #[test]
    fn only_the_binarys_executable_mapping_is_chosen() {
        let r = exe_text_ranges(MAPS, Path::new("/usr/bin/host2mqtt"));
        assert_eq!(r, vec![(0x7f00_0002_0000, 0x7f00_002d_7000)]);
    }

    #[test]
    fn a_replaced_binary_is_still_recognised() {
        let maps = "1000-2000 r-xp 00000000 fd:01 1 /usr/bin/host2mqtt (deleted)\n";
        let r = exe_text_ranges(maps, Path::new("/usr/bin/host2mqtt"));
        assert_eq!(r, vec![(0x1000, 0x2000)]);
    }

    #[test]
    fn another_binary_or_a_shared_mapping_is_left_alone() {
        let maps = "1000-2000 r-xp 00000000 fd:01 1 /usr/bin/other\n\
                    3000-4000 r-xs 00000000 fd:01 1 /usr/bin/host2mqtt\n";
        assert!(exe_text_ranges(maps, Path::new("/usr/bin/host2mqtt")).is_empty());
    }

    #[test]
    fn dropping_the_running_text_is_harmless() {
        drop_startup_text(Duration::from_secs(1));
        drop_startup_text(STARTUP);
        drop_startup_text(STARTUP);
        drop_text();
        assert!(STARTUP_DROPPED.load(Ordering::Relaxed));
    }
}
