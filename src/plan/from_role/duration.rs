//! Durations in roles: one reading of `"30s"`, `"5m"` or `"1h 30m"` for every key that takes
//! one (a declaration's `timeout`, health checks, timer schedules), so the same text means
//! the same thing, and is refused the same way, wherever it is written.

use std::time::Duration;

/// What a duration key accepts beyond "a duration with a unit".
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// `0s` means something here ("no pause", "at boot").
    pub zero: bool,
    /// The longest value that makes sense; `None`: no bound of ours.
    pub max: Option<Duration>,
}

/// Reads a role's duration; `Err` says what was expected, to follow the caller's
/// "invalid KEY 'TEXT': ".
pub(super) fn read(text: &str, limits: Limits, example: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|_| format!("expected a duration with a unit, e.g. {example}"))?;
    if let Some(max) = limits.max.filter(|&max| d > max) {
        return Err(format!(
            "expected at most {}",
            humantime::format_duration(max)
        ));
    }
    if d.is_zero() && !limits.zero {
        return Err(format!(
            "expected a duration with a unit, more than 0, e.g. {example}"
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANY: Limits = Limits {
        zero: true,
        max: None,
    };
    const POSITIVE: Limits = Limits {
        zero: false,
        max: None,
    };

    #[test]
    fn units_are_required_and_combine() {
        assert_eq!(read("1h 30m", ANY, "\"5s\""), Ok(Duration::from_secs(5400)));
        assert_eq!(read("500ms", ANY, "\"5s\""), Ok(Duration::from_millis(500)));
        assert_eq!(
            read("30", ANY, "\"5s\""),
            Err("expected a duration with a unit, e.g. \"5s\"".into())
        );
    }

    #[test]
    fn zero_and_the_bound_are_the_keys_own() {
        assert_eq!(read("0s", ANY, "\"5s\""), Ok(Duration::ZERO));
        assert_eq!(
            read("0s", POSITIVE, "\"5s\""),
            Err("expected a duration with a unit, more than 0, e.g. \"5s\"".into())
        );
        let ten = Limits {
            zero: false,
            max: Some(Duration::from_secs(600)),
        };
        assert_eq!(read("10m", ten, "\"5s\""), Ok(Duration::from_secs(600)));
        assert_eq!(
            read("1000h", ten, "\"5s\""),
            Err("expected at most 10m".into())
        );
    }
}
