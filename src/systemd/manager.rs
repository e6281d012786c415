//! The source of one systemd manager: connects to its bus, subscribes to
//! its signals, publishes a fresh [`Snapshot`] shortly after anything
//! changes (urgent, so a failed unit reaches HA within a second), resyncs
//! every interval, restarts allow-listed units on command, and reconnects
//! with backoff when the bus goes away.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, Notify};
use tokio::time::{sleep_until, Instant};

use super::bus::{Bus, BusError};
use super::config::{is_glob, ManagerKind, SystemdConfig};
use super::units::{watched_units, without_values, Layout, Snapshot};
use super::Outlet;
use crate::availability::Latch;
use crate::backoff::Backoff;
use crate::reading::Reading;
use crate::source::{self, SourceContext, SourceState, Spawnable};

/// How often the system bus socket is looked for while there is none.
const NO_BUS_RECHECK: Duration = Duration::from_secs(60);

/// How long after the first signal of a burst the snapshot is taken: the
/// burst (job removed, state changed, …) settles in a few milliseconds.
const SETTLE: Duration = Duration::from_millis(100);

/// At most one signal-driven snapshot per this long, however busy the
/// host; with [`SETTLE`], the longest a change waits is about 0.6 s.
const MIN_GAP: Duration = Duration::from_millis(500);

/// First reconnect delay; it doubles up to `systemd.reconnect_max`
/// (with the same [`Backoff`] as the MQTT session).
const RECONNECT_MIN: Duration = Duration::from_secs(1);

/// One systemd manager, ready to run.
#[derive(Debug, Clone)]
pub struct ManagerSource {
    /// System or user.
    kind: ManagerKind,
    /// The bus address; `None` when no user bus could be found.
    address: Option<String>,
    /// The standard system bus socket, when nobody asked for a bus: if it
    /// does not exist, the host has no system bus and gets no systemd
    /// entities (rather than unavailable ones) until it appears.
    unasked_socket: Option<&'static str>,
    /// Watched unit names (looked up even when not loaded).
    names: Vec<String>,
    /// Watched unit globs (matched against loaded units).
    globs: Vec<String>,
    /// How readings are keyed and which units have buttons.
    layout: Layout,
    /// Limit for each D-Bus call.
    timeout: Duration,
    /// Longest delay between reconnects.
    reconnect_max: Duration,
    /// How often to take a snapshot when no signal asked for one.
    resync: Duration,
}

impl ManagerSource {
    /// The source for `kind` as configured; `env` looks up the standard
    /// bus variables; `resync` is the agent's interval.
    pub fn new(
        kind: ManagerKind,
        cfg: &SystemdConfig,
        resync: Duration,
        env: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let m = cfg.manager(kind);
        let (globs, names): (Vec<String>, Vec<String>) = m.watch.iter().cloned().partition(|p| is_glob(p));
        ManagerSource {
            kind,
            unasked_socket: kind.unasked_socket(m.address, &env),
            address: kind.address(m.address, &env),
            names,
            globs,
            layout: Layout::new(kind, m.restart),
            timeout: cfg.timeout,
            reconnect_max: cfg.reconnect_max,
            resync,
        }
    }

    /// Wires the source to the agent.
    pub fn spawnable(self, poke: mpsc::Sender<()>) -> Spawnable {
        let initial = SourceState {
            available: false,
            readings: if self.nothing_here() {
                Vec::new()
            } else {
                self.layout.initial()
            },
        };
        source::wire(self.kind.source_name(), initial, poke, move |ctx| self.run(ctx))
    }

    /// True when the host has no system bus and nobody asked for one.
    fn nothing_here(&self) -> bool {
        self.unasked_socket
            .is_some_and(|socket| !std::path::Path::new(socket).exists())
    }

