//! The agent: the collection loop, announcing to Home Assistant on every
//! (re)connect and on HA's birth message, shutdown, and the systemd
//! watchdog. [`run`] takes its session and shutdown signal as arguments so
//! tests can drive it.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::time::{sleep_until, MissedTickBehavior};

use crate::collector::{Collector, Tick};
use crate::config::{is_topic_safe, Config};
use crate::discovery::{Announcer, Device, Model, Topics, OFFLINE, ONLINE};
use crate::host;
use crate::notify;
use crate::reading::{Kind, Reading, Value};
use crate::session::{Publisher, SessionEvent};
use crate::source::SourceHandle;

/// One collector with what it last reported, so that a collector that fails
/// keeps its entities (shown without a value) instead of deleting them.
struct Slot {
    collector: Box<dyn Collector>,
    last_ok: Vec<Reading>,
    failing: bool,
}

/// Collects a cycle and keeps HA's model of this host.
pub struct Agent {
    slots: Vec<Slot>,
    sources: Vec<SourceHandle>,
    /// Each source's name and whether it could reach what it reads, this cycle.
    groups: Vec<(&'static str, bool)>,
    /// Command word → index of the source whose entity announced it.
    routes: Vec<(String, usize)>,
    /// The HA model (topics, device, discovery and state payloads).
    pub model: Model,
    announcer: Announcer,
    interval: Duration,
    last_cycle: Option<Duration>,
    readings: Vec<Reading>,
    state: Option<String>,
    /// The Prometheus endpoint's text, rendered after each cycle when it is on.
    metrics: Option<tokio::sync::watch::Sender<String>>,
}

/// The host's node id: configured, else the host name made topic-safe.
pub fn node_id(cfg: &Config, hostname: Option<&str>) -> String {
    if !cfg.node_id.is_empty() {
        return cfg.node_id.clone();
    }
    let raw = hostname.unwrap_or("host");
    let id: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if is_topic_safe(&id) {
        id
    } else {
        "host".into()
    }
}

impl Agent {
    /// Builds the agent from a validated config, reading the host's name and
    /// OS once for the device.
    pub fn new(cfg: &Config, collectors: Vec<Box<dyn Collector>>) -> Agent {
        let paths = cfg.host_paths();
        let hostname = host::hostname(&paths);
        let node_id = node_id(cfg, hostname.as_deref());
        let os = host::os_release(&paths);
        let device = Device {
            name: if cfg.device_name.is_empty() {
                hostname.unwrap_or_else(|| node_id.clone())
            } else {
                cfg.device_name.clone()
            },
            manufacturer: os.as_ref().map(|o| o.name.clone()).unwrap_or_default(),
            model: os.as_ref().map(|o| o.pretty_name.clone()).unwrap_or_default(),
            sw_version: host::kernel_release(&paths).unwrap_or_default(),
            node_id: node_id.clone(),
            area: cfg.area.clone(),
        };
        let topics = Topics::new(
            &cfg.homeassistant.discovery_prefix,
            &cfg.mqtt.base_topic,
            &node_id,
            &cfg.status_topic(),
        );
        Agent {
            slots: collectors
                .into_iter()
                .map(|collector| Slot {
                    collector,
                    last_ok: Vec::new(),
                    failing: false,
                })
                .collect(),
            sources: Vec::new(),
            groups: Vec::new(),
            routes: Vec::new(),
            model: Model {
                topics,
                device,
                expire_after: cfg.expire_after(),
                enable_all: cfg.homeassistant.enable_all_entities,
            },
            announcer: Announcer::default(),
            interval: cfg.interval,
            last_cycle: None,
            readings: Vec::new(),
            state: None,
            metrics: None,
        }
    }

