//! Sources: the parts of the host that are reached over a socket or a bus
//! (a container engine, systemd over D-Bus) or on a slow schedule
//! (`podman auto-update`). Each runs as its own task, so a slow engine never
//! delays a cycle, and publishes its latest [`SourceState`] through a watch
//! channel; every cycle merges the latest states with the collectors'
//! readings. A source can ask for an immediate publish (a unit just failed)
//! and receive the commands of the entities it owns.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::{mpsc, watch};

use crate::reading::Reading;

/// What a source knows right now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceState {
    /// Whether the source could reach what it reads. While `false`, its
    /// entities are unavailable in HA (they stay, so nothing flaps).
    pub available: bool,
    /// Its readings; the agent tags them with the source's group.
    pub readings: Vec<Reading>,
}

/// The agent's end of a running source.
pub struct SourceHandle {
    /// The source's name; also the availability group of its readings.
    pub name: &'static str,
    /// Its latest state.
    pub state: watch::Receiver<SourceState>,
    /// Where the commands of its entities go.
    pub commands: mpsc::Sender<String>,
}

/// The source's end: where it publishes, how it asks for an immediate
/// publish, where its commands arrive.
pub struct SourceContext {
    /// Publish a new state here.
    pub state: watch::Sender<SourceState>,
    /// Send `()` to have the agent publish now rather than at the next
    /// interval (coalesced; never blocks).
    pub poke: mpsc::Sender<()>,
    /// Command words of this source's entities, already checked to be ones
    /// it announced.
    pub commands: mpsc::Receiver<String>,
    /// Whether the source has published yet: its first answer always
    /// counts as news, even when it equals the initial state ("still
    /// unavailable"), so that nobody waits for an answer that came.
    answered: std::cell::Cell<bool>,
}

impl SourceContext {
    /// Publishes `state`, and asks for an immediate publish when `urgent`.
    pub fn publish(&self, state: SourceState, urgent: bool) {
        if !self.answered.replace(true) {
            self.state.send_replace(state);
            if urgent {
                let _ = self.poke.try_send(());
            }
            return;
        }
        let changed = self.state.send_if_modified(|current| {
            if *current == state {
                false
            } else {
                *current = state;
                true
            }
        });
        if changed && urgent {
            // Full means a publish is already on its way.
            let _ = self.poke.try_send(());
        }
    }
}

/// A source ready to be spawned: its task and the agent's handle.
pub struct Spawnable {
    /// The agent's end.
    pub handle: SourceHandle,
    /// The task; runs until dropped.
    pub task: Pin<Box<dyn Future<Output = ()> + Send>>,
}

/// Wires a source's task to a new handle. `make` receives the source's
/// context; `initial` is what the agent sees before the first publish
/// (usually the source's entities, unavailable).
pub fn wire<F, Fut>(name: &'static str, initial: SourceState, poke: mpsc::Sender<()>, make: F) -> Spawnable
where
    F: FnOnce(SourceContext) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (state_tx, state_rx) = watch::channel(initial);
    let (cmd_tx, cmd_rx) = mpsc::channel(4);
    let task = make(SourceContext {
        state: state_tx,
        poke,
        commands: cmd_rx,
        answered: std::cell::Cell::new(false),
    });
    Spawnable {
        handle: SourceHandle {
            name,
            state: state_rx,
            commands: cmd_tx,
        },
        task: Box::pin(task),
    }
}

/// Waits until every source has published once, or `within` has passed.
/// The first discovery must not go out before: it would leave out the
/// entities only a source knows (per-container, per-unit), and Home
/// Assistant would remove them and add them back seconds later — on every
/// restart of the agent.
pub async fn settle(handles: &[SourceHandle], within: std::time::Duration) {
    let deadline = tokio::time::Instant::now() + within;
    for handle in handles {
        let mut state = handle.state.clone();
        // The sources run concurrently; this only waits for the slowest.
        if tokio::time::timeout_at(deadline, state.changed()).await.is_err() {
            tracing::info!(
                source = handle.name,
                "source has not answered yet; starting without its entities"
            );
        }
    }
}

/// Every source the config enables, wired to `poke`.
pub fn from_config(cfg: &crate::config::Config, poke: mpsc::Sender<()>) -> Vec<Spawnable> {
    let mut sources = Vec::new();
    sources.extend(crate::container::sources(cfg, &poke));
    sources.extend(crate::systemd::sources(cfg, &poke));
    sources.extend(crate::osupdate::sources(cfg, &poke));
    sources
}
