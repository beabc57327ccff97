//! A small stderr logger for the `log` facade and its `--log-level`: one line per event, with the time and level.

use std::fmt;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{LevelFilter, Log, Metadata, Record};

/// Log verbosity (`--log-level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

struct StderrLogger;

static LOGGER: StderrLogger = StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let line = format!(
            "{}.{:03} {:5} {}\n",
            now.as_secs(),
            now.subsec_millis(),
            record.level(),
            record.args()
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Installs the logger at `level` (`RUST_LOG`, if set to a level name, wins).
pub fn init(level: LogLevel) {
    let chosen = std::env::var("RUST_LOG").unwrap_or_else(|_| level.as_str().to_owned());
    let filter = chosen.parse().unwrap_or(LevelFilter::Info);
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(filter);
    }
}

/// A shard-local limit on how often one kind of event is logged: at most `burst` lines
/// per `window`; the rest are counted, and the next line that passes says how many
/// were suppressed.
pub struct RateLimited {
    window: std::time::Duration,
    burst: u32,
    window_start: std::cell::Cell<Option<std::time::Instant>>,
    in_window: std::cell::Cell<u32>,
    suppressed: std::cell::Cell<u64>,
}

impl RateLimited {
    /// At most `burst` lines per `window`.
    pub const fn new(burst: u32, window: std::time::Duration) -> RateLimited {
        RateLimited {
            window,
            burst,
            window_start: std::cell::Cell::new(None),
            in_window: std::cell::Cell::new(0),
            suppressed: std::cell::Cell::new(0),
        }
    }

    /// `Some(suppressed since the last line)` if this event may be logged now.
    pub fn allow(&self, now: std::time::Instant) -> Option<u64> {
        let fresh = match self.window_start.get() {
            Some(start) => now.duration_since(start) >= self.window,
            None => true,
        };
        if fresh {
            self.window_start.set(Some(now));
            self.in_window.set(0);
        }
        if self.in_window.get() < self.burst {
            self.in_window.set(self.in_window.get() + 1);
            Some(self.suppressed.replace(0))
        } else {
            self.suppressed.set(self.suppressed.get() + 1);
            None
        }
    }
}

/// Logs at `level` through a [`RateLimited`], appending the count of suppressed lines.
#[macro_export]
macro_rules! log_limited {
    ($limit:expr, $level:expr, $($arg:tt)+) => {
        if let Some(suppressed) = $limit.allow(std::time::Instant::now()) {
            if suppressed > 0 {
                log::log!($level, "{} ({suppressed} similar suppressed)", format_args!($($arg)+));
            } else {
                log::log!($level, $($arg)+);
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn a_burst_passes_then_the_rest_is_counted() {
        let limit = RateLimited::new(2, Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(limit.allow(t0), Some(0));
        assert_eq!(limit.allow(t0), Some(0));
        assert_eq!(limit.allow(t0), None);
        assert_eq!(limit.allow(t0 + Duration::from_millis(500)), None);
        assert_eq!(limit.allow(t0 + Duration::from_secs(1)), Some(2));
        assert_eq!(limit.allow(t0 + Duration::from_secs(1)), Some(0));
    }
}
