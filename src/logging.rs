//! Logs: tracing to stderr, one line per event with key=value fields.
//! Under journald (`JOURNAL_STREAM` names our stderr) lines carry syslog
//! priority prefixes (`<4>`) and no timestamps, as systemd expects.

use std::fmt;

use tracing::level_filters::LevelFilter;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs the global subscriber. The level comes from `HOST2MQTT_LOG`
/// (`error`, `warn`, `info`, `debug`, `trace` or `off`), default `info`.
/// A plain level rather than tracing's directive syntax: its filter brings
/// a regex engine, about 150 KB of resident code, for a choice of one word.
pub fn init() {
    let filter = level_from(std::env::var("HOST2MQTT_LOG").ok().as_deref());
    let builder = tracing_subscriber::fmt()
        .with_max_level(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if stderr_is_journal() {
        let format = Format::default()
            .without_time()
            .with_target(false)
            .with_level(false)
            .with_ansi(false);
        builder.with_ansi(false).event_format(Journald(format)).init();
    } else {
        builder.with_ansi(false).init();
    }
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

/// Prefixes each line with its syslog priority.
struct Journald(Format<Full, ()>);

impl<S, N> FormatEvent<S, N> for Journald
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let priority = match *event.metadata().level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            Level::DEBUG | Level::TRACE => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
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
}
