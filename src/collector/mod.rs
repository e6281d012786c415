//! Collectors: one per file, each turning a part of the host into
//! [`Reading`]s. They read through [`HostPaths`](crate::host::HostPaths) and know nothing of MQTT or
//! Home Assistant. Parsing is split from I/O so every parser is a pure
//! function tested on captured fixtures.
//!
//! A collector that finds nothing to report (no /proc/pressure, no swap)
//! returns no readings: that is not an error. An error means "this part of
//! the host could not be read this time"; the agent keeps the collector's
//! last entities and reports them unavailable instead of dropping them.
//!
//! Each collector's file also holds its config section, which builds it
//! ([`CollectorSection`]); [`crate::wiring`] lists them.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use crate::context::Context;
use crate::error::ConfigError;
use crate::reading::Reading;

pub mod cpu;
pub mod disk;
pub mod diskio;
pub mod filter;
pub mod gpu;
pub mod ifaddr;
pub mod load;
pub mod memory;
pub mod network;
pub mod oom;
pub mod pressure;
pub mod rpi;
pub mod sensors;
pub mod system;
#[cfg(test)]
mod testing;

/// The moment a cycle runs: monotonic for rates, wall clock for timestamps.
/// Passed in (not read inside collectors) so tests control time.
#[derive(Debug, Clone, Copy)]
pub struct Tick {
    /// For deltas between cycles.
    pub mono: Instant,
    /// For "last seen" and other timestamps.
    pub wall: SystemTime,
}

