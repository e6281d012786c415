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

/// Where the agent's cycles fall: its first cycle, from which every tick
/// is a whole number of intervals (see [`set_cycle_grid`]).
static CYCLE_GRID: std::sync::Mutex<Option<tokio::time::Instant>> = std::sync::Mutex::new(None);

/// Records the instant of the agent's first cycle, from which its ticks
/// are whole intervals. Called by `agent::run`.
pub fn set_cycle_grid(first_cycle: tokio::time::Instant) {
    if let Ok(mut grid) = CYCLE_GRID.lock() {
        *grid = Some(first_cycle);
    }
}

/// The next instant after `now`, at most `every` later, that lies a whole
/// number of `every`s from the agent's first cycle. A source that wakes
/// on it (`every` a multiple of the interval: the interval itself, a
/// minute) wakes together with the agent's tick, in one wake-up of the
/// process, instead of in its own (two or three, with the timer wheel's
/// coarser levels on the way, issue 13). Before the agent's first cycle:
/// `now + every`.
pub fn next_on_grid(now: tokio::time::Instant, every: std::time::Duration) -> tokio::time::Instant {
    grid_point(CYCLE_GRID.lock().ok().and_then(|g| *g), now, every)
}

/// [`next_on_grid`] for the grid starting at `grid`.
fn grid_point(
    grid: Option<tokio::time::Instant>,
    now: tokio::time::Instant,
    every: std::time::Duration,
) -> tokio::time::Instant {
    let every_ns = every.as_nanos().max(1);
    let Some(grid) = grid else {
        return now + every;
    };
    // How far `now` is past the last grid point, either side of `grid`.
    let past = if now >= grid {
        (now - grid).as_nanos() % every_ns
    } else {
        (every_ns - (grid - now).as_nanos() % every_ns) % every_ns
    };
    now + std::time::Duration::from_nanos(u64::try_from(every_ns - past).unwrap_or(u64::MAX))
}

/// The sources sleeping until a tick of the agent ([`sleep_on_grid`]),
/// and whether the agent ticks on the kernel's timer yet.
struct Sleepers {
    /// The agent has ticked (see [`tick`]).
    ticking: bool,
    /// Each sleeper's grid point, and how to wake it: `true` when the
    /// point has come, `false` to a sleeper that began before the agent
    /// ticked, to leave its timer for the ticks.
    waiting: Vec<(tokio::time::Instant, tokio::sync::oneshot::Sender<bool>)>,
}

impl Sleepers {
    const fn new() -> Self {
        Sleepers {
            ticking: false,
            waiting: Vec::new(),
        }
    }

    /// A sleeper until `target`: woken by the tick that falls on it.
    /// Also says whether the agent ticks yet.
    fn sleep(&mut self, target: tokio::time::Instant) -> (tokio::sync::oneshot::Receiver<bool>, bool) {
        let (wake, woken) = tokio::sync::oneshot::channel();
        self.waiting.push((target, wake));
        (woken, self.ticking)
    }

    /// The agent ticked at `at`, every `interval`: wakes the sleepers whose
    /// grid point this tick is, the tick at the point or up to half an
    /// interval before it (ticks fall on the grid give or take how late
    /// the process woke, or a tick delayed by a stall).
    /// The first tick also wakes every sleeper that began on a timer, to
    /// sleep again on the ticks alone.
    fn tick(&mut self, at: tokio::time::Instant, interval: std::time::Duration) {
        let first = !std::mem::replace(&mut self.ticking, true);
        // A sleeper dropped while waiting (a cancelled select) goes too.
        let due = |(target, wake): &mut (tokio::time::Instant, tokio::sync::oneshot::Sender<bool>)| {
            first || at + interval / 2 >= *target || wake.is_closed()
        };
        for (target, wake) in self.waiting.extract_if(.., due) {
            let _ = wake.send(at + interval / 2 >= target);
        }
    }
}

static SLEEPERS: std::sync::Mutex<Sleepers> = std::sync::Mutex::new(Sleepers::new());

/// Tells the sources that the agent ticked at `at`, every `interval`, and
/// wakes those whose grid point this tick is. The rest are not polled at
/// all: a source that looks once a minute costs nothing on the other
/// ticks (issue 13). Called by `agent::run` on its first cycle and each
/// tick of its kernel timer.
pub fn tick(at: tokio::time::Instant, interval: std::time::Duration) {
    if let Ok(mut sleepers) = SLEEPERS.lock() {
        sleepers.tick(at, interval);
    }
}

