//! Logs: tracing to stderr, one line per event with key=value fields.
//! Under journald (`JOURNAL_STREAM` names our stderr) lines carry syslog
//! priority prefixes (`<4>`) and no timestamps, as systemd expects.
//!
//! The subscriber is ours, not tracing-subscriber's `fmt`: the agent logs
//! events only (no spans), and its lines are the same as `fmt`'s default
//! format without the target (`2026-12-02T02:35:52.259543Z  INFO message
//! key="value" n=3`), for about a tenth of the code.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Installs the global subscriber. The level comes from `HOST2MQTT_LOG`
/// (`error`, `warn`, `info`, `debug`, `trace` or `off`), default `info`.
/// A plain level rather than tracing's directive syntax: its filter brings
/// a regex engine, about 150 KB of resident code, for a choice of one word.
pub fn init() {
    let logger = Logger {
        max: level_from(std::env::var("HOST2MQTT_LOG").ok().as_deref()),
        journal: stderr_is_journal(),
    };
    // Only fails if a subscriber is already set (then that one logs).
    let _ = tracing::subscriber::set_global_default(logger);
}

/// The level `HOST2MQTT_LOG` names. A directive of the older syntax
/// (`host2mqtt=debug`, `warn,host2mqtt=debug`) gives its last level, so
/// existing settings keep working; anything unreadable gives `info`.
pub fn level_from(value: Option<&str>) -> LevelFilter {
    value
        .and_then(|v| v.rsplit([',', '=']).next())
        .and_then(|level| level.trim().parse().ok())
        .unwrap_or(LevelFilter::INFO)
}

/// True when systemd connected our stderr to the journal: `JOURNAL_STREAM`
/// is `device:inode` of that stream (checked, since a child of a journald
/// service inherits the variable with another stderr).
fn stderr_is_journal() -> bool {
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(st) = rustix::fs::fstat(std::io::stderr()) else {
        return false;
    };
    dev.parse::<u64>().ok() == Some(st.st_dev) && ino.parse::<u64>().ok() == Some(st.st_ino)
}

/// Writes each event as one line to stderr; spans are not used.
struct Logger {
    /// The most verbose level written.
    max: LevelFilter,
    /// Journal lines: a syslog priority prefix, no time, no level.
    journal: bool,
}

impl Subscriber for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max)
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let line = self.line(event, SystemTime::now());
        // One write per line, so lines from two threads do not interleave.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

impl Logger {
    /// The line for `event` at `now`, with its newline.
    fn line(&self, event: &Event<'_>, now: SystemTime) -> String {
        let mut line = String::with_capacity(160);
        let level = *event.metadata().level();
        if self.journal {
            let _ = write!(line, "<{}>", priority(level));
        } else {
            write_timestamp(&mut line, now);
            let _ = write!(line, " {} ", level_label(level));
        }
        event.record(&mut Fields {
            line: &mut line,
            empty: true,
        });
        line.push('\n');
        line
    }
}

/// The syslog priority of a level, as journald reads it from `<N>`.
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// The level, right-aligned to five characters as `fmt` writes it.
fn level_label(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => " WARN",
        Level::INFO => " INFO",
        Level::DEBUG => "DEBUG",
        Level::TRACE => "TRACE",
    }
}

/// Writes `time` as RFC 3339 in UTC with microseconds
/// (`2026-12-02T02:35:52.259543Z`).
fn write_timestamp(out: &mut String, time: SystemTime) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86400) as i64);
    let rem = secs % 86400;
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_micros()
    );
}

/// Year, month and day of a count of days since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Writes an event's fields as `fmt` does: the message as is (control
/// characters that drive a terminal escaped), then `key=value` with
/// strings quoted (their `Debug`), separated by spaces.
struct Fields<'a> {
    line: &'a mut String,
    empty: bool,
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record_debug(field, &format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if !std::mem::take(&mut self.empty) {
            self.line.push(' ');
        }
        let name = field.name();
        if name == "message" {
            let _ = write!(Escaping(self.line), "{value:?}");
        } else {
            let name = name.strip_prefix("r#").unwrap_or(name);
            let _ = write!(self.line, "{name}={value:?}");
        }
    }
}

