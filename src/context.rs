//! What every config section builds its part from, and what they share.
//!
//! A section validates itself (`validate(&self, key)`, naming full dotted
//! keys under `key`) and builds its own collector or sources from a small
//! [`Context`]; nothing below `main` and [`crate::wiring`] sees the root
//! configuration. A collector's section implements
//! [`crate::collector::CollectorSection`].

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer};
use tokio::sync::mpsc;

use crate::error::ConfigError;
use crate::host::HostPaths;

/// What a section needs from the rest of the configuration and the process.
#[derive(Clone)]
pub struct Context {
    /// The agent's interval: how often collectors run and sources refresh.
    pub interval: Duration,
    /// Where the host's /proc, /sys and / are.
    pub paths: HostPaths,
    /// The wake-up sender: a source sends `()` to have the agent publish now.
    pub poke: mpsc::Sender<()>,
    /// Looks up a process environment variable (tests pass their own).
    pub env: fn(&str) -> Option<String>,
    /// The wall clock ("last seen", timestamps), so tests can set it.
    pub clock: fn() -> SystemTime,
}

impl Context {
    /// A context reading the real environment and clock.
    pub fn new(interval: Duration, paths: HostPaths, poke: mpsc::Sender<()>) -> Self {
        Context {
            interval,
            paths,
            poke,
            env: |name| std::env::var(name).ok(),
            clock: SystemTime::now,
        }
    }
}

/// The one way lists are read: a TOML array in the file, one
/// comma-separated string from the environment
/// (`HOST2MQTT__CONTAINERS__INCLUDE="web*,db"`).
pub fn comma_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        One(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::List(v) => v,
        Either::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    })
}

/// Checks that every pattern in `globs` compiles, naming `key`.
pub fn check_globs(key: &str, globs: &[String]) -> Result<(), ConfigError> {
    for g in globs {
        glob::Pattern::new(g)
            .map_err(|e| ConfigError::key(key, format!("expected glob patterns; {g:?}: {e}")))?;
    }
    Ok(())
}
