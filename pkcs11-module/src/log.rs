//! A tiny logger of our own.
//!
//! The module is loaded into other people's processes: installing a global
//! `log` or `tracing` subscriber would take over theirs, so we keep our own.
//! Each line is `hsmlink[<pid>]: LEVEL message`, written with one `write` to
//! stderr or to the configured file (opened in append mode).
//!
//! Level: `HSMLINK_LOG` if set, else `log_level` from `client.toml`, else
//! `warn`. Nothing secret is ever passed here: callers log names, codes,
//! sizes and addresses, never a PIN, a key or data.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use parking_lot::Mutex;
use serde::Deserialize;

/// Environment variable overriding the configured level.
pub const ENV_LOG: &str = "HSMLINK_LOG";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Level {
    Off = 0,
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
    Trace = 5,
}

impl Level {
    /// The accepted spellings, for error messages.
    pub const NAMES: &'static str = "off|error|warn|info|debug|trace";

    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "off" => Some(Self::Off),
            "error" => Some(Self::Error),
            "warn" => Some(Self::Warn),
            "info" => Some(Self::Info),
            "debug" => Some(Self::Debug),
            "trace" => Some(Self::Trace),
            _ => None,
        }
    }

    fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Off,
            1 => Self::Error,
            2 => Self::Warn,
            3 => Self::Info,
            4 => Self::Debug,
            _ => Self::Trace,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Off => "OFF",
            Self::Error => "ERROR",
            Self::Warn => "WARN",
            Self::Info => "INFO",
            Self::Debug => "DEBUG",
            Self::Trace => "TRACE",
        }
    }
}

/// `LEVEL` before the first use: read `HSMLINK_LOG` then.
const UNSET: u8 = u8::MAX;
static LEVEL: AtomicU8 = AtomicU8::new(UNSET);
/// `None`: stderr. Held in an `Arc` so that the lock is only taken to clone
/// the handle, never across a write.
static FILE: Mutex<Option<Arc<File>>> = Mutex::new(None);

/// Would a line at `level` be written?
pub fn enabled(level: Level) -> bool {
    level != Level::Off && level <= max_level()
}

/// Applies the configuration of `C_Initialize`: `HSMLINK_LOG` wins over
/// `level`; a log file that cannot be opened leaves logging on stderr, with
/// a warning (the application should not fail because of its log file).
pub fn configure(level: Option<Level>, file: Option<&Path>) {
    let level = env_level().or(level).unwrap_or(Level::Warn);
    LEVEL.store(level as u8, Ordering::Relaxed);
    let sink =
        file.and_then(
            |path| match OpenOptions::new().create(true).append(true).open(path) {
                Ok(file) => Some(Arc::new(file)),
                Err(e) => {
                    log(
                        Level::Warn,
                        format_args!(
                            "cannot open log file {}: {e}; logging to stderr",
                            path.display()
                        ),
                    );
                    None
                }
            },
        );
    *FILE.lock() = sink;
}

/// Writes one line if `level` is enabled. Use the macros below.
pub fn log(level: Level, args: fmt::Arguments<'_>) {
    if enabled(level) {
        emit(level, args);
    }
}

fn max_level() -> Level {
    let value = LEVEL.load(Ordering::Relaxed);
    if value != UNSET {
        return Level::from_u8(value);
    }
    let level = env_level().unwrap_or(Level::Warn);
    LEVEL.store(level as u8, Ordering::Relaxed);
    level
}

fn env_level() -> Option<Level> {
    let value = std::env::var(ENV_LOG).ok()?;
    let level = Level::parse(&value);
    if level.is_none() {
        emit(
            Level::Warn,
            format_args!(
                "{ENV_LOG}={value:?} is not a log level ({}); ignoring it",
                Level::NAMES
            ),
        );
    }
    level
}

fn emit(level: Level, args: fmt::Arguments<'_>) {
    let line = format!(
        "hsmlink[{}]: {} {args}\n",
        std::process::id(),
        level.label()
    );
    let file = FILE.lock().clone();
    // A failing log write must never fail (or panic) the PKCS#11 call.
    let _ = match file {
        Some(file) => (&*file).write_all(line.as_bytes()),
        None => std::io::stderr().write_all(line.as_bytes()),
    };
}

macro_rules! error {
    ($($arg:tt)*) => {
        $crate::log::log($crate::log::Level::Error, format_args!($($arg)*))
    };
}

macro_rules! info {
    ($($arg:tt)*) => {
        $crate::log::log($crate::log::Level::Info, format_args!($($arg)*))
    };
}

macro_rules! debug {
    ($($arg:tt)*) => {
        $crate::log::log($crate::log::Level::Debug, format_args!($($arg)*))
    };
}

macro_rules! trace {
    ($($arg:tt)*) => {
        $crate::log::log($crate::log::Level::Trace, format_args!($($arg)*))
    };
}

pub(crate) use {debug, error, info, trace};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_and_order() {
        assert_eq!(Level::parse(" DEBUG "), Some(Level::Debug));
        assert_eq!(Level::parse("verbose"), None);
        assert!(Level::Error < Level::Warn && Level::Debug < Level::Trace);
        for level in [
            Level::Off,
            Level::Error,
            Level::Warn,
            Level::Info,
            Level::Debug,
            Level::Trace,
        ] {
            assert_eq!(Level::from_u8(level as u8), level);
        }
    }
}