    async fn run(self, ctx: SourceContext) {
        let name = self.kind.source_name();
        let mut out = Outlet::new(ctx);
        if self.nothing_here() {
            tracing::info!(
                source = name,
                socket = self.unasked_socket.unwrap_or_default(),
                "no system bus here: no systemd entities (set systemd.system.address, or enabled = false)"
            );
            out.publish(SourceState::default(), false);
            // A bus that appears later is found within a minute; a stat and
            // a wake-up of its own each cycle cost more than that is worth.
            while self.nothing_here() {
                crate::source::sleep_on_grid(self.resync.max(NO_BUS_RECHECK)).await;
            }
        }
        let mut health = Health::new(name);
        let mut last = self.layout.initial();
        let backoff = Backoff {
            min: RECONNECT_MIN,
            max: self.reconnect_max,
        };
        let mut failures: u32 = 0;
        loop {
            let error = match &self.address {
                None => BusError::NoAddress {
                    manager: self.kind.word(),
                },
                Some(address) => match self
                    .session(address, &mut out, &mut last, &mut health, &mut failures)
                    .await
                {
                    Err(e) => e,
                    Ok(never) => match never {},
                },
            };
            health.down(&error);
            last = without_values(&last);
            out.publish(
                SourceState {
                    available: false,
                    readings: last.clone(),
                },
                true,
            );
            let until = Instant::now() + backoff.next_delay(failures);
            loop {
                tokio::select! {
                    _ = sleep_until(until) => break,
                    Some(word) = out.commands().recv() => {
                        tracing::warn!(source = name, command = %word, "systemd is unreachable; command dropped");
                    }
                }
            }
            failures = failures.saturating_add(1);
        }
    }

    /// One connection's life: returns only with the error that ended it.
    async fn session(
        &self,
        address: &str,
        out: &mut Outlet,
        last: &mut Vec<Reading>,
        health: &mut Health,
        failures: &mut u32,
    ) -> Result<Infallible, BusError> {
        let bus = Bus::connect(address, self.timeout).await?;
        // Signals are drained by a task of their own: zbus stops reading
        // the socket (method replies included) while a stream is full, so
        // a burst of signals during a snapshot must not wait for us.
        let changed = Arc::new(Notify::new());
        let (owner_tx, mut owner_rx) = mpsc::unbounded_channel();
        let _drain = Drain(tokio::spawn(drain_signals(
            bus.systemd_signals().await?,
            bus.owner_changes().await?,
            changed.clone(),
            owner_tx,
        )));
        bus.subscribe().await?;
        let mut snap = self.snapshot(&bus, health).await?;
        health.up(address);
        *failures = 0;
        self.publish(&snap, out, last, true);
        let mut last_snapshot = Instant::now();
        let far = || Instant::now() + Duration::from_secs(86400 * 365);
        let mut refresh_at = far();
        let mut pending = false;
        // On the agent's ticks (resync is its interval), so the resync
        // shares their wake-up: an interval of its own woke the process
        // three times per resync on the timer wheel's way (issue 13).
        let resync = crate::source::sleep_on_grid(self.resync);
        tokio::pin!(resync);
        loop {
            let urgent;
            tokio::select! {
                _ = changed.notified() => {
                    if !pending {
                        pending = true;
                        refresh_at = (Instant::now() + SETTLE).max(last_snapshot + MIN_GAP);
                    }
                    continue;
                }
                owner = owner_rx.recv() => match owner {
                    None => return Err(bus.closed_error()),
                    Some(false) => return Err(bus.gone_error()),
                    // systemd re-executed: it forgot our subscription.
                    Some(true) => {
                        bus.subscribe().await?;
                        urgent = true;
                    }
                },
                _ = sleep_until(refresh_at), if pending => urgent = true,
                // A change waiting for its snapshot stays urgent.
                _ = &mut resync => {
                    resync.set(crate::source::sleep_on_grid(self.resync));
                    urgent = pending;
                }
                Some(word) = out.commands().recv() => {
                    self.restart(&bus, &snap, &word).await?;
                    continue;
                }
            }
            pending = false;
            refresh_at = far();
            snap = self.snapshot(&bus, health).await?;
            last_snapshot = Instant::now();
            self.publish(&snap, out, last, urgent);
        }
    }

    fn publish(&self, snap: &Snapshot, out: &mut Outlet, last: &mut Vec<Reading>, urgent: bool) {
        *last = self.layout.readings(snap);
        out.publish(
            SourceState {
                available: true,
                readings: last.clone(),
            },
            urgent,
        );
    }