    /// Runs every collector once. One collector failing never fails the
    /// others: its entities stay, without a value, and the failure is
    /// logged once (and its recovery once).
    pub fn collect(&mut self, tick: &Tick) -> Vec<Reading> {
        let started = Instant::now();
        let mut readings = Vec::with_capacity(64);
        for slot in &mut self.slots {
            let mark = readings.len();
            match slot.collector.collect(tick, &mut readings) {
                Ok(()) => {
                    if slot.failing {
                        tracing::info!(collector = slot.collector.name(), "collector recovered");
                        slot.failing = false;
                    }
                    slot.last_ok.clear();
                    slot.last_ok.extend_from_slice(&readings[mark..]);
                }
                Err(e) => {
                    readings.truncate(mark);
                    if !slot.failing {
                        tracing::warn!(collector = slot.collector.name(), error = %e, "collector failed; its entities show no value until it recovers");
                        slot.failing = true;
                    }
                    readings.extend(slot.last_ok.iter().map(|r| Reading {
                        value: Value::Missing,
                        ..r.clone()
                    }));
                }
            }
        }
        self.groups.clear();
        self.routes.clear();
        for (i, source) in self.sources.iter().enumerate() {
            let state = source.state.borrow();
            self.groups.push((source.name, state.available));
            for r in &state.readings {
                if let Some(word) = &r.command {
                    self.routes.push((word.clone(), i));
                }
                let mut r = r.clone();
                r.group.get_or_insert(source.name);
                readings.push(r);
            }
        }
        drop_duplicate_keys(&mut readings);
        readings.push(Reading::new("last_seen", "Last seen", Kind::Timestamp, tick.wall));
        readings.push(
            Reading::new(
                "version",
                "Agent version",
                Kind::Text,
                env!("CARGO_PKG_VERSION").to_string(),
            )
            .diagnostic(),
        );
        readings.push(
            Reading::new(
                "cycle_duration",
                "Cycle duration",
                Kind::Milliseconds,
                self.last_cycle.map(|d| d.as_secs_f64() * 1000.0),
            )
            .diagnostic(),
        );
        self.last_cycle = Some(started.elapsed());
        readings
    }

    /// Collects a cycle and updates the payloads. Returns the new discovery
    /// payload when the entity set changed.
    pub fn cycle(&mut self, tick: &Tick) -> Option<String> {
        self.readings = self.collect(tick);
        self.state = Some(self.model.state_payload(&self.readings, &self.groups));
        if let Some(tx) = &self.metrics {
            tx.send_replace(crate::prometheus::render(&self.readings));
        }
        self.announcer
            .update(&self.model, &self.readings)
            .map(str::to_owned)
    }

    /// Renders every cycle's readings for the Prometheus endpoint into `tx`.
    pub fn export_metrics(&mut self, tx: tokio::sync::watch::Sender<String>) {
        self.metrics = Some(tx);
    }

    /// Adds a running source; its latest state joins every cycle.
    pub fn add_source(&mut self, handle: SourceHandle) {
        self.sources.push(handle);
    }

    /// The sources added so far.
    pub fn sources(&self) -> &[SourceHandle] {
        &self.sources
    }

    /// Hands a command word from the command topic to the source whose
    /// entity announced it. Anything else is refused: the command topic can
    /// trigger nothing but what HA was shown.
    pub fn dispatch(&self, word: &str) -> bool {
        let Some((_, i)) = self.routes.iter().find(|(w, _)| w == word) else {
            return false;
        };
        let Some(source) = self.sources.get(*i) else {
            return false;
        };
        if source.commands.try_send(word.to_string()).is_err() {
            tracing::warn!(source = source.name, command = word, "busy; command dropped");
        }
        true
    }

    /// The readings of the last cycle.
    pub fn readings(&self) -> &[Reading] {
        &self.readings
    }

    /// The current discovery payload.
    pub fn discovery(&self) -> Option<&str> {
        self.announcer.payload()
    }

    /// The latest state payload.
    pub fn state(&self) -> Option<&str> {
        self.state.as_deref()
    }

