//! The agent: the collection loop, announcing to Home Assistant on every
//! (re)connect and on HA's birth message, shutdown, and the systemd
//! watchdog. [`run`] takes what it publishes through ([`Outbox`]), its
//! supervisor, its events and its shutdown signal as arguments, so tests
//! drive its timers with `tokio::time::pause()` (ticking on tokio's timer,
//! [`Ticks::Runtime`], where a run ticks on the kernel's).

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::time::{sleep_until, MissedTickBehavior};

use crate::availability::{escaped_for_log, LastGood, Latch, RateLimit};
use crate::collector::{Collector, Tick};
use crate::discovery::{Announcer, Model, OFFLINE, ONLINE};
use crate::notify;
use crate::reading::{Kind, Label, Reading, Value};
use crate::session::{Publisher, SessionEvent};
use crate::source::SourceHandle;

/// One collector with what it last reported, so that a collector that fails
/// keeps its entities (shown without a value) instead of deleting them.
struct Slot {
    collector: Box<dyn Collector>,
    last_ok: LastGood,
    health: Latch,
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
    /// The keys of the last cycle whose readings were checked for
    /// duplicate keys (see [`drop_duplicate_keys`]).
    unique_keys: Vec<Label>,
    state: Option<String>,
    /// The last info payload, and whether it changed since it was published.
    info: Option<String>,
    info_changed: bool,
    /// What `info` was built from: it is built again only when that changes.
    info_source: InfoSource,
    /// The Prometheus endpoint's text, rendered after each cycle when it is on.
    metrics: Option<tokio::sync::watch::Sender<String>>,
    /// What wakes [`run`] every interval.
    ticks: Ticks,
}

impl Agent {
    /// Builds the agent for HA's `model` of this host, collecting every
    /// `interval` with `collectors` (see [`crate::wiring::build`]).
    pub fn new(model: Model, interval: Duration, collectors: Vec<Box<dyn Collector>>) -> Agent {
        Agent {
            slots: collectors
                .into_iter()
                .map(|collector| Slot {
                    collector,
                    last_ok: LastGood::default(),
                    health: Latch::default(),
                })
                .collect(),
            sources: Vec::new(),
            groups: Vec::new(),
            routes: Vec::new(),
            model,
            announcer: Announcer::default(),
            interval,
            last_cycle: None,
            readings: Vec::new(),
            unique_keys: Vec::new(),
            state: None,
            info: None,
            info_changed: false,
            info_source: InfoSource::default(),
            metrics: None,
            ticks: Ticks::Kernel,
        }
    }

    /// Runs every collector once. One collector failing never fails the
    /// others: its entities stay, without a value, and the failure is
    /// logged once (and its recovery once).
    pub fn collect(&mut self, tick: &Tick) -> Vec<Reading> {
        let mut readings = Vec::with_capacity(64);
        self.collect_into(tick, &mut readings);
        readings
    }

