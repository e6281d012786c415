//! host2mqtt: a Linux host's metrics as a Home Assistant device over MQTT.
//!
//! # Layout
//!
//! Data flows one way:
//!
//! ```text
//! config ──► collectors ──► Readings ──► HA model ──► MQTT session ──► broker
//! ```
//!
//! * [`config`] loads and validates the TOML file and `HOST2MQTT__…`
//!   environment once, before any work; it is the factory for the rest.
//! * [`collector`] holds one collector per file (`cpu`, `disk`, …). Each reads
//!   the host through [`host::HostPaths`] and returns [`reading::Reading`]s:
//!   typed values with a stable key and a name, nothing about MQTT.
//! * [`discovery`] is the Home Assistant model: it turns readings into the
//!   device-based discovery payload and the per-cycle state JSON, and knows
//!   the topics. It knows nothing of /proc.
//! * [`session`] owns the rumqttc event loop: connect, last will, backoff
//!   between attempts, and it tells the agent when a connection is up. It
//!   publishes what it is handed and knows nothing of HA's schema.
//! * [`source`] is the other way readings arrive: tasks that reach a part
//!   of the host over a socket or bus, or on a slow schedule, and publish
//!   their latest state for the next cycle (or ask for an immediate one).
//! * [`agent`] ties them together: the collection loop, announcing on every
//!   (re)connect and on HA's birth message, shutdown, the systemd watchdog.
#![forbid(unsafe_code)]

pub mod agent;
pub mod collector;
pub mod config;
pub mod container;
pub mod discovery;
pub mod host;
pub mod logging;
pub mod notify;
pub mod osupdate;
pub mod reading;
pub mod session;
pub mod source;
pub mod systemd;