/// Escapes what could drive a terminal (ESC, BEL, BS, FF, DEL, C1 codes)
/// as it is written, as `fmt` does.
struct Escaping<'a>(&'a mut String);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            match c {
                '\x1b' | '\x07' | '\x08' | '\x0c' | '\x7f' => {
                    let _ = write!(self.0, "\\x{:02x}", c as u32);
                }
                '\u{80}'..='\u{9f}' => {
                    let _ = write!(self.0, "\\u{{{:x}}}", c as u32);
                }
                _ => self.0.push(c),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_from_reads_a_level_or_the_last_level_of_a_directive() {
        assert_eq!(level_from(None), LevelFilter::INFO);
        assert_eq!(level_from(Some("debug")), LevelFilter::DEBUG);
        assert_eq!(level_from(Some("WARN")), LevelFilter::WARN);
        assert_eq!(level_from(Some("off")), LevelFilter::OFF);
        assert_eq!(level_from(Some("host2mqtt=trace")), LevelFilter::TRACE);
        assert_eq!(level_from(Some("warn,host2mqtt=debug")), LevelFilter::DEBUG);
        assert_eq!(level_from(Some("loud")), LevelFilter::INFO);
    }

    /// Keeps the lines `logger` makes, at a fixed time.
    struct Capture {
        logger: Logger,
        lines: std::sync::Mutex<Vec<String>>,
    }

    impl Subscriber for Capture {
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            self.logger.enabled(metadata)
        }
        fn new_span(&self, _span: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _span: &Id, _values: &Record<'_>) {}
        fn record_follows_from(&self, _span: &Id, _follows: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let line = self.logger.line(event, UNIX_EPOCH);
            self.lines.lock().expect("lock").push(line);
        }
        fn enter(&self, _span: &Id) {}
        fn exit(&self, _span: &Id) {}
    }

    fn capture(journal: bool, log: impl FnOnce()) -> Vec<String> {
        let capture = std::sync::Arc::new(Capture {
            logger: Logger {
                max: LevelFilter::INFO,
                journal,
            },
            lines: Default::default(),
        });
        tracing::subscriber::with_default(capture.clone(), log);
        let lines = capture.lines.lock().expect("lock").clone();
        lines
    }

    #[test]
    fn lines_are_fmt_lines_without_the_target() {
        let broker = "mqtt://127.0.0.1:1883";
        let lines = capture(false, || {
            tracing::warn!(api = "docker", n = 3, ms = 0.25, %broker, "cannot connect");
            tracing::info!("escapes \x1b[31m in the message");
            tracing::debug!("not at info");
        });
        assert_eq!(
            lines,
            [
                "1970-01-01T00:00:00.000000Z  WARN cannot connect api=\"docker\" n=3 ms=0.25 broker=mqtt://127.0.0.1:1883\n",
                "1970-01-01T00:00:00.000000Z  INFO escapes \\x1b[31m in the message\n",
            ]
        );
    }

    #[test]
    fn journal_lines_carry_the_priority_and_no_time() {
        let lines = capture(true, || {
            tracing::error!(unit = "a.service", "failed");
            tracing::info!("running");
        });
        assert_eq!(lines, ["<3>failed unit=\"a.service\"\n", "<6>running\n"]);
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        let mut s = String::new();
        write_timestamp(&mut s, UNIX_EPOCH);
        assert_eq!(s, "1970-01-01T00:00:00.000000Z");
        s.clear();
        // 2026-12-02T02:35:52.259543Z, as tracing-subscriber printed it.
        let t = UNIX_EPOCH + std::time::Duration::from_micros(1_796_178_952_259_543);
        write_timestamp(&mut s, t);
        assert_eq!(s, "2026-12-02T02:35:52.259543Z");
        s.clear();
        write_timestamp(&mut s, UNIX_EPOCH + std::time::Duration::from_secs(951_782_400));
        assert_eq!(s, "2000-02-29T00:00:00.000000Z");
    }
}
