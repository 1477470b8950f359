//! Seconds as the spec writes them in texts (`step_timeout: exceeded 120 s`, `timed out after
//! 0.5 s`): integral values without decimals, others with at most three.

use std::time::Duration;

/// `120`, `0.5`, `2.125`.
pub fn seconds_text(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        return duration.as_secs().to_string();
    }
    let text = format!("{:.3}", duration.as_secs_f64());
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Whole milliseconds, saturating (metrics and log fields).
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// A duration from a number of seconds of the wire (`timeout_s`, `step_s`); `None` for values
/// that are not a positive finite number.
pub fn positive_seconds(seconds: f64) -> Option<Duration> {
    (seconds.is_finite() && seconds > 0.0)
        .then(|| Duration::try_from_secs_f64(seconds).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_written_compactly() {
        assert_eq!(seconds_text(Duration::from_secs(120)), "120");
        assert_eq!(seconds_text(Duration::from_millis(500)), "0.5");
        assert_eq!(seconds_text(Duration::from_millis(2125)), "2.125");
        assert_eq!(seconds_text(Duration::from_micros(1_000_400)), "1");
        assert_eq!(seconds_text(Duration::ZERO), "0");
    }

    #[test]
    fn wire_seconds() {
        assert_eq!(positive_seconds(1.5), Some(Duration::from_millis(1500)));
        assert_eq!(positive_seconds(0.0), None);
        assert_eq!(positive_seconds(-3.0), None);
        assert_eq!(positive_seconds(f64::NAN), None);
        assert_eq!(positive_seconds(f64::INFINITY), None);
        assert_eq!(positive_seconds(1e300), None);
    }
}