/// Sleeps until [`next_on_grid`] of `every`: until the agent's first tick
/// at that point (see [`tick`]), so the source runs in the agent's
/// wake-up and no timer of its own wakes the process (a tokio timer a
/// minute away wakes it three times on its way down the timer wheel,
/// issue 13). Before the agent ticks (a source's first sleep), on a timer
/// until the agent starts ticking; with no agent ticks at all (a paused
/// clock in tests), on that timer.
pub async fn sleep_on_grid(every: std::time::Duration) {
    let target = next_on_grid(tokio::time::Instant::now(), every);
    let Ok((woken, ticking)) = SLEEPERS.lock().map(|mut s| s.sleep(target)) else {
        tokio::time::sleep_until(target).await;
        return;
    };
    if ticking {
        // The sender is only ever dropped after sending.
        let _ = woken.await;
        return;
    }
    tokio::select! {
        _ = tokio::time::sleep_until(target) => {}
        due = woken => {
            if due == Ok(false) {
                // The agent ticks now: off the timer, onto its ticks.
                let again = SLEEPERS.lock().ok().map(|mut s| s.sleep(target).0);
                if let Some(woken) = again {
                    let _ = woken.await;
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::Instant;

    #[test]
    fn grid_points_are_whole_periods_from_the_first_cycle_within_one_period() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        assert_eq!(grid_point(None, t0, s(10)), t0 + s(10), "no grid yet");
        let grid = Some(t0);
        assert_eq!(grid_point(grid, t0, s(10)), t0 + s(10));
        assert_eq!(grid_point(grid, t0 + ms(3), s(10)), t0 + s(10));
        assert_eq!(grid_point(grid, t0 + ms(10_003), s(10)), t0 + s(20));
        assert_eq!(grid_point(grid, t0 + s(7), s(60)), t0 + s(60));
        assert_eq!(grid_point(grid, t0 + s(60), s(60)), t0 + s(120));
        // A grid set after `now` (another runtime's clock in tests).
        assert_eq!(grid_point(Some(t0 + s(25)), t0, s(10)), t0 + s(5));
        assert_eq!(grid_point(Some(t0 + s(20)), t0, s(10)), t0 + s(10));
    }

    #[test]
    fn a_source_wakes_on_the_first_agent_tick_at_its_grid_point_and_no_other() {
        let mut sleepers = Sleepers::new();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let every = s(10);
        // A minute's check from t0 + 3 s, the grid at t0: due at t0 + 60 s;
        // a check every interval beside it.
        let (mut early, ticking) = sleepers.sleep(t0 + s(60));
        assert!(!ticking, "no tick yet");
        // The agent's first tick (t0): the sleeper that began on a timer is
        // told to sleep again on the ticks; it is not due.
        sleepers.tick(t0, every);
        assert_eq!(early.try_recv(), Ok(false), "off the timer");
        let (mut minute, ticking) = sleepers.sleep(t0 + s(60));
        assert!(ticking);
        for n in 1..=5 {
            let (mut each, _) = sleepers.sleep(t0 + every * n);
            sleepers.tick(t0 + every * n, every);
            assert_eq!(
                each.try_recv(),
                Ok(true),
                "the interval's sleeper woke at tick {n}"
            );
            assert!(minute.try_recv().is_err(), "woke at tick {n}, before the minute");
        }
        assert_eq!(sleepers.waiting.len(), 1, "only the minute's sleeper is left");
        // The tick of the minute, a little late: that one.
        sleepers.tick(t0 + s(60) + Duration::from_millis(3), every);
        assert_eq!(minute.try_recv(), Ok(true), "woke on the agent's tick");
        assert!(sleepers.waiting.is_empty());
    }

    #[test]
    fn a_tick_a_little_early_for_the_grid_counts_and_a_dropped_sleeper_goes() {
        // The ticks shifted 2 s early by a stall (missed ticks delay):
        // the tick nearest the grid point is the one.
        let mut sleepers = Sleepers::new();
        let t0 = Instant::now();
        let every = Duration::from_secs(10);
        sleepers.tick(t0, every);
        let (mut woken, _) = sleepers.sleep(t0 + every * 2);
        let (dropped, _) = sleepers.sleep(t0 + every * 6);
        drop(dropped);
        sleepers.tick(t0 + Duration::from_secs(8), every);
        assert!(
            woken.try_recv().is_err(),
            "a tick 12 s before the point is not it"
        );
        assert_eq!(sleepers.waiting.len(), 1, "the dropped sleeper is gone");
        sleepers.tick(t0 + Duration::from_secs(18), every);
        assert_eq!(woken.try_recv(), Ok(true));
    }
}
