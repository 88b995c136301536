//! Non-secret settings from `plugin.toml` `[config.<key>]`, valued by the
//! admin. Secrets are not readable here: see [`crate::http::Secret`].

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;

use crate::ConnectorError;
use crate::bindings::trueup::connector::config as wit;

/// The value of `key` (or its declared default).
pub fn get(key: &str) -> Option<String> {
    wit::get(key).filter(|v| !v.trim().is_empty())
}

/// The value of `key`, or `default` when unset.
pub fn get_or(key: &str, default: &str) -> String {
    get(key).unwrap_or_else(|| default.to_owned())
}

/// The value of a required `key`.
///
/// # Errors
/// [`ConnectorError::InvalidConfig`] naming the key when it is unset.
pub fn require(key: &str) -> Result<String, ConnectorError> {
    get(key).ok_or_else(|| {
        ConnectorError::InvalidConfig(format!(
            "config key `{key}` is required: set it under [plugins.<id>.config] in trueup.toml"
        ))
    })
}

/// The value of `key` parsed as `T`, or `default` when unset.
///
/// # Errors
/// [`ConnectorError::InvalidConfig`] naming the key and the bad value.
pub fn parse_or<T: FromStr>(key: &str, default: T) -> Result<T, ConnectorError> {
    match get(key) {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|_| {
            ConnectorError::InvalidConfig(format!(
                "config key `{key}` has the value {raw:?}, which is not a valid {}",
                std::any::type_name::<T>()
            ))
        }),
    }
}

/// The value of `key` parsed as `T`, or `default` when unset, checked to
/// lie in `range` (e.g. a page size the service accepts).
///
/// # Errors
/// [`ConnectorError::InvalidConfig`] naming the key, the bad value and the
/// range.
pub fn parse_in<T>(key: &str, default: T, range: RangeInclusive<T>) -> Result<T, ConnectorError>
where
    T: FromStr + PartialOrd + Display,
{
    let value = parse_or(key, default)?;
    if !range.contains(&value) {
        return Err(ConnectorError::InvalidConfig(format!(
            "config key `{key}` is {value}; it must be between {} and {}",
            range.start(),
            range.end()
        )));
    }
    Ok(value)
}

/// The value of `key` as a base URL without a trailing slash.
///
/// # Errors
/// [`ConnectorError::InvalidConfig`] when unset or not `http(s)://`.
pub fn base_url(key: &str) -> Result<String, ConnectorError> {
    let raw = require(key)?;
    let trimmed = raw.trim().trim_end_matches('/');
    if !(trimmed.starts_with("https://") || trimmed.starts_with("http://")) {
        return Err(ConnectorError::InvalidConfig(format!(
            "config key `{key}` must be an http:// or https:// URL, got {raw:?}"
        )));
    }
    Ok(trimmed.to_owned())
}
