//! The one reconnect backoff: the MQTT session, the systemd bus and any
//! other reconnecting task wait with it between attempts.

use std::time::Duration;

/// Exponential backoff with jitter between reconnect attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub min: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Backoff {
    /// The delay before attempt `failures + 1`: doubling from `min` up to
    /// `max`, then "equal jitter" (half fixed, half random) so a fleet of
    /// hosts does not reconnect in lockstep after a broker restart.
    /// `rand_unit` is a number in 0..=1 (passed in so tests are exact).
    pub fn delay(&self, failures: u32, rand_unit: f64) -> Duration {
        let exp = self.min.saturating_mul(1u32 << failures.min(20));
        let d = exp.min(self.max);
        d / 2 + d.mul_f64(rand_unit.clamp(0.0, 1.0) / 2.0)
    }

    /// [`Backoff::delay`] with a random jitter.
    pub fn next_delay(&self, failures: u32) -> Duration {
        self.delay(failures, fastrand::f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_min_and_stops_at_max() {
        let b = Backoff {
            min: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        assert_eq!(b.delay(0, 1.0), Duration::from_secs(1));
        assert_eq!(b.delay(3, 1.0), Duration::from_secs(8));
        assert_eq!(b.delay(30, 1.0), Duration::from_secs(60));
        assert_eq!(
            b.delay(30, 0.0),
            Duration::from_secs(30),
            "equal jitter keeps half"
        );
    }
}