    /// [`Agent::collect`] into `readings` (emptied first), so a cycle
    /// reuses the last one's vector.
    fn collect_into(&mut self, tick: &Tick, readings: &mut Vec<Reading>) {
        let started = Instant::now();
        readings.clear();
        for slot in &mut self.slots {
            let mark = readings.len();
            match slot.collector.collect(tick, readings) {
                Ok(()) => {
                    if slot.health.recover() {
                        tracing::info!(collector = slot.collector.name(), "collector recovered");
                    }
                    slot.last_ok.keep(&readings[mark..]);
                }
                Err(e) => {
                    readings.truncate(mark);
                    if slot.health.fail() {
                        tracing::warn!(collector = slot.collector.name(), error = %e, "collector failed; its entities show no value until it recovers");
                    }
                    readings.extend(slot.last_ok.without_values());
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
        drop_duplicate_keys(readings, &mut self.unique_keys);
        readings.push(Reading::new("last_seen", "Last seen", Kind::Timestamp, tick.wall));
        readings.push(
            Reading::new(
                "version",
                "Agent version",
                Kind::Text,
                env!("CARGO_PKG_VERSION").to_string(),
            )
            .diagnostic()
            .steady(),
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
    }

    /// Collects a cycle and updates the payloads. Returns the new discovery
    /// payload when the entity set changed.
    pub fn cycle(&mut self, tick: &Tick) -> Option<String> {
        let mut readings = std::mem::take(&mut self.readings);
        self.collect_into(tick, &mut readings);
        self.readings = readings;
        self.state = Some(self.model.state_payload(&self.readings, &self.groups));
        if self.info.is_none() || !self.info_source.matches(&self.readings) {
            self.info_source.keep(&self.readings);
            let info = self.model.info_payload(&self.readings);
            if self.info.as_deref() != Some(info.as_str()) {
                self.info = Some(info);
                self.info_changed = true;
            }
        }
        if let Some(tx) = &self.metrics {
            tx.send_replace(crate::prometheus::render(&self.readings));
        }
        self.announcer
            .update(&self.model, &self.readings)
            .map(str::to_owned)
    }

    /// Sets what wakes [`run`] every interval: [`Ticks::Kernel`] unless
    /// the runtime's clock is paused (tests), which a kernel timer ignores.
    pub fn tick_on(&mut self, ticks: Ticks) {
        self.ticks = ticks;
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

    /// The latest info payload (steady values and attributes).
    pub fn info(&self) -> Option<&str> {
        self.info.as_deref()
    }

    /// Whether the info payload changed since the last call (or since the
    /// agent started): whether to publish it after a cycle.
    pub fn take_info_change(&mut self) -> bool {
        std::mem::take(&mut self.info_changed)
    }

    /// Every message `run` publishes when it announces, in order.
    pub fn announcement(&self) -> Vec<(String, String, bool)> {
        let t = &self.model.topics;
        let mut out = vec![(t.availability.clone(), ONLINE.to_string(), true)];
        if let Some(d) = self.discovery() {
            out.push((t.discovery.clone(), d.to_string(), true));
        }
        if let Some(i) = self.info() {
            out.push((t.info.clone(), i.to_string(), true));
        }
        if let Some(s) = self.state() {
            out.push((t.state.clone(), s.to_string(), false));
        }
        out
    }
}

/// What the info payload holds, per reading in order: the key, the value
/// of a steady reading and the attributes. Compared in place every cycle,
/// so the payload is serialized again only when one of them changed (at
/// boot, on upgrade, when an update check ends), not every cycle.
#[derive(Debug, Default)]
struct InfoSource(Vec<(Label, Option<Value>, Option<Attributes>)>);

type Attributes = serde_json::Map<String, serde_json::Value>;

impl InfoSource {
    /// The readings whose value or attributes go on the info topic.
    fn parts(readings: &[Reading]) -> impl Iterator<Item = &Reading> {
        readings
            .iter()
            .filter(|r| (r.kind != Kind::Button && r.is_steady()) || r.attributes.is_some())
    }

    fn steady_value(r: &Reading) -> Option<&Value> {
        (r.kind != Kind::Button && r.is_steady()).then_some(&r.value)
    }

    fn matches(&self, readings: &[Reading]) -> bool {
        let mut kept = self.0.iter();
        Self::parts(readings).all(|r| {
            kept.next().is_some_and(|(key, value, attributes)| {
                *key == r.key && value.as_ref() == Self::steady_value(r) && *attributes == r.attributes
            })
        }) && kept.next().is_none()
    }

    fn keep(&mut self, readings: &[Reading]) {
        self.0.clear();
        self.0.extend(Self::parts(readings).map(|r| {
            (
                r.key.clone(),
                Self::steady_value(r).cloned(),
                r.attributes.clone(),
            )
        }));
    }
}

/// Keeps the first reading of each key. Two host names can slug to the
/// same key ("/srv/a-b" and "/srv/a.b"); a state JSON with the key twice
/// would let one silently overwrite the other. `unique` holds the keys of
/// the last cycle that was checked, which were unique: the usual cycle has
/// the same keys in the same order and costs a comparison per key.
fn drop_duplicate_keys(readings: &mut Vec<Reading>, unique: &mut Vec<Label>) {
    if readings.len() == unique.len() && readings.iter().zip(unique.iter()).all(|(r, k)| r.key == *k) {
        return;
    }
    remove_duplicate_keys(readings);
    unique.clear();
    unique.extend(readings.iter().map(|r| r.key.clone()));
}

/// The check of [`drop_duplicate_keys`]: one small set of borrowed keys
/// when there are no duplicates.
fn remove_duplicate_keys(readings: &mut Vec<Reading>) {
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

/// Where the agent's messages go: the MQTT session's [`Publisher`] in
/// `run`, a recorder in tests.
pub trait Outbox {
    /// Queues a message; one that cannot go out is dropped (everything is
    /// sent whole again on the next connect).
    fn publish(&self, topic: &str, payload: &str, retain: bool);
    /// Asks for a clean DISCONNECT after what is queued.
    fn disconnect(&self);
}

impl Outbox for Publisher {
    fn publish(&self, topic: &str, payload: &str, retain: bool) {
        if let Err(e) = Publisher::publish(self, topic, payload.as_bytes(), retain) {
            tracing::debug!(error = %e, "dropped");
        }
    }

    fn disconnect(&self) {
        let _ = Publisher::disconnect(self);
    }
}

/// Who watches the agent: systemd's notify protocol in `run` ([`Systemd`]),
/// a recorder in tests.
pub trait Supervisor {
    /// How often to pet the watchdog; `None` for no watchdog.
    fn watchdog_interval(&self) -> Option<Duration>;
    /// The agent is up.
    fn ready(&self);
    /// The agent is alive (the collection loop turns).
    fn watchdog(&self);
    /// The agent is stopping.
    fn stopping(&self);
}

/// systemd, through `NOTIFY_SOCKET` (a no-op without it).
#[derive(Debug, Clone, Copy, Default)]
pub struct Systemd;

impl Supervisor for Systemd {
    fn watchdog_interval(&self) -> Option<Duration> {
        notify::watchdog_interval()
    }
    fn ready(&self) {
        notify::ready();
    }
    fn watchdog(&self) {
        notify::watchdog();
    }
    fn stopping(&self) {
        notify::stopping();
    }
}

fn publish(out: &impl Outbox, topic: &str, payload: &str, retain: bool) {
    out.publish(topic, payload, retain);
}

/// At most one "unknown command" warning per this long: the command topic
/// is writable by whoever may publish to the broker.
const UNKNOWN_COMMAND_LOG_EVERY: Duration = Duration::from_secs(60);

/// The longest part of an unknown command word that is logged.
const COMMAND_LOG_MAX_CHARS: usize = 64;

/// How long after announcing discovery the state goes out again: HA
/// subscribes to an entity's state topic only once it has processed its
/// discovery, so a state sent right behind it can be missed.
const STATE_AFTER_ANNOUNCE: Duration = Duration::from_secs(2);

/// What wakes the agent every interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ticks {
    /// A `timerfd` on `CLOCK_MONOTONIC`: the kernel wakes the process once
    /// per tick. A tokio timer 10 s away is moved down tokio's timer wheel
    /// (4.096 s slots, then 64 ms, then 1 ms) before it fires, each move a
    /// wake-up of the process of its own: three per tick (issue 13). The
    /// sources wait on these ticks too (see [`crate::source::sleep_on_grid`]).
    Kernel,
    /// tokio's interval, which follows a paused clock (tests).
    Runtime,
}

/// Tolerance before a late tick counts as missed, as tokio's `Interval`.
const LATE_TICK: Duration = Duration::from_millis(5);

/// The agent's interval: a kernel timer ([`Ticks::Kernel`]) or tokio's.
/// A missed tick delays the next ones by as much, as tokio's
/// [`MissedTickBehavior::Delay`] does, with either.
enum Ticker {
    Kernel {
        timer: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
        period: Duration,
        /// The instant the timer is armed for.
        deadline: Instant,
    },
    Runtime(tokio::time::Interval),
}

impl Ticker {
    /// Ticks every `period`, the first time `period` from now.
    fn start(ticks: Ticks, period: Duration) -> Ticker {
        if ticks == Ticks::Kernel {
            match Ticker::kernel(period) {
                Ok(ticker) => return ticker,
                Err(e) => tracing::warn!(error = %e, "no kernel timer; ticking on tokio's"),
            }
        }
        Ticker::runtime(period)
    }

    fn runtime(period: Duration) -> Ticker {
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ticker::Runtime(interval)
    }

    fn kernel(period: Duration) -> std::io::Result<Ticker> {
        use rustix::time::{timerfd_create, TimerfdClockId, TimerfdFlags};
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        let deadline = Instant::now() + period;
        arm(&fd, deadline)?;
        // Deprecated for a `T` that may close or swap its descriptor while
        // registered (tokio#8587); an `OwnedFd` owns it until dropped, and
        // the safe spelling is gone (`register` is `unsafe`, forbidden here).
        #[allow(deprecated)]
        let timer = tokio::io::unix::AsyncFd::with_interest(fd, tokio::io::Interest::READABLE)?;
        Ok(Ticker::Kernel {
            timer,
            period,
            deadline,
        })
    }

    /// Waits for the next tick. Cancel-safe: a tick is taken (and the
    /// timer re-armed) in the one poll that sees it.
    async fn tick(&mut self) {
        let failed = match self {
            Ticker::Runtime(interval) => {
                interval.tick().await;
                return;
            }
            Ticker::Kernel {
                timer,
                period,
                deadline,
            } => match Ticker::kernel_tick(timer, *period, deadline).await {
                Ok(()) => return,
                Err(e) => (e, *period),
            },
        };
        // Not seen: a timerfd that was made does not fail. Carry on with
        // tokio's timer rather than stop collecting.
        tracing::warn!(error = %failed.0, "kernel timer failed; ticking on tokio's");
        *self = Ticker::runtime(failed.1);
    }

    async fn kernel_tick(
        timer: &tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
        period: Duration,
        deadline: &mut Instant,
    ) -> std::io::Result<()> {
        loop {
            let mut ready = timer.readable().await?;
            let mut expirations = [0u8; 8];
            match ready.try_io(|fd| Ok(rustix::io::read(fd.get_ref(), &mut expirations)?)) {
                Ok(read) => {
                    read?;
                    // A one-shot timer, armed again below: nothing to read
                    // until then, so no read that finds nothing next time.
                    ready.clear_ready();
                    break;
                }
                // Spurious readiness: cleared, wait again.
                Err(_) => continue,
            }
        }
        let now = Instant::now();
        *deadline = if now > *deadline + LATE_TICK {
            now + period
        } else {
            *deadline + period
        };
        arm(timer.get_ref(), *deadline)?;
        Ok(())
    }
}

/// Arms `timer` once, to expire at `at`. Relative to now, read from
/// `Instant` (the same `CLOCK_MONOTONIC`): the grid is kept by adding the
/// period to the last deadline, so the microseconds between reading the
/// clock and the syscall do not add up. (Not rustix's `clock_gettime`: its
/// vDSO lookup faults under valgrind, which bench/instructions.sh uses.)
fn arm(timer: &impl std::os::fd::AsFd, at: Instant) -> rustix::io::Result<()> {
    use rustix::time::{timerfd_settime, Itimerspec, TimerfdTimerFlags, Timespec};
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Zero would disarm the timer: a deadline already past fires at once.
    let left = at
        .saturating_duration_since(Instant::now())
        .max(Duration::from_nanos(1));
    let value = Timespec {
        tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(left.subsec_nanos()),
    };
    timerfd_settime(
        timer,
        TimerfdTimerFlags::empty(),
        &Itimerspec {
            it_interval: zero,
            it_value: value,
        },
    )
    .map(|_| ())
}

/// Runs the agent until `shutdown` resolves: collects every interval,
/// publishes state while connected, announces (online + discovery + state)
/// on every connect and after HA's birth message, then publishes `offline`
/// and disconnects.
pub async fn run(
    mut agent: Agent,
    publisher: impl Outbox,
    supervisor: impl Supervisor,
    mut events: mpsc::Receiver<SessionEvent>,
    mut pokes: mpsc::Receiver<()>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let watchdog_every = supervisor.watchdog_interval();
    // When the agent ticks at least as often as systemd wants a ping, its
    // ticks carry the pings: a timer of their own (45 s for WatchdogSec=90)
    // would wake the process three times on its way down tokio's timer
    // wheel (issue 13). A hung loop misses both alike.
    let pet_on_ticks = watchdog_every.filter(|every| agent.interval <= *every);
    let mut watchdog = tokio::time::interval(watchdog_every.unwrap_or(Duration::from_secs(3600)));
    let mut last_pet = tokio::time::Instant::now();
    let far = || tokio::time::Instant::now() + Duration::from_secs(86400 * 365);
    let mut announce_at = far();
    let mut state_at = far();
    let mut connected = false;
    let mut unknown = RateLimit::new(UNKNOWN_COMMAND_LOG_EVERY);
    let started = tokio::time::Instant::now();
    // The first cycle now, so the first announcement carries discovery and
    // state; the interval's first tick and the sources' first wake-ups
    // (they answered before we started) would only repeat it.
    agent.cycle(&Tick::now());
    let mut ticker = Ticker::start(agent.ticks, agent.interval);
    crate::source::set_cycle_grid(tokio::time::Instant::now());
    // The sources wake on the agent's ticks, unless the agent follows a
    // paused runtime clock (tests): that clock is not theirs.
    let kernel_ticks = agent.ticks == Ticks::Kernel;
    if kernel_ticks {
        // The sources' first sleeps began on timers: off them now.
        crate::source::tick(tokio::time::Instant::now(), agent.interval);
    }
    while pokes.try_recv().is_ok() {}
    supervisor.ready();
    if pet_on_ticks.is_some() {
        supervisor.watchdog();
        last_pet = tokio::time::Instant::now();
    }
    tracing::info!(
        node_id = %agent.model.device.node_id,
        interval = %humantime::format_duration(agent.interval),
        state_topic = %agent.model.topics.state,
        "running"
    );

    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = ticker.tick() => {
                let now = tokio::time::Instant::now();
                if kernel_ticks {
                    crate::source::tick(now, agent.interval);
                }
                // Ping now if the next tick would be too late for it.
                if pet_on_ticks.is_some_and(|every| now - last_pet + agent.interval > every) {
                    supervisor.watchdog();
                    last_pet = now;
                }
                cycle_and_publish(&mut agent, &publisher, connected);
                crate::residency::drop_startup_text(now - started);
            }
            // A source has news that should not wait for the interval (a
            // unit failed, an update run finished).
            Some(()) = pokes.recv() => cycle_and_publish(&mut agent, &publisher, connected),
            _ = watchdog.tick(), if watchdog_every.is_some() && pet_on_ticks.is_none() => supervisor.watchdog(),
            _ = sleep_until(announce_at) => {
                announce_at = far();
                if connected {
                    announce(&mut agent, &publisher);
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
                    announce(&mut agent, &publisher);
                    state_at = tokio::time::Instant::now() + STATE_AFTER_ANNOUNCE;
                }
                Some(SessionEvent::Disconnected) => connected = false,
                Some(SessionEvent::Message { topic, payload }) if topic == agent.model.topics.command => {
                    // Only the exact word announced acts: no trimming, so
                    // " apply" or "apply\n" is as unknown as "rm -rf".
                    match std::str::from_utf8(&payload) {
                        Ok(word) if agent.dispatch(word) => tracing::info!(command = word, "command received"),
                        _ => {
                            if let Some(suppressed) = unknown.note(tokio::time::Instant::now()) {
                                tracing::warn!(command = %escaped_for_log(&payload, COMMAND_LOG_MAX_CHARS), suppressed, "ignoring a command no entity announced");
                            }
                        }
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

    supervisor.stopping();
    tracing::info!("stopping; publishing offline");
    if connected {
        publish(&publisher, &agent.model.topics.availability, OFFLINE, true);
    }
    publisher.disconnect();
}

fn cycle_and_publish(agent: &mut Agent, publisher: &impl Outbox, connected: bool) {
    let changed = agent.cycle(&Tick::now());
    if connected {
        if let Some(d) = changed {
            tracing::info!(bytes = d.len(), "entities changed; publishing discovery");
            publish(publisher, &agent.model.topics.discovery, &d, true);
        }
        if let (true, Some(i)) = (agent.take_info_change(), agent.info()) {
            publish(publisher, &agent.model.topics.info, i, true);
        }
        if let Some(s) = agent.state() {
            publish(publisher, &agent.model.topics.state, s, false);
        }
    }
}

fn announce(agent: &mut Agent, publisher: &impl Outbox) {
    agent.info_changed = false;
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

    #[test]
    fn the_info_is_rebuilt_only_when_a_steady_value_or_attributes_change() {
        let attrs = |image: &str| {
            let mut m = serde_json::Map::new();
            m.insert("image".into(), serde_json::json!(image));
            m
        };
        let cycle = |kernel: &str, image: &str, cpu: f64| {
            vec![
                Reading::new("kernel", "Kernel", Kind::Text, kernel.to_string()).steady(),
                Reading::new("cpu_usage", "CPU usage", Kind::Percent, cpu),
                Reading::new("c_state", "State", Kind::Text, "running".to_string())
                    .with_attributes(attrs(image)),
            ]
        };
        let mut kept = InfoSource::default();
        kept.keep(&cycle("6.1", "a", 1.0));
        assert!(kept.matches(&cycle("6.1", "a", 1.0)));
        assert!(
            kept.matches(&cycle("6.1", "a", 55.0)),
            "a value outside the info changes nothing"
        );
        assert!(!kept.matches(&cycle("6.2", "a", 1.0)), "a steady value");
        assert!(!kept.matches(&cycle("6.1", "b", 1.0)), "attributes");
        assert!(!kept.matches(&cycle("6.1", "a", 1.0)[..2]), "a reading gone");
        let mut more = cycle("6.1", "a", 1.0);
        more.push(Reading::new("os", "OS", Kind::Text, "Debian".to_string()).steady());
        assert!(!kept.matches(&more), "a reading more");
    }

    fn agent(collectors: Vec<Box<dyn Collector>>) -> Agent {
        let cfg = crate::wiring::Config {
            node_id: "t".into(),
            ..Default::default()
        };
        Agent::new(cfg.model(), cfg.interval, collectors)
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
        let mut agent = agent(vec![Box::new(failing), Box::new(steady)]);
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
        let mut agent = agent(vec![Box::new(dup)]);
        agent.cycle(&Tick::now());
        let ks: Vec<_> = agent.readings().iter().filter(|r| r.key == "k").collect();
        assert_eq!(ks.len(), 1);
        assert_eq!(ks[0].name, "First");
    }

    /// What the loop did, in order.
    #[derive(Debug, Clone, PartialEq)]
    enum Call {
        Publish {
            topic: String,
            payload: String,
            retain: bool,
        },
        Disconnect,
        Ready,
        Watchdog,
        Stopping,
    }

    /// The test double: records every publish and every word to systemd.
    #[derive(Clone, Default)]
    struct Recorder {
        calls: std::sync::Arc<std::sync::Mutex<Vec<Call>>>,
        watchdog: Option<Duration>,
    }

    impl Recorder {
        fn push(&self, call: Call) {
            self.calls.lock().expect("lock").push(call);
        }
        fn take(&self) -> Vec<Call> {
            std::mem::take(&mut *self.calls.lock().expect("lock"))
        }
        /// The topics published since the last `take`, with their payloads.
        fn published(&self) -> Vec<(String, String)> {
            self.take()
                .into_iter()
                .filter_map(|c| match c {
                    Call::Publish { topic, payload, .. } => Some((topic, payload)),
                    _ => None,
                })
                .collect()
        }
    }

    impl Outbox for Recorder {
        fn publish(&self, topic: &str, payload: &str, retain: bool) {
            self.push(Call::Publish {
                topic: topic.into(),
                payload: payload.into(),
                retain,
            });
        }
        fn disconnect(&self) {
            self.push(Call::Disconnect);
        }
    }

    impl Supervisor for Recorder {
        fn watchdog_interval(&self) -> Option<Duration> {
            self.watchdog
        }
        fn ready(&self) {
            self.push(Call::Ready);
        }
        fn watchdog(&self) {
            self.push(Call::Watchdog);
        }
        fn stopping(&self) {
            self.push(Call::Stopping);
        }
    }

    /// A collector that always reads one value.
    struct Steady;

    impl Collector for Steady {
        fn name(&self) -> &'static str {
            "steady"
        }
        fn collect(&mut self, _tick: &Tick, out: &mut Vec<Reading>) -> Result<(), CollectError> {
            out.push(Reading::new("x", "X", Kind::Count, 1u64));
            Ok(())
        }
    }

    /// A collector whose steady reading changes on its fourth cycle (an
    /// upgrade), next to a reading that changes every cycle.
    #[derive(Default)]
    struct Upgrade {
        cycles: u32,
    }

    impl Collector for Upgrade {
        fn name(&self) -> &'static str {
            "upgrade"
        }
        fn collect(&mut self, _tick: &Tick, out: &mut Vec<Reading>) -> Result<(), CollectError> {
            self.cycles += 1;
            let kernel = if self.cycles < 4 { "6.1" } else { "6.2" };
            out.push(Reading::new("kernel", "Kernel", Kind::Text, kernel.to_string()).steady());
            out.push(Reading::new("n", "N", Kind::Count, u64::from(self.cycles)));
            Ok(())
        }
    }

    /// A running loop and the ends the test drives it with.
    struct Running {
        rec: Recorder,
        events: mpsc::Sender<SessionEvent>,
        pokes: mpsc::Sender<()>,
        shutdown: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<()>,
        topics: crate::discovery::Topics,
    }

    fn start(watchdog: Option<Duration>) -> Running {
        start_with(watchdog, vec![Box::new(Steady)])
    }

    fn start_with(watchdog: Option<Duration>, collectors: Vec<Box<dyn Collector>>) -> Running {
        let rec = Recorder {
            watchdog,
            ..Recorder::default()
        };
        let mut agent = agent(collectors);
        agent.tick_on(Ticks::Runtime);
        let topics = agent.model.topics.clone();
        let (events, events_rx) = mpsc::channel(16);
        let (pokes, pokes_rx) = mpsc::channel(1);
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(agent, rec.clone(), rec.clone(), events_rx, pokes_rx, async {
            let _ = shutdown_rx.await;
        }));
        Running {
            rec,
            events,
            pokes,
            shutdown: Some(shutdown),
            task,
            topics,
        }
    }

    /// Lets the loop run for `d` of (paused, auto-advancing) time.
    async fn wait(d: Duration) {
        tokio::time::sleep(d).await;
    }

    fn topics_of(published: &[(String, String)]) -> Vec<&str> {
        published.iter().map(|(t, _)| t.as_str()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn connect_announces_online_discovery_and_state_then_the_state_again() {
        let r = start(None);
        wait(Duration::from_millis(10)).await;
        assert_eq!(r.rec.take().first(), Some(&Call::Ready));
        r.events.send(SessionEvent::Connected).await.expect("send");
        wait(Duration::from_millis(10)).await;
        let p = r.rec.published();
        assert_eq!(
            topics_of(&p),
            [
                r.topics.availability.as_str(),
                r.topics.discovery.as_str(),
                r.topics.info.as_str(),
                r.topics.state.as_str()
            ]
        );
        assert_eq!(p[0].1, ONLINE);
        wait(STATE_AFTER_ANNOUNCE).await;
        assert_eq!(
            topics_of(&r.rec.published()),
            [r.topics.state.as_str()],
            "the state again once HA has subscribed"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn state_goes_out_every_interval_while_connected_and_not_before() {
        let r = start(None);
        wait(Duration::from_millis(10)).await;
        r.rec.take();
        wait(Duration::from_secs(65)).await;
        assert!(r.rec.published().is_empty(), "nothing while not connected");
        r.events.send(SessionEvent::Connected).await.expect("send");
        wait(STATE_AFTER_ANNOUNCE + Duration::from_millis(10)).await;
        r.rec.take();
        wait(Duration::from_secs(60)).await;
        let p = r.rec.published();
        assert_eq!(topics_of(&p), [r.topics.state.as_str(); 2], "30s interval");
        r.events.send(SessionEvent::Disconnected).await.expect("send");
        wait(Duration::from_secs(60)).await;
        assert!(r.rec.published().is_empty(), "nothing while disconnected");
    }

    #[tokio::test(start_paused = true)]
    async fn the_info_goes_out_retained_on_announce_and_then_only_when_it_changes() {
        let r = start_with(None, vec![Box::<Upgrade>::default()]);
        r.events.send(SessionEvent::Connected).await.expect("send");
        wait(Duration::from_millis(10)).await;
        let info = |calls: Vec<Call>| -> Vec<(String, bool)> {
            calls
                .into_iter()
                .filter_map(|c| match c {
                    Call::Publish {
                        topic,
                        payload,
                        retain,
                    } if topic == r.topics.info => Some((payload, retain)),
                    _ => None,
                })
                .collect()
        };
        let first = info(r.rec.take());
        assert_eq!(first.len(), 1, "{first:?}");
        assert!(
            first[0].0.contains(r#""kernel":"6.1""#) && first[0].1,
            "{first:?}"
        );
        // Cycles 2 and 3 (30 s apart) change `n` only; cycle 4 upgrades.
        wait(Duration::from_secs(61)).await;
        let calls = r.rec.take();
        assert!(info(calls.clone()).is_empty(), "{calls:?}");
        let states: Vec<_> = calls
            .iter()
            .filter_map(|c| match c {
                Call::Publish { topic, payload, .. } if *topic == r.topics.state => Some(payload.clone()),
                _ => None,
            })
            .collect();
        assert!(states.iter().all(|s| !s.contains("kernel")), "{states:?}");
        wait(Duration::from_secs(30)).await;
        let upgraded = info(r.rec.take());
        assert_eq!(upgraded.len(), 1, "{upgraded:?}");
        assert!(upgraded[0].0.contains(r#""kernel":"6.2""#), "{upgraded:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn home_assistant_birth_announces_again_within_three_seconds() {
        let r = start(None);
        r.events.send(SessionEvent::Connected).await.expect("send");
        wait(STATE_AFTER_ANNOUNCE + Duration::from_millis(10)).await;
        r.rec.take();
        r.events
            .send(SessionEvent::Message {
                topic: r.topics.ha_status.clone(),
                payload: b"offline".to_vec(),
            })
            .await
            .expect("send");
        wait(Duration::from_secs(3)).await;
        assert!(r.rec.published().is_empty(), "HA going offline asks for nothing");
        r.events
            .send(SessionEvent::Message {
                topic: r.topics.ha_status.clone(),
                payload: ONLINE.as_bytes().to_vec(),
            })
            .await
            .expect("send");
        wait(Duration::from_secs(3)).await;
        let p = r.rec.published();
        assert_eq!(
            topics_of(&p)[..4],
            [
                r.topics.availability.as_str(),
                r.topics.discovery.as_str(),
                r.topics.info.as_str(),
                r.topics.state.as_str()
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_publishes_offline_before_the_disconnect() {
        let mut r = start(None);
        r.events.send(SessionEvent::Connected).await.expect("send");
        wait(Duration::from_millis(10)).await;
        r.rec.take();
        r.shutdown.take().expect("once").send(()).expect("send");
        r.task.await.expect("loop ends");
        assert_eq!(
            r.rec.take(),
            [
                Call::Stopping,
                Call::Publish {
                    topic: r.topics.availability.clone(),
                    payload: OFFLINE.into(),
                    retain: true
                },
                Call::Disconnect
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_while_disconnected_only_disconnects() {
        let mut r = start(None);
        wait(Duration::from_millis(10)).await;
        r.rec.take();
        r.shutdown.take().expect("once").send(()).expect("send");
        r.task.await.expect("loop ends");
        assert_eq!(r.rec.take(), [Call::Stopping, Call::Disconnect]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_watchdog_is_petted_every_interval_systemd_asked_for() {
        let r = start(Some(Duration::from_secs(10)));
        wait(Duration::from_secs(35)).await;
        let pings = r.rec.take().iter().filter(|c| **c == Call::Watchdog).count();
        assert_eq!(pings, 4, "at 0s, 10s, 20s and 30s");
        drop(r.pokes);
    }

    #[tokio::test(start_paused = true)]
    async fn the_ticks_pet_a_watchdog_that_asks_less_often_than_the_interval() {
        // 30 s interval, a ping wanted every 70 s: on the ticks at 0 s,
        // 60 s (90 s would be late), 120 s, 180 s — never more than 70 s apart.
        let r = start(Some(Duration::from_secs(70)));
        wait(Duration::from_secs(185)).await;
        let pings = r.rec.take().iter().filter(|c| **c == Call::Watchdog).count();
        assert_eq!(pings, 4, "at 0s, 60s, 120s and 180s");
        drop(r.pokes);
    }

    #[tokio::test(start_paused = true)]
    async fn no_watchdog_pings_without_a_watchdog() {
        let r = start(None);
        wait(Duration::from_secs(35)).await;
        assert!(!r.rec.take().contains(&Call::Watchdog));
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_state_after_start_is_published_once() {
        let r = start(None);
        // As in `run`: the session connected and the sources answered
        // (each waking the agent) while it waited for them.
        r.events.try_send(SessionEvent::Connected).expect("queued");
        r.pokes.try_send(()).expect("queued");
        wait(Duration::from_secs(1)).await;
        let p = r.rec.published();
        let states = p.iter().filter(|(t, _)| *t == r.topics.state).count();
        assert_eq!(states, 1, "{p:?}");
        assert_eq!(
            topics_of(&p),
            [
                r.topics.availability.as_str(),
                r.topics.discovery.as_str(),
                r.topics.info.as_str(),
                r.topics.state.as_str()
            ]
        );
    }

    /// An agent with one source whose entity announces `word`; the
    /// commands the source receives arrive on the returned receiver.
    fn agent_with_command(word: &'static str) -> (Agent, mpsc::UnboundedReceiver<String>) {
        let (seen_tx, seen_rx) = mpsc::unbounded_channel();
        let (poke, _) = mpsc::channel(1);
        let initial = crate::source::SourceState {
            available: true,
            readings: vec![Reading::new("apply", "Apply", Kind::Text, "x".to_string()).with_command(word)],
        };
        let spawnable = crate::source::wire("test", initial, poke, move |mut ctx| async move {
            while let Some(w) = ctx.commands.recv().await {
                let _ = seen_tx.send(w);
            }
        });
        tokio::spawn(spawnable.task);
        let mut agent = agent(vec![Box::new(Steady)]);
        agent.add_source(spawnable.handle);
        (agent, seen_rx)
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_exact_announced_command_word_acts() {
        let (agent, mut seen) = agent_with_command("apply_container_updates");
        let command = agent.model.topics.command.clone();
        let rec = Recorder::default();
        let (events, events_rx) = mpsc::channel(16);
        let (_pokes, pokes_rx) = mpsc::channel(1);
        tokio::spawn(run(
            agent,
            rec.clone(),
            rec,
            events_rx,
            pokes_rx,
            std::future::pending(),
        ));
        for padded in [
            " apply_container_updates",
            "\tapply_container_updates\n",
            "apply_container_updates ",
            "APPLY_CONTAINER_UPDATES",
        ] {
            events
                .send(SessionEvent::Message {
                    topic: command.clone(),
                    payload: padded.as_bytes().to_vec(),
                })
                .await
                .expect("send");
        }
        wait(Duration::from_millis(100)).await;
        assert!(seen.try_recv().is_err(), "a padded word must not act");
        events
            .send(SessionEvent::Message {
                topic: command,
                payload: b"apply_container_updates".to_vec(),
            })
            .await
            .expect("send");
        wait(Duration::from_millis(100)).await;
        assert_eq!(seen.try_recv().ok().as_deref(), Some("apply_container_updates"));
    }

    #[test]
    fn unknown_command_words_are_logged_escaped_and_cut() {
        let forged = b"x\n2026-12-01T00:00:00Z ERROR forged\x1b[2J";
        let logged = escaped_for_log(forged, COMMAND_LOG_MAX_CHARS);
        assert!(!logged.contains('\n') && !logged.contains('\x1b'), "{logged}");
        assert!(logged.contains("\\n"), "{logged}");
        let long = escaped_for_log(&[b'a'; 10_000], COMMAND_LOG_MAX_CHARS);
        assert_eq!(
            long.chars().count(),
            COMMAND_LOG_MAX_CHARS + 1,
            "cut, with an ellipsis"
        );
        assert_eq!(escaped_for_log(b"reboot", COMMAND_LOG_MAX_CHARS), "reboot");
    }

    #[test]
    fn unknown_commands_warn_once_a_minute_with_a_count() {
        let mut limit = RateLimit::new(Duration::from_secs(60));
        let t0 = tokio::time::Instant::now();
        assert_eq!(limit.note(t0), Some(0), "the first is logged");
        let logged = (1..10_000u64)
            .filter(|i| limit.note(t0 + Duration::from_millis(*i)).is_some())
            .count();
        assert_eq!(logged, 0, "the flood within the minute is counted, not logged");
        assert_eq!(
            limit.note(t0 + Duration::from_secs(61)),
            Some(9_999),
            "the next warning says how many were not logged"
        );
    }

    #[tokio::test]
    async fn the_kernel_timer_ticks_every_period_from_its_start() {
        let period = Duration::from_millis(40);
        let started = Instant::now();
        let mut ticker = Ticker::start(Ticks::Kernel, period);
        assert!(matches!(ticker, Ticker::Kernel { .. }), "a timerfd here");
        for n in 1..=3 {
            ticker.tick().await;
            let elapsed = started.elapsed();
            assert!(elapsed >= period * n, "tick {n} at {elapsed:?}, early");
            assert!(
                elapsed < period * n + Duration::from_millis(30),
                "tick {n} at {elapsed:?}, late"
            );
        }
    }

    #[tokio::test]
    async fn a_missed_kernel_tick_delays_the_next_ones_as_tokio_does() {
        let period = Duration::from_millis(40);
        let mut ticker = Ticker::start(Ticks::Kernel, period);
        // A stall of two and a half periods: one tick at once, then the
        // next a whole period later (MissedTickBehavior::Delay), not a
        // burst of the missed ones nor one back on the old grid.
        std::thread::sleep(period * 5 / 2);
        let stalled = Instant::now();
        ticker.tick().await;
        assert!(
            stalled.elapsed() < Duration::from_millis(15),
            "the missed tick at once"
        );
        let after = Instant::now();
        ticker.tick().await;
        let gap = after.elapsed();
        assert!(
            gap >= period - Duration::from_millis(2),
            "next tick after {gap:?}: a burst"
        );
        assert!(
            gap < period + Duration::from_millis(30),
            "next tick after {gap:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_runtime_ticker_follows_a_paused_clock() {
        let period = Duration::from_secs(30);
        let t0 = tokio::time::Instant::now();
        let mut ticker = Ticker::start(Ticks::Runtime, period);
        ticker.tick().await;
        ticker.tick().await;
        assert_eq!(tokio::time::Instant::now(), t0 + period * 2);
    }
}