    /// Every message `run` publishes when it announces, in order.
    pub fn announcement(&self) -> Vec<(String, String, bool)> {
        let t = &self.model.topics;
        let mut out = vec![(t.availability.clone(), ONLINE.to_string(), true)];
        if let Some(d) = self.discovery() {
            out.push((t.discovery.clone(), d.to_string(), true));
        }
        if let Some(s) = self.state() {
            out.push((t.state.clone(), s.to_string(), false));
        }
        out
    }
}

/// Keeps the first reading of each key. Two host names can slug to the
/// same key ("/srv/a-b" and "/srv/a.b"); a state JSON with the key twice
/// would let one silently overwrite the other. The usual case (no
/// duplicates) costs one small set of borrowed keys.
fn drop_duplicate_keys(readings: &mut Vec<Reading>) {
    let mut seen = std::collections::HashSet::with_capacity(readings.len());
    if readings.iter().all(|r| seen.insert(r.key.as_str())) {
        return;
    }
    let mut seen = std::collections::HashSet::new();
    readings.retain(|r| {
        let first = seen.insert(r.key.clone());
        if !first {
            tracing::debug!(key = %r.key, name = %r.name, "dropping a reading whose key is taken");
        }
        first
    });
}

fn publish(publisher: &Publisher, topic: &str, payload: &str, retain: bool) {
    if let Err(e) = publisher.publish(topic, payload.as_bytes(), retain) {
        tracing::debug!(error = %e, "dropped");
    }
}

/// How long after announcing discovery the state goes out again: HA
/// subscribes to an entity's state topic only once it has processed its
/// discovery, so a state sent right behind it can be missed.
const STATE_AFTER_ANNOUNCE: Duration = Duration::from_secs(2);

/// Runs the agent until `shutdown` resolves: collects every interval,
/// publishes state while connected, announces (online + discovery + state)
/// on every connect and after HA's birth message, then publishes `offline`
/// and disconnects.
pub async fn run(
    mut agent: Agent,
    publisher: Publisher,
    mut events: mpsc::Receiver<SessionEvent>,
    mut pokes: mpsc::Receiver<()>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut ticker = tokio::time::interval(agent.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let watchdog_every = notify::watchdog_interval();
    let mut watchdog = tokio::time::interval(watchdog_every.unwrap_or(Duration::from_secs(3600)));
    let far = || tokio::time::Instant::now() + Duration::from_secs(86400 * 365);
    let mut announce_at = far();
    let mut state_at = far();
    let mut connected = false;
    notify::ready();
    tracing::info!(
        node_id = %agent.model.device.node_id,
        interval = %humantime::format_duration(agent.interval),
        state_topic = %agent.model.topics.state,
        "running"
    );

    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = ticker.tick() => cycle_and_publish(&mut agent, &publisher, connected),
            // A source has news that should not wait for the interval (a
            // unit failed, an update run finished).
            Some(()) = pokes.recv() => cycle_and_publish(&mut agent, &publisher, connected),
            _ = watchdog.tick(), if watchdog_every.is_some() => notify::watchdog(),
            _ = sleep_until(announce_at) => {
                announce_at = far();
                if connected {
                    announce(&agent, &publisher);
                    state_at = tokio::time::Instant::now() + STATE_AFTER_ANNOUNCE;
                }
            }
            _ = sleep_until(state_at) => {
                state_at = far();
                if let (true, Some(s)) = (connected, agent.state()) {
                    publish(&publisher, &agent.model.topics.state, s, false);
                }
            }
            ev = events.recv() => match ev {
                None => break,
                Some(SessionEvent::Connected) => {
                    connected = true;
                    announce(&agent, &publisher);
                    state_at = tokio::time::Instant::now() + STATE_AFTER_ANNOUNCE;
                }
                Some(SessionEvent::Disconnected) => connected = false,
                Some(SessionEvent::Message { topic, payload }) if topic == agent.model.topics.command => {
                    let word = String::from_utf8_lossy(&payload);
                    if agent.dispatch(word.trim()) {
                        tracing::info!(command = %word.trim(), "command received");
                    } else {
                        tracing::warn!(command = %word.chars().take(64).collect::<String>(), "ignoring a command no entity announced");
                    }
                }
                Some(SessionEvent::Message { topic, payload }) => {
                    if topic == agent.model.topics.ha_status && payload == ONLINE.as_bytes() {
                        // Many agents answer the same birth; spread them out.
                        let delay = Duration::from_millis(500 + fastrand::u64(0..2500));
                        tracing::info!(delay_ms = delay.as_millis() as u64, "Home Assistant came online; announcing again");
                        announce_at = tokio::time::Instant::now() + delay;
                    }
                }
            },
        }
    }

