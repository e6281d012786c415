//! systemd over D-Bus: where the host's services (and every Quadlet
//! container) live or die.
//!
//! * [`config`]: the `[systemd]` section.
//! * [`bus`]: a small D-Bus client with a timeout on every call; it takes a
//!   bus address (system bus, a user's bus, a test's private bus).
//! * [`units`]: pure functions from what systemd said ([`units::Snapshot`])
//!   to readings.
//! * [`manager`]: one source per manager (`systemd_system`,
//!   `systemd_user`): subscribes to systemd's signals and publishes within
//!   a second of a change; reconnects with backoff; restarts allow-listed
//!   units on command.
//! * [`reboot`]: the `reboot` source ("reboot required"), which needs no
//!   D-Bus except on Flatcar.
//!
//! Each source has its own availability group, so a missing user bus never
//! makes the system manager's entities unavailable, and no missing bus
//! touches the collectors.

use tokio::sync::mpsc;

use crate::context::Context;
use crate::source::{SourceContext, SourceState, Spawnable};

pub mod bus;
pub mod config;
pub mod manager;
pub mod reboot;
pub mod units;

pub use config::SystemdConfig;

impl SystemdConfig {
    /// Every systemd source the section enables, in a fixed order: system
    /// manager, user manager, reboot sensor.
    pub fn build(&self, cx: &Context) -> Vec<Spawnable> {
        let mut out = Vec::new();
        for kind in [config::ManagerKind::System, config::ManagerKind::User] {
            if self.manager(kind).enabled {
                out.push(
                    manager::ManagerSource::new(kind, self, cx.interval, cx.env).spawnable(cx.poke.clone()),
                );
            }
        }
        if self.reboot.enabled {
            out.push(
                reboot::RebootSource::new(&cx.paths, cx.interval, self.timeout, &self.system.address, cx.env)
                    .spawnable(cx.poke.clone()),
            );
        }
        out
    }
}

/// A source's way out (the first-answer rule lives in
/// [`SourceContext::publish`]).
struct Outlet {
    /// The source's context.
    ctx: SourceContext,
}

impl Outlet {
    fn new(ctx: SourceContext) -> Self {
        Outlet { ctx }
    }

    fn publish(&mut self, state: SourceState, urgent: bool) {
        self.ctx.publish(state, urgent);
    }

    fn commands(&mut self) -> &mut mpsc::Receiver<String> {
        &mut self.ctx.commands
    }
}
