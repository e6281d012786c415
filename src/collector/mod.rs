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
    path: &Path,
    parse: impl FnOnce(&str) -> Result<T, procfs_core::ProcError>,
) -> Result<T, CollectError> {
    let text = read_file(path)?;
    parse(&text).map_err(|e| CollectError::parse(path, e))
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
    fn widen_f32_keeps_the_decimal_that_was_written() {
        assert_eq!(widen_f32(1.24), 1.24);
        assert_eq!(widen_f32(0.0), 0.0);
        assert_eq!(widen_f32(6.73), 6.73);
    }
}
