//! The values the flags of every binary take, parsed: durations, byte sizes, a host
//! in brackets, and the port both ends default to. On the ground floor, with no
//! dependency but the error wording, so that the client's flags ([`crate::cli`]) and
//! the server's settings ([`crate::config`]) parse a value the same way without the
//! one importing the other.

use std::time::Duration;

use crate::error::quote;

/// The port both the server and the client use by default.
pub const DEFAULT_PORT: u16 = 8080;

/// The longest duration any flag takes. Far beyond any useful timeout, and far enough
/// from the clock's range that adding it to the time now can never overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Parses a human-friendly duration such as `250ms`, `10s` or `1m`, at most
/// [`MAX_DURATION`].
///
/// # Errors
/// Returns a message fit for clap's usage error when `text` is not a duration or is
/// longer than a year.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    // The duration flags take values that begin with '-' (clap would otherwise read
    // `-1s` as a flag), so these are said here, in the words of the other errors.
    if let Some(rest) = text.strip_prefix('-') {
        return Err(
            if rest.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
                format!(
                    "{text:?} is negative: a duration is 0 or more \
                 (write durations like 250ms, 10s or 1m)"
                )
            } else {
                format!("a duration is missing: {text} is a flag (write durations like 250ms, 10s or 1m)")
            },
        );
    }
    let duration = humantime::parse_duration(text)
        .map_err(|err| format!("{err} (write durations like 250ms, 10s or 1m)"))?;
    if duration > MAX_DURATION {
        return Err("durations above 365 days are not supported".to_owned());
    }
    Ok(duration)
}

/// As [`parse_duration`], but zero is refused too: for timeouts and run lengths, where
/// zero could only mean "fail at once".
///
/// # Errors
/// As [`parse_duration`], or when the duration is zero.
pub fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err("must be longer than zero".to_owned()),
        duration => Ok(duration),
    }
}

/// Parses a byte size: `65536`, or a number with a binary unit, `64KiB`, `4MiB`,
/// `1GiB` (`K`, `M`, `G` mean the same).
///
/// # Errors
/// Returns a message fit for clap's usage error when `text` is not such a size or is
/// larger than 1 GiB.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let usage = || {
        format!(
            "{} is not a size (write sizes like 65536, 64KiB or 4MiB)",
            quote(text.as_bytes())
        )
    };
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    let number: u64 = digits.parse().map_err(|_| usage())?;
    let scale: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => return Err(usage()),
    };
    match number.checked_mul(scale) {
        Some(bytes) if bytes <= 1 << 30 => Ok(bytes as usize),
        _ => Err("sizes above 1GiB are not supported".to_owned()),
    }
}

/// `[::1]` as `::1`: the resolver takes IPv6 addresses without their brackets.
pub fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_negative_duration_or_a_flag_in_its_place_is_named() {
        for (text, said) in [
            ("-1s", "\"-1s\" is negative: a duration is 0 or more"),
            ("-.5s", "\"-.5s\" is negative"),
            ("-h", "a duration is missing: -h is a flag"),
            ("--port", "a duration is missing: --port is a flag"),
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.starts_with(said), "{text}: {err}");
            assert!(
                err.ends_with("(write durations like 250ms, 10s or 1m)"),
                "{err}"
            );
        }
    }

    #[test]
    fn durations_are_bounded() {
        assert!(parse_duration("365days").is_ok());
        assert!(parse_duration("366days").is_err());
        assert!(parse_duration("9223372036854775807s").is_err());
    }

    #[test]
    fn sizes_take_binary_units_and_stay_in_range() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        for bad in [
            "",
            "KiB",
            "64 parsecs",
            "-1",
            "2GiB",
            "99999999999999999999999",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn brackets_come_off_an_address_only_whole() {
        assert_eq!(unbracket("[::1]"), "::1");
        assert_eq!(unbracket("::1"), "::1");
        assert_eq!(unbracket("[::1"), "[::1");
    }
}
