//! The one availability rule, shared by every collector and source:
//!
//! * a part of the host that cannot be read is logged once when it fails
//!   and once when it recovers ([`Latch`]), however many cycles it stays
//!   down;
//! * its entities stay, shown without a value ([`without_values`],
//!   [`LastGood`]), so Home Assistant never deletes and re-adds them;
//! * a source's first answer always counts as news, even when it equals
//!   the initial state (see [`crate::source::SourceContext::publish`]), so
//!   nobody waits for an answer that already came.

use crate::reading::{Reading, Value};

/// "Log the failure once and the recovery once."
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latch {
    /// A failure has been reported and no success since.
    failing: bool,
}

impl Latch {
    /// Records a failure. True only for the first one in a row: the caller
    /// logs then (at warn), and at most debug afterwards.
    #[must_use]
    pub fn fail(&mut self) -> bool {
        !std::mem::replace(&mut self.failing, true)
    }

    /// Records a success. True when it ends a failure: the caller logs the
    /// recovery then.
    #[must_use]
    pub fn recover(&mut self) -> bool {
        std::mem::replace(&mut self.failing, false)
    }

    /// Whether the last outcome was a failure.
    pub fn is_failing(&self) -> bool {
        self.failing
    }
}

/// The same entities with no values: what HA keeps (shown unavailable)
/// while their source cannot be read.
pub fn without_values(readings: &[Reading]) -> Vec<Reading> {
    readings
        .iter()
        .map(|r| Reading {
            value: Value::Missing,
            ..r.clone()
        })
        .collect()
}

/// Whether two readings differ in their value at most.
fn same_but_value(a: &Reading, b: &Reading) -> bool {
    // Spelled out so that a new field of `Reading` has to be decided here.
    let Reading {
        key,
        name,
        kind,
        diagnostic,
        enabled_by_default,
        value: _,
        group,
        attributes,
        command,
        steady,
    } = a;
    *key == b.key
        && *name == b.name
        && *kind == b.kind
        && *diagnostic == b.diagnostic
        && *enabled_by_default == b.enabled_by_default
        && *group == b.group
        && *attributes == b.attributes
        && *command == b.command
        && *steady == b.steady
}

/// The readings of the last good cycle, to be shown without values while
/// the part of the host they come from fails.
#[derive(Debug, Clone, Default)]
pub struct LastGood {
    /// The last good readings.
    readings: Vec<Reading>,
}

impl LastGood {
    /// Remembers a good cycle's readings. Only what [`without_values`]
    /// keeps counts, so when that is what is kept already (the usual
    /// cycle) nothing is copied.
    pub fn keep(&mut self, readings: &[Reading]) {
        if self.readings.len() == readings.len()
            && self
                .readings
                .iter()
                .zip(readings)
                .all(|(a, b)| same_but_value(a, b))
        {
            return;
        }
        self.readings.clear();
        self.readings.extend_from_slice(readings);
    }

    /// The last good entities, without values.
    pub fn without_values(&self) -> Vec<Reading> {
        without_values(&self.readings)
    }

    /// Whether there was no good cycle yet.
    pub fn is_empty(&self) -> bool {
        self.readings.is_empty()
    }
}

/// "Log a flood once a period": one event logged per period, the ones in
/// between counted, so whoever can publish to the broker cannot fill the
/// log (unknown command words, oversized messages).
#[derive(Debug)]
pub struct RateLimit {
    /// The period.
    every: std::time::Duration,
    /// When the last event was logged.
    last: Option<tokio::time::Instant>,
    /// Events not logged since.
    suppressed: u64,
}

impl RateLimit {
    /// A limit of one logged event per `every`.
    pub fn new(every: std::time::Duration) -> Self {
        RateLimit {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// Records an event at `now`: `Some(count of suppressed ones before
    /// it)` when it should be logged, `None` when it is counted instead.
    pub fn note(&mut self, now: tokio::time::Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.every => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Outside text (an MQTT payload or topic), safe to log: escaped (no
/// newline or terminal escape can forge a log line) and cut to `max_chars`.
pub fn escaped_for_log(text: &[u8], max_chars: usize) -> String {
    let text = String::from_utf8_lossy(text);
    let escaped: String = text.chars().flat_map(char::escape_debug).collect();
    if escaped.chars().count() <= max_chars {
        return escaped;
    }
    let mut cut: String = escaped.chars().take(max_chars).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::Kind;

    #[test]
    fn latch_reports_the_first_failure_and_the_recovery_once() {
        let mut latch = Latch::default();
        assert!(!latch.recover(), "no recovery without a failure");
        assert!(latch.fail());
        assert!(!latch.fail(), "the second failure in a row is not news");
        assert!(latch.is_failing());
        assert!(latch.recover());
        assert!(!latch.recover());
        assert!(latch.fail(), "a new failure is news again");
    }

    #[test]
    fn last_good_keeps_every_entity_without_its_value() {
        let mut last = LastGood::default();
        assert!(last.is_empty());
        last.keep(&[Reading::new("k", "K", Kind::Count, 3u64)]);
        let blank = last.without_values();
        assert_eq!(blank.len(), 1);
        assert_eq!(blank[0].key, "k");
        assert_eq!(blank[0].value, Value::Missing);
    }

    #[test]
    fn last_good_follows_every_change_but_the_value() {
        let mut last = LastGood::default();
        let attrs = |v: &str| {
            let mut m = serde_json::Map::new();
            m.insert("a".into(), serde_json::json!(v));
            m
        };
        let r = |v: u64, a: &str| Reading::new("k", "K", Kind::Count, v).with_attributes(attrs(a));
        last.keep(&[r(1, "x")]);
        last.keep(&[r(2, "x")]);
        assert_eq!(
            last.without_values(),
            [Reading {
                value: Value::Missing,
                ..r(0, "x")
            }]
        );
        last.keep(&[r(2, "y")]);
        assert_eq!(
            last.without_values(),
            [Reading {
                value: Value::Missing,
                ..r(0, "y")
            }]
        );
        last.keep(&[r(2, "y"), Reading::new("j", "J", Kind::Count, 1u64)]);
        assert_eq!(last.without_values().len(), 2);
        last.keep(&[Reading::new("k", "K renamed", Kind::Count, 1u64)]);
        assert_eq!(last.without_values()[0].name, "K renamed");
    }
}
