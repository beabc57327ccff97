//! A small stderr logger for the `log` facade and its `--log-level`: one line per event, with the time (RFC 3339, UTC) and level.

use std::fmt;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
        let line = format!("{} {:5} {}\n", Rfc3339(now), record.level(), record.args());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// A time since the Unix epoch, shown as RFC 3339 in UTC with milliseconds:
/// `2026-12-02T03:42:36.518Z`.
struct Rfc3339(Duration);

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let (year, month, day) = civil_from_days(secs / 86_400);
        let of_day = secs % 86_400;
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            of_day / 3600,
            of_day / 60 % 60,
            of_day % 60,
            self.0.subsec_millis()
        )
    }
}

/// The proleptic Gregorian (year, month, day) of a day count since 1970-01-01, after Howard
/// Hinnant's `civil_from_days` (<https://howardhinnant.github.io/date_algorithms.html>),
/// for days on or after the epoch. Counted in 400-year eras of 146,097 days, each year
/// starting on March 1 so that the leap day is the last day of its year.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year, [0, 365]
    let mp = (5 * doy + 2) / 153; // month from March, [0, 11]
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = era * 400 + yoe + u64::from(month <= 2);
    (year, month, day)
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
    use std::time::Instant;

    fn at(secs: u64, millis: u32) -> String {
        Rfc3339(Duration::new(secs, millis * 1_000_000)).to_string()
    }

    #[test]
    fn civil_dates_of_known_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(10_956), (1999, 12, 31));
        assert_eq!(civil_from_days(10_957), (2000, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(19_783), (2024, 3, 1));
        // 2100 is not a leap year: February 28 is followed by March 1.
        assert_eq!(civil_from_days(47_540), (2100, 2, 28));
        assert_eq!(civil_from_days(47_541), (2100, 3, 1));
        assert_eq!(civil_from_days(157_113), (2400, 2, 29));
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(1_709_251_199, 999), "2024-02-29T23:59:59.999Z");
        assert_eq!(at(1_796_182_956, 518), "2026-12-02T03:42:36.518Z");
        assert_eq!(at(4_107_542_400, 7), "2100-03-01T00:00:00.007Z");
        assert_eq!(at(13_574_563_200, 0), "2400-02-29T00:00:00.000Z");
        // Sub-millisecond digits are cut, not rounded (as the Unix-seconds stamp did).
        assert_eq!(
            Rfc3339(Duration::new(946_684_799, 999_999_999)).to_string(),
            "1999-12-31T23:59:59.999Z"
        );
    }

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