    notify::stopping();
    tracing::info!("stopping; publishing offline");
    if connected {
        publish(&publisher, &agent.model.topics.availability, OFFLINE, true);
    }
    let _ = publisher.disconnect();
}

fn cycle_and_publish(agent: &mut Agent, publisher: &Publisher, connected: bool) {
    let changed = agent.cycle(&Tick::now());
    if connected {
        if let Some(d) = changed {
            tracing::info!(bytes = d.len(), "entities changed; publishing discovery");
            publish(publisher, &agent.model.topics.discovery, &d, true);
        }
        if let Some(s) = agent.state() {
            publish(publisher, &agent.model.topics.state, s, false);
        }
    }
}

fn announce(agent: &Agent, publisher: &Publisher) {
    for (topic, payload, retain) in agent.announcement() {
        publish(publisher, &topic, &payload, retain);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::CollectError;

    /// A collector whose next results the test sets.
    struct Scripted {
        results: Vec<Result<Vec<Reading>, ()>>,
    }

    impl Collector for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        fn collect(&mut self, _tick: &Tick, out: &mut Vec<Reading>) -> Result<(), CollectError> {
            match self.results.remove(0) {
                Ok(readings) => {
                    out.extend(readings);
                    Ok(())
                }
                Err(()) => Err(CollectError::parse(std::path::Path::new("/proc/x"), "garbage")),
            }
        }
    }

    fn config() -> Config {
        Config {
            node_id: "t".into(),
            ..Config::default()
        }
    }

    fn value(agent: &Agent, key: &str) -> Option<Value> {
        agent
            .readings()
            .iter()
            .find(|r| r.key == key)
            .map(|r| r.value.clone())
    }

    #[test]
    fn a_failing_collector_keeps_its_entities_without_values_and_others_go_on() {
        let ok = |v: f64| Ok(vec![Reading::new("x_used", "X used", Kind::Percent, v)]);
        let failing = Scripted {
            results: vec![ok(1.0), Err(()), ok(3.0)],
        };
        let steady = Scripted {
            results: vec![ok(5.0), ok(6.0), ok(7.0)]
                .into_iter()
                .map(|r| {
                    r.map(|mut v| {
                        v[0].key = "y_used".into();
                        v
                    })
                })
                .collect(),
        };
        let mut agent = Agent::new(&config(), vec![Box::new(failing), Box::new(steady)]);
        let tick = Tick::now();
        assert!(agent.cycle(&tick).is_some(), "first discovery");
        assert!(agent.cycle(&tick).is_none(), "a failure is not an entity change");
        assert_eq!(value(&agent, "x_used"), Some(Value::Missing));
        assert_eq!(value(&agent, "y_used"), Some(Value::Float(6.0)));
        agent.cycle(&tick);
        assert_eq!(value(&agent, "x_used"), Some(Value::Float(3.0)));
    }

    #[test]
    fn duplicate_keys_keep_the_first_reading() {
        let dup = Scripted {
            results: vec![Ok(vec![
                Reading::new("k", "First", Kind::Count, 1u64),
                Reading::new("k", "Second", Kind::Count, 2u64),
            ])],
        };
        let mut agent = Agent::new(&config(), vec![Box::new(dup)]);
        agent.cycle(&Tick::now());
        let ks: Vec<_> = agent.readings().iter().filter(|r| r.key == "k").collect();
        assert_eq!(ks.len(), 1);
        assert_eq!(ks[0].name, "First");
    }

    #[test]
    fn node_id_comes_from_the_host_name_made_topic_safe() {
        let cfg = Config::default();
        assert_eq!(node_id(&cfg, Some("nuc.home.lan")), "nuc_home_lan");
        assert_eq!(node_id(&cfg, Some("pi-4")), "pi-4");
        assert_eq!(node_id(&cfg, Some("a+b#c/d")), "a_b_c_d");
        assert_eq!(node_id(&cfg, None), "host");
        assert_eq!(node_id(&config(), Some("ignored")), "t");
    }
}
