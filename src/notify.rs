//! systemd's notify protocol: READY=1 once running, WATCHDOG=1 from the
//! collection loop, STOPPING=1 on shutdown. A no-op without `NOTIFY_SOCKET`.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(state: NotifyState<'_>) {
    if let Err(e) = sd_notify::notify(&[state]) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Tells systemd the service is up.
pub fn ready() {
    send(NotifyState::Ready);
}

/// Tells systemd the service is stopping.
pub fn stopping() {
    send(NotifyState::Stopping);
}

/// Pets the watchdog.
pub fn watchdog() {
    send(NotifyState::Watchdog);
}

/// How often to pet the watchdog: half of `WATCHDOG_USEC`, as systemd
/// recommends; `None` when no watchdog is set for this process.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|d| !d.is_zero())
        .map(|d| d / 2)
}
