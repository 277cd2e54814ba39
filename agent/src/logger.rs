//! A small logger for standard error. stdout stays clean for `credential-process`.
//!
//! Levels: error for failures, warn for retries and degraded states, info for lifecycle
//! events (started, refreshed, stopped), debug for details with `--debug`. No level
//! carries a secret: PINs, secret keys, session tokens, signatures and request bodies are
//! never passed to the logger.

use std::io::Write as _;

struct StderrLogger;

static LOGGER: StderrLogger = StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now = crate::credentials::format_expiration(time::OffsetDateTime::now_utc());
        let line = format!("{now} {:<5} {}\n", record.level(), record.args());
        // A failed write to stderr has nowhere better to go.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Installs the logger; `debug` lowers the threshold from info to debug.
pub fn init(debug: bool) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(if debug {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    });
}