impl Tick {
    /// The current time.
    pub fn now() -> Self {
        Tick {
            mono: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// Why a collector could not read the host this cycle.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot parse {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

impl CollectError {
    /// A parse error for the file at `path`.
    pub fn parse(path: &Path, message: impl std::fmt::Display) -> Self {
        CollectError::Parse {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}

/// Reads a whole (small) file, naming it in the error.
pub fn read_file(path: &Path) -> Result<String, CollectError> {
    read_sized(path).map_err(|source| CollectError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Like `fs::read_to_string`, but /proc files report size 0, which makes
/// std start at 32 bytes and double: six reads for /proc/stat. Starting at
/// 8 KiB takes one or two.
fn read_sized(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::with_capacity(8192);
    std::fs::File::open(path)?.read_to_string(&mut text)?;
    Ok(text)
}

/// Reads a file that may legitimately be absent: `Ok(None)` when it is not there.
pub fn read_optional(path: &Path) -> Result<Option<String>, CollectError> {
    match read_sized(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CollectError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// A /proc file kept open and re-read from offset 0 each cycle into one
/// reused buffer: two `pread`s (the text, then end of file) instead of
/// open, statx, lseek, read, read and close plus a fresh 8 KiB string.
/// /proc regenerates a file's text when it is read from offset 0, so an
/// open file shows the current figures. On an error the file is closed
/// and opened again next time (a remounted /host/proc).
#[derive(Debug)]
pub struct ProcFile {
    /// The file, named in errors.
    path: PathBuf,
    /// Open since the first successful read.
    file: Option<std::fs::File>,
    /// Reused between reads; grows to the largest text seen.
    buf: Vec<u8>,
}

impl ProcFile {
    /// A file at `path`, opened on the first read.
    pub fn new(path: PathBuf) -> Self {
        ProcFile {
            path,
            file: None,
            buf: Vec::new(),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's whole text now.
    pub fn read(&mut self) -> Result<&str, CollectError> {
        let len = self.fill_or_close()?;
        self.text(len)
    }

    /// Reads the file into `buf`; on an error, closes it and names it.
    fn fill_or_close(&mut self) -> Result<usize, CollectError> {
        self.fill().map_err(|source| {
            self.file = None;
            CollectError::Io {
                path: self.path.clone(),
                source,
            }
        })
    }

    /// The file's path and its whole text now, for parsers that name the
    /// file in an error while they still hold the text.
    pub fn read_with_path(&mut self) -> Result<(&Path, &str), CollectError> {
        let len = self.fill_or_close()?;
        Ok((&self.path, self.text(len)?))
    }

    /// The file's whole text now, `None` when it is absent.
    pub fn read_optional(&mut self) -> Result<Option<&str>, CollectError> {
        match self.fill() {
            Ok(len) => self.text(len).map(Some),
            Err(e) => {
                self.file = None;
                if e.kind() == std::io::ErrorKind::NotFound {
                    return Ok(None);
                }
                Err(CollectError::Io {
                    path: self.path.clone(),
                    source: e,
                })
            }
        }
    }

    /// The first `len` bytes read, as text.
    fn text(&self, len: usize) -> Result<&str, CollectError> {
        std::str::from_utf8(self.buf.get(..len).unwrap_or_default())
            .map_err(|e| CollectError::parse(&self.path, e))
    }

    /// Reads the file from offset 0 into `buf`; the length read.
    ///
    /// A first read shorter than [`SURELY_WHOLE`] is the whole file, so the
    /// read that would return end of file is skipped (one syscall per file
    /// per cycle). A /proc file is a seq_file: one read returns every
    /// record that fits in the kernel's buffer, at least a page, and stops
    /// short of the caller's buffer only when the next record does not fit
    /// there, so a read that stopped early holds more than a page less one
    /// record (records here are lines of < 2 KiB). A regular file (a
    /// fixture) and a sysfs attribute come whole in one read.
    fn fill(&mut self) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let file = match &self.file {
            Some(file) => file,
            None => self.file.insert(std::fs::File::open(&self.path)?),
        };
        if self.buf.is_empty() {
            self.buf.resize(8192, 0);
        }
        let mut len = 0;
        loop {
            if len == self.buf.len() {
                self.buf.resize(len * 2, 0);
            }
            let n = file.read_at(self.buf.get_mut(len..).unwrap_or_default(), len as u64)?;
            if n == 0 || (len == 0 && n < SURELY_WHOLE) {
                return Ok(len + n);
            }
            len += n;
        }
    }
}

/// A first read of a /proc file shorter than this is the whole file (see
/// [`ProcFile::fill`]): half a page, so a record up to 2 KiB long could not
/// have made the kernel stop early.
const SURELY_WHOLE: usize = 2048;

/// A source of readings, called once per cycle.
pub trait Collector: Send {
    /// The collector's name, as in the config (`cpu`, `disk`, …).
    fn name(&self) -> &'static str;

    /// Appends this cycle's readings to `out`.
    fn collect(&mut self, tick: &Tick, out: &mut Vec<Reading>) -> Result<(), CollectError>;
}

/// A collector's config section (`[collectors.<name>]`): it checks itself
/// and builds its collector. Listing it in [`crate::wiring`] is all it
/// takes to switch it on.
pub trait CollectorSection {
    /// Checks the section; errors name full dotted keys under `key`
    /// (`collectors.disk`).
    fn validate(&self, _key: &str) -> Result<(), ConfigError> {
        Ok(())
    }

    /// The collector, or `None` when the section switches it off.
    fn build(&self, cx: &Context) -> Option<Box<dyn Collector>>;
}

/// A per-second rate from two counter samples; `None` when there is no
/// earlier sample, no time passed, or the counter went backwards (a reset,
/// a device re-created), rather than a wrong number.
pub fn rate_per_second(prev: Option<(u64, Instant)>, now: (u64, Instant)) -> Option<f64> {
    let (prev_value, prev_at) = prev?;
    let secs = now.1.checked_duration_since(prev_at)?.as_secs_f64();
    if secs <= 0.0 || now.0 < prev_value {
        return None;
    }
    Some((now.0 - prev_value) as f64 / secs)
}

/// Widens a value procfs-core parsed as `f32` ("1.24" in /proc/loadavg)
/// through its shortest decimal form, so it becomes the `f64` 1.24 that
/// was written rather than 1.2400000095367432.
pub fn widen_f32(value: f32) -> f64 {
    value.to_string().parse().unwrap_or(f64::from(value))
}

/// Reads a file that procfs-core parses, naming the file in either error.
fn read_parsed<T>(
    file: &mut ProcFile,
    parse: impl FnOnce(&str) -> Result<T, procfs_core::ProcError>,
) -> Result<T, CollectError> {
    let text = file.read()?;
    parse(text).map_err(|e| CollectError::parse(&file.path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rate_is_none_without_a_previous_sample_or_after_a_reset() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(rate_per_second(None, (10, t1)), None);
        assert_eq!(rate_per_second(Some((100, t0)), (10, t1)), None);
        assert_eq!(rate_per_second(Some((100, t0)), (300, t1)), Some(100.0));
    }

    #[test]
    fn a_proc_file_reads_the_current_text_each_time_and_grows_past_8_kib() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("stat");
        std::fs::write(&path, "one\n").expect("write");
        let mut file = ProcFile::new(path.clone());
        assert_eq!(file.read().expect("read"), "one\n");
        let long = "x".repeat(20_000);
        std::fs::write(&path, &long).expect("write");
        assert_eq!(file.read().expect("read"), long);
        std::fs::write(&path, "two\n").expect("write");
        assert_eq!(file.read().expect("read"), "two\n");
    }

    #[test]
    fn an_absent_proc_file_is_none_and_read_names_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut file = ProcFile::new(dir.path().join("pressure/cpu"));
        assert!(file.read_optional().expect("absent is no error").is_none());
        let error = file.read().expect_err("absent").to_string();
        assert!(error.contains("pressure/cpu"), "{error}");
    }

    #[test]
    fn widen_f32_keeps_the_decimal_that_was_written() {
        assert_eq!(widen_f32(1.24), 1.24);
        assert_eq!(widen_f32(0.0), 0.0);
        assert_eq!(widen_f32(6.73), 6.73);
    }
}
