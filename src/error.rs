//! The one error every config section returns, kept apart from the root
//! config so that each section (a collector's, a source's) can use it
//! without knowing the rest of the configuration.

use std::path::PathBuf;

/// A configuration that cannot be used. The message names the key and what
/// was expected; the process exits with 78 (EX_CONFIG) and publishes nothing.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("config: {0}")]
    Invalid(String),
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
}

impl ConfigError {
    /// An error about the full dotted `key` (`mqtt.port`, `collectors.disk.fs_types_include`).
    pub fn key(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Key {
            key: key.into(),
            message: message.into(),
        }
    }
}
