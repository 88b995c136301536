//! Levelled logging to the host's structured log. The host tags every line
//! with the plugin id, version and export, redacts known secret values and
//! caps each call's output.

use crate::bindings::trueup::connector::log::{self as wit, Level};

/// Logs at trace level.
pub fn trace(message: &str) {
    wit::log(Level::Trace, message);
}

/// Logs at debug level.
pub fn debug(message: &str) {
    wit::log(Level::Debug, message);
}

/// Logs at info level.
pub fn info(message: &str) {
    wit::log(Level::Info, message);
}

/// Logs at warn level.
pub fn warn(message: &str) {
    wit::log(Level::Warn, message);
}

/// Logs at error level.
pub fn error(message: &str) {
    wit::log(Level::Error, message);
}
