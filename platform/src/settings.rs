//! Parsers for settings given as flags or environment variables (clap `value_parser`s),
//! shared by the app's settings and each module's own. Every error names the variable to fix.

use std::time::Duration;

use secrecy::SecretString;

/// A duration with a unit: `1500ms`, `30s` (a bare number is seconds), `2m`, `36h`, `7d`.
///
/// # Errors
/// Anything else, or zero.
pub fn duration(value: &str) -> Result<Duration, String> {
    let error = || format!("expected a duration such as 30s, 1500ms, 2m, 36h or 7d, not `{value}`");
    let trimmed = value.trim();
    let split = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: u64 = number.parse().map_err(|_| error())?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "" | "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.saturating_mul(60)),
        "h" => Duration::from_secs(number.saturating_mul(3600)),
        "d" => Duration::from_secs(number.saturating_mul(86_400)),
        _ => return Err(error()),
    };
    if duration.is_zero() { Err(error()) } else { Ok(duration) }
}

/// A [`duration`] for `variable`, at least `min` and at most `max` when given.
///
/// # Errors
/// A malformed duration or one out of range, naming `variable`.
pub fn duration_in(
    value: &str,
    variable: &str,
    min: Option<Duration>,
    max: Option<Duration>,
) -> Result<Duration, String> {
    let parsed = duration(value).map_err(|e| format!("{variable}: {e}"))?;
    let show = |d: Duration| {
        if d.subsec_millis() == 0 { format!("{}s", d.as_secs()) } else { format!("{}ms", d.as_millis()) }
    };
    match (min, max) {
        (Some(min), Some(max)) if parsed < min || parsed > max => {
            Err(format!("{variable} must be between {} and {}", show(min), show(max)))
        }
        (Some(min), None) if parsed < min => Err(format!("{variable} must be at least {}", show(min))),
        (None, Some(max)) if parsed > max => Err(format!("{variable} must be at most {}", show(max))),
        _ => Ok(parsed),
    }
}

/// A [`duration_in`] that may also be zero (`0`, `0ms`, `0s`): for delays that can be off.
///
/// # Errors
/// As [`duration_in`].
pub fn duration_or_zero_in(value: &str, variable: &str, max: Option<Duration>) -> Result<Duration, String> {
    let trimmed = value.trim();
    let digits = trimmed.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    if !digits.is_empty() && digits.chars().all(|c| c == '0') && matches!(&trimmed[digits.len()..], "" | "ms" | "s") {
        return Ok(Duration::ZERO);
    }
    duration_in(value, variable, None, max)
}

/// A byte size: a count, or with `k`/`kb`/`KiB`, `m`/`mb`/`MiB` (all powers of 1024).
///
/// # Errors
/// Anything else, or zero, naming `variable`.
pub fn size(value: &str, variable: &str) -> Result<usize, String> {
    let error = || format!("{variable} must be a size such as 262144, 256KiB or 1MiB, not `{value}`");
    let trimmed = value.trim();
    let split = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let number: usize = number.parse().map_err(|_| error())?;
    let factor = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "kib" | "k" => 1024,
        "mb" | "mib" | "m" => 1024 * 1024,
        _ => return Err(error()),
    };
    match number.checked_mul(factor) {
        Some(bytes) if bytes > 0 => Ok(bytes),
        _ => Err(error()),
    }
}

/// A `postgres://` (or `postgresql://`) URL, kept secret: it may hold a password.
///
/// # Errors
/// Not a URL, or another scheme, naming `variable`.
pub fn postgres_url(value: &str, variable: &str) -> Result<SecretString, String> {
    let url = url::Url::parse(value).map_err(|e| format!("{variable} is not a URL ({e})"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(format!("{variable} must start with postgres:// or postgresql://"));
    }
    Ok(SecretString::from(value.to_owned()))
}

/// An `http://` or `https://` URL with a host.
///
/// # Errors
/// Anything else, naming `variable`.
pub fn http_url(value: &str, variable: &str) -> Result<url::Url, String> {
    match url::Url::parse(value.trim()) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => Ok(url),
        _ => Err(format!("{variable} must be an http(s) URL such as http://10.0.0.7:8080, not `{value}`")),
    }
}

/// A whole number in `range`.
///
/// # Errors
/// Anything else, naming `variable` and the range.
pub fn count(value: &str, variable: &str, range: std::ops::RangeInclusive<u32>) -> Result<u32, String> {
    value
        .trim()
        .parse()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| format!("{variable} must be a whole number from {} to {}", range.start(), range.end()))
}

/// Any text, held as a secret (never shown in help, logs or `Debug`).
///
/// # Errors
/// Never; a `Result` to fit clap.
pub fn secret(value: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(value.to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]
    use super::*;

    #[test]
    fn sizes_and_durations_parse_with_units() {
        assert_eq!(size("1MiB", "X"), Ok(1024 * 1024));
        assert_eq!(size("512", "X"), Ok(512));
        assert!(size("lots", "BULKHEAD_BODY_LIMIT").unwrap_err().contains("BULKHEAD_BODY_LIMIT"));
        assert_eq!(duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(duration("0s").is_err());
    }

    #[test]
    fn ranges_name_the_variable_and_the_bounds() {
        let second = Some(Duration::from_secs(1));
        assert_eq!(duration_in("5s", "X", second, None), Ok(Duration::from_secs(5)));
        assert_eq!(duration_in("500ms", "X", second, None), Err("X must be at least 1s".to_owned()));
        assert_eq!(
            duration_in("2m", "X", second, Some(Duration::from_secs(60))),
            Err("X must be between 1s and 60s".to_owned())
        );
        assert_eq!(
            duration_in("2m", "X", None, Some(Duration::from_secs(60))),
            Err("X must be at most 60s".to_owned())
        );
        assert!(duration_in("soon", "X", None, None).unwrap_err().starts_with("X: "));
        assert!(http_url("ftp://x", "BULKHEAD_USERS_URL").unwrap_err().contains("BULKHEAD_USERS_URL"));
    }

    #[test]
    fn a_delay_that_can_be_off_takes_zero() {
        for zero in ["0", "0ms", "0s", " 00ms "] {
            assert_eq!(duration_or_zero_in(zero, "X", None), Ok(Duration::ZERO), "{zero}");
        }
        assert_eq!(duration_or_zero_in("20ms", "X", None), Ok(Duration::from_millis(20)));
        for refused in ["0h", "-1ms", "ms", ""] {
            assert!(duration_or_zero_in(refused, "X", None).is_err(), "{refused}");
        }
        assert!(duration_or_zero_in("2m", "X", Some(Duration::from_secs(60))).is_err());
    }
}
