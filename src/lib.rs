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
//! * [`config`] loads the TOML file (strictly) and `HOST2MQTT__…`
//!   environment once, before any work, and holds the sections that belong
//!   to no collector (MQTT, Home Assistant, host paths). Every section
//!   validates itself, naming full dotted keys ([`error::ConfigError`]),
//!   and builds its own part from a small [`context::Context`] (interval,
//!   host paths, wake-up sender, clock).
//! * [`wiring`] is the one place that lists every section: the root
//!   `Config`, the `collectors!` list and `build(cfg)`, which `run` and
//!   `check` share. Adding a collector is its file plus one line there.
//! * [`collector`] holds one collector per file (`cpu`, `disk`, …), each with
//!   its config section. Each reads the host through [`host::HostPaths`]
//!   and returns [`reading::Reading`]s: typed values with a stable key and
//!   a name, nothing about MQTT.
//! * [`discovery`] is the Home Assistant model: it turns readings into the
//!   device-based discovery payload and the per-cycle state JSON, and knows
//!   the topics. It knows nothing of /proc.
//! * [`session`] owns the rumqttc event loop: connect, last will, backoff
//!   ([`backoff`], shared with every reconnecting source) between attempts, and it tells the agent when a connection is up. It
//!   publishes what it is handed and knows nothing of HA's schema.
//! * [`source`] is the other way readings arrive: tasks that reach a part
//!   of the host over a socket or bus, or on a slow schedule, and publish
//!   their latest state for the next cycle (or ask for an immediate one).
//!   [`container`] and [`systemd`] are sources; each takes only its own
//!   section and the context.
//! * [`availability`] is the one rule for a part that cannot be read: log
//!   the failure once and the recovery once, keep the entities without a
//!   value; collectors and sources alike use it.
//! * [`agent`] ties them together: the collection loop, announcing on every
//!   (re)connect and on HA's birth message, shutdown, the systemd watchdog.
//!   It publishes through a trait ([`agent::Outbox`]), so its timers are
//!   tested with paused time.
//! * [`prometheus`] (opt-in) serves each cycle's readings to Prometheus;
//!   [`dashboard`] turns the retained discovery of every host into a
//!   Lovelace dashboard (`host2mqtt dashboard`).
//! * [`residency`] drops the text pages of one-off code (start-up, each
//!   OS update check) once it has run (issue 13; link/layout.ld gathers
//!   that code).
#![deny(unsafe_code)]

pub mod agent;
pub mod availability;
pub mod backoff;
pub mod collector;
pub mod config;
pub mod container;
pub mod context;
pub mod dashboard;
pub mod discovery;
pub mod error;
pub mod hardware;
pub mod host;
pub mod logging;
pub mod notify;
pub mod osupdate;
pub mod prometheus;
pub mod reading;
pub mod residency;
pub mod session;
pub mod source;
pub mod systemd;
pub mod wiring;
