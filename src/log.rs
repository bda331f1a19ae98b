//! Log levels and formats for every subcommand: `-v`/`--log-level`,
//! `RUST_LOG` (tracing-subscriber's env filter, so `RUST_LOG=kube=debug`
//! works for the libraries too) and `--log-format text|json`, so a
//! DaemonSet's logs can be shipped as JSON lines.
//!
//! Logs go to stderr; a subcommand's own output (tables, summaries, JSON
//! reports) stays on stdout. The text format keeps the one-line
//! `vipgate: warning: ...` shape the tools have always printed.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// How log lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// `vipgate: warning: ...`, one line per event.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields).
    Json,
}

/// The filter in effect: `--log-level` wins, then `-v` (debug, trace),
/// then `RUST_LOG`, else info (what a daemon logs: reloads, API outages,
/// warnings).
pub fn filter(level: Option<Level>, verbose: u8, rust_log: Option<&str>) -> EnvFilter {
    let from_flags = level.or(match verbose {
        0 => None,
        1 => Some(Level::DEBUG),
        _ => Some(Level::TRACE),
    });
    match (from_flags, rust_log) {
        (Some(l), _) => EnvFilter::new(l.as_str().to_lowercase()),
        (None, Some(spec)) if !spec.trim().is_empty() => {
            EnvFilter::try_new(spec).unwrap_or_else(|e| {
                eprintln!(
                    "vipgate: warning: RUST_LOG={spec:?} is not a valid filter ({e}); using info"
                );
                EnvFilter::new("info")
            })
        }
        _ => EnvFilter::new("info"),
    }
}

/// Installs the process-wide subscriber.
pub fn init(level: Option<Level>, verbose: u8, format: LogFormat) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = filter(level, verbose, rust_log.as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let done = match format {
        LogFormat::Text => builder.event_format(Line).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    // Only fails if a subscriber is set already (tests): keep that one.
    let _ = done;
}

/// `vipgate: <level>: <message> [field=value ...]`.
struct Line;

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warning",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        write!(w, "vipgate: {level}: ")?;
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_rust_log_and_default_is_info() {
        let f = |l, v, r| filter(l, v, r).to_string();
        assert_eq!(f(None, 0, None), "info");
        assert_eq!(f(None, 0, Some("kube=debug")), "kube=debug");
        assert_eq!(f(None, 1, Some("kube=debug")), "debug");
        assert_eq!(f(None, 9, None), "trace");
        assert_eq!(f(Some(Level::ERROR), 2, Some("debug")), "error");
        assert_eq!(f(None, 0, Some("no=such=thing")), "info");
    }
}
