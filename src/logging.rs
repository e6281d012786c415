//! Logs: tracing to stderr, one line per event with key=value fields.
//! Under journald (`JOURNAL_STREAM` names our stderr) lines carry syslog
//! priority prefixes (`<4>`) and no timestamps, as systemd expects.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. The filter comes from `HOST2MQTT_LOG`
/// (tracing's directive syntax, e.g. `debug` or `host2mqtt=debug`), default `info`.
pub fn init() {
    let filter = EnvFilter::try_from_env("HOST2MQTT_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