    /// Restarts the unit behind a button. A word that is no button of a
    /// watched, allow-listed unit restarts nothing.
    async fn restart(&self, bus: &Bus, snap: &Snapshot, word: &str) -> Result<(), BusError> {
        let name = self.kind.source_name();
        let Some((_, unit)) = self.layout.buttons(snap).into_iter().find(|(w, _)| w == word) else {
            tracing::warn!(source = name, command = %word, "no restart button of this manager; nothing restarted");
            return Ok(());
        };
        match bus.restart_unit(&unit).await {
            Ok(()) => {
                tracing::info!(source = name, %unit, "restarting, as asked from Home Assistant");
                Ok(())
            }
            Err(e) if e.is_answer() => {
                tracing::warn!(source = name, %unit, error = %e, "restart refused");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Asks the manager for everything it publishes.
    async fn snapshot(&self, bus: &Bus, health: &mut Health) -> Result<Snapshot, BusError> {
        let system_state = bus.system_state().await?;
        let mut failed: Vec<String> = bus
            .units_by_patterns(&["failed"], &[])
            .await?
            .into_iter()
            .map(|u| u.name)
            .collect();
        failed.sort();
        let mut found = Vec::new();
        if !self.names.is_empty() {
            found.extend(bus.units_by_names(&self.names).await?);
        }
        if !self.globs.is_empty() {
            found.extend(bus.units_by_patterns(&[], &self.globs).await?);
        }
        let mut units = watched_units(found);
        for unit in units.iter_mut().filter(|u| u.is_service()) {
            match bus.n_restarts(unit).await {
                Ok(n) => unit.n_restarts = Some(n),
                // Older than v235, or the unit went away meanwhile: that
                // one value is unknown, the rest is fine.
                Err(e) if e.is_answer() => health.note_missing_restarts(&e),
                Err(e) => return Err(e),
            }
        }
        Ok(Snapshot {
            system_state,
            failed,
            units,
        })
    }
}

/// Aborts the drain task when the session ends.
struct Drain(tokio::task::JoinHandle<()>);

impl Drop for Drain {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Turns systemd's signals into "something changed" (coalesced) and
/// systemd's name owner changes into "gone" (`false`) / "back" (`true`).
/// Ends, dropping `owners_tx`, when the connection closes.
async fn drain_signals(
    mut signals: zbus::MessageStream,
    mut owners: zbus::MessageStream,
    changed: Arc<Notify>,
    owners_tx: mpsc::UnboundedSender<bool>,
) {
    loop {
        tokio::select! {
            msg = signals.next() => match msg {
                None => return,
                Some(_) => changed.notify_one(),
            },
            msg = owners.next() => match msg {
                None => return,
                Some(Ok(msg)) => {
                    if let Ok((_name, _old, new)) = msg.body().deserialize::<(String, String, String)>() {
                        let _ = owners_tx.send(!new.is_empty());
                    }
                }
                Some(Err(_)) => {}
            },
        }
    }
}

/// Logs a manager going away once, and its return once.
#[derive(Debug)]
struct Health {
    /// The source's name.
    source: &'static str,
    /// Whether the last attempt failed (and was logged).
    down: Latch,
    /// Whether it ever answered.
    seen: bool,
    /// Whether a missing restart count was logged already.
    noted_restarts: bool,
}

impl Health {
    fn new(source: &'static str) -> Self {
        Health {
            source,
            down: Latch::default(),
            seen: false,
            noted_restarts: false,
        }
    }

    fn down(&mut self, error: &BusError) {
        if self.down.fail() {
            tracing::warn!(source = self.source, %error, "systemd unreachable; its entities are unavailable until it answers");
        } else {
            tracing::debug!(source = self.source, %error, "systemd still unreachable");
        }
    }

    fn up(&mut self, address: &str) {
        if self.down.recover() {
            tracing::info!(source = self.source, address, "systemd reachable again");
        } else if !self.seen {
            tracing::info!(source = self.source, address, "connected to systemd");
        }
        self.seen = true;
    }

    fn note_missing_restarts(&mut self, error: &BusError) {
        if !self.noted_restarts {
            tracing::warn!(source = self.source, %error, "no restart count (NRestarts needs systemd 235); shown as unknown");
            self.noted_restarts = true;
        }
    }
}
