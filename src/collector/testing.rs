//! What the collectors' tests share: fixture trees captured from real
//! machines (see tests/fixtures/README.md) and a clock the test moves.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use super::{Collector, Tick};
use crate::host::HostPaths;
use crate::reading::{Reading, Value};

/// A path under tests/fixtures.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures")).join(rel)
}

/// Host roots pointing into tests/fixtures.
pub fn fixture_paths(proc: &str, sys: &str, root: &str) -> HostPaths {
    HostPaths {
        proc: fixture(proc),
        sys: fixture(sys),
        root: fixture(root),
    }
}

/// A tick `secs` seconds after `start`, so rates have an exact interval.
pub fn tick_at(start: Instant, secs: u64) -> Tick {
    Tick {
        mono: start + Duration::from_secs(secs),
        wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs),
    }
}

/// One cycle of `collector`, failing the test on an error.
pub fn collect_once(collector: &mut dyn Collector, tick: &Tick) -> Vec<Reading> {
    let mut out = Vec::new();
    collector.collect(tick, &mut out).expect("collect");
    out
}

/// Each reading's key and value, in order, for exact comparisons.
pub fn keyed_values(readings: &[Reading]) -> Vec<(String, Value)> {
    readings
        .iter()
        .map(|r| (r.key.to_string(), r.value.clone()))
        .collect()
}

/// The value of the reading with `key`.
pub fn value_of(readings: &[Reading], key: &str) -> Value {
    readings
        .iter()
        .find(|r| r.key == key)
        .map(|r| r.value.clone())
        .unwrap_or_else(|| panic!("no reading {key} in {readings:?}"))
}

/// Whether two percentages agree to well below what anyone displays.
pub fn assert_close(actual: &Value, expected: f64) {
    match actual {
        Value::Float(v) => assert!((v - expected).abs() < 1e-9, "{v} != {expected}"),
        other => panic!("expected {expected}, got {other:?}"),
    }
}
