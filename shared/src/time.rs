//! Timestamps in the one format every ktsu JSON body and log line uses: RFC 3339, UTC, exactly
//! six fractional digits, `Z` (`2026-04-28T10:15:02.114503Z`).
//!
//! The fixed width makes text order equal time order, so stores and operators can sort the
//! strings. [`Timestamp`] keeps whole microseconds between 1970 and the end of year 9999: every
//! value formats without error and survives a format/parse round trip unchanged.

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::ops::{Add, AddAssign, Sub};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds from the epoch to 10000-01-01T00:00:00Z, the first instant RFC 3339 cannot write.
const END_OF_9999_SECS: u64 = 253_402_300_800;

/// A point in time, UTC, with microsecond precision.
///
/// Serialises as RFC 3339 with 6 fractional digits and `Z`. Deserialises any valid RFC 3339
/// date-time (any number of fractional digits, `Z` or a numeric offset) and normalises it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(SystemTime);

/// Why a string is not an accepted RFC 3339 timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RFC 3339 timestamp {input:?}: {reason}")]
pub struct TimeError {
    input: String,
    reason: &'static str,
}

impl TimeError {
    fn new(input: &str, reason: &'static str) -> Self {
        // Cap the echoed input: it ends up in error bodies and logs.
        let input = input.chars().take(64).collect();
        TimeError { input, reason }
    }
}

impl Timestamp {
    /// 1970-01-01T00:00:00.000000Z, the earliest representable value.
    pub const UNIX_EPOCH: Timestamp = Timestamp(UNIX_EPOCH);

    /// The current time, truncated to whole microseconds.
    pub fn now() -> Self {
        Self::from_system_time(SystemTime::now())
    }

    /// Truncates to whole microseconds and clamps into 1970 ..= 9999-12-31T23:59:59.999999Z.
    pub fn from_system_time(time: SystemTime) -> Self {
        let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        Self::from_unix_micros(duration_micros(since_epoch))
    }

    /// From microseconds since the Unix epoch (clamped to the end of year 9999).
    pub fn from_unix_micros(micros: u64) -> Self {
        let micros = micros.min(max_micros());
        Timestamp(UNIX_EPOCH + Duration::from_micros(micros))
    }

    /// Microseconds since the Unix epoch (a compact, sortable storage form).
    pub fn unix_micros(self) -> u64 {
        duration_micros(self.since_epoch())
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(self) -> u64 {
        self.unix_micros() / 1_000
    }

    pub fn as_system_time(self) -> SystemTime {
        self.0
    }

    /// Parses any valid RFC 3339 date-time (see [`parse_rfc3339`]).
    pub fn parse(text: &str) -> Result<Self, TimeError> {
        parse_rfc3339(text)
    }

    /// Time from `earlier` to `self`; zero when `earlier` is later.
    pub fn duration_since(self, earlier: Timestamp) -> Duration {
        self.0.duration_since(earlier.0).unwrap_or(Duration::ZERO)
    }

    /// Time elapsed since `self`; zero when `self` is in the future.
    pub fn elapsed(self) -> Duration {
        Timestamp::now().duration_since(self)
    }

    /// `self + duration`, saturating at the end of year 9999.
    pub fn saturating_add(self, duration: Duration) -> Self {
        let micros = self.unix_micros().saturating_add(duration_micros(duration));
        Self::from_unix_micros(micros)
    }

    /// `self - duration`, saturating at the Unix epoch.
    pub fn saturating_sub(self, duration: Duration) -> Self {
        let micros = self.unix_micros().saturating_sub(duration_micros(duration));
        Self::from_unix_micros(micros)
    }

    fn since_epoch(self) -> Duration {
        self.0.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO)
    }
}

/// Formats `time` as RFC 3339 UTC with exactly 6 fractional digits and `Z`.
///
/// Times before 1970 or after year 9999 are clamped (they cannot be written in this format).
pub fn format_rfc3339(time: SystemTime) -> String {
    Timestamp::from_system_time(time).to_string()
}

/// The current time formatted as by [`format_rfc3339`].
pub fn now_rfc3339() -> String {
    Timestamp::now().to_string()
}

/// Parses an RFC 3339 date-time: `YYYY-MM-DD`, `T` (or `t`, or a space), `hh:mm:ss`, optional
/// fraction with at least one digit, then `Z`/`z` or `+hh:mm`/`-hh:mm`. The result is UTC,
/// truncated to whole microseconds. Years before 1970 are rejected.
pub fn parse_rfc3339(text: &str) -> Result<Timestamp, TimeError> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || !text.is_ascii() {
        return Err(TimeError::new(
            text,
            "expected YYYY-MM-DDThh:mm:ss[.frac](Z|±hh:mm)",
        ));
    }
    if !matches!(bytes[10], b'T' | b't' | b' ') {
        return Err(TimeError::new(text, "expected 'T' between date and time"));
    }
    let (date, time) = (&text[..10], &text[11..19]);
    let mut rest = &text[19..];

    let mut fraction = "";
    if let Some(after_dot) = rest.strip_prefix('.') {
        let digits = after_dot.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(TimeError::new(text, "expected digits after '.'"));
        }
        fraction = &after_dot[..digits];
        rest = &after_dot[digits..];
    }
    let offset_secs = parse_offset(rest).ok_or_else(|| TimeError::new(text, "bad UTC offset"))?;

    // humantime does the calendar arithmetic on a canonical UTC form; the offset is applied after.
    let nanos: String = fraction
        .chars()
        .chain("000000000".chars())
        .take(9)
        .collect();
    let canonical = format!("{date}T{time}.{nanos}Z");
    let utc_as_written = humantime::parse_rfc3339(&canonical).map_err(|err| match err {
        humantime::TimestampError::OutOfRange => TimeError::new(text, "value out of range"),
        _ => TimeError::new(text, "expected YYYY-MM-DDThh:mm:ss[.frac](Z|±hh:mm)"),
    })?;
    let utc = if offset_secs >= 0 {
        utc_as_written.checked_sub(Duration::from_secs(offset_secs.unsigned_abs()))
    } else {
        utc_as_written.checked_add(Duration::from_secs(offset_secs.unsigned_abs()))
    };
    match utc.map(|t| t.duration_since(UNIX_EPOCH)) {
        Some(Ok(since_epoch)) if duration_micros(since_epoch) <= max_micros() => {
            Ok(Timestamp::from_unix_micros(duration_micros(since_epoch)))
        }
        _ => Err(TimeError::new(text, "value out of range")),
    }
}

/// `Z`, `z`, or `±hh:mm` → offset east of UTC in seconds.
fn parse_offset(text: &str) -> Option<i64> {
    if text == "Z" || text == "z" {
        return Some(0);
    }
    let bytes = text.as_bytes();
    if bytes.len() != 6 || bytes[3] != b':' {
        return None;
    }
    let sign = match bytes[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let hours = two_digits(&bytes[1..3])?;
    let minutes = two_digits(&bytes[4..6])?;
    if hours > 23 || minutes > 59 {
        return None;
    }
    Some(sign * (hours * 3600 + minutes * 60))
}

fn two_digits(pair: &[u8]) -> Option<i64> {
    match pair {
        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => {
            Some(i64::from(a - b'0') * 10 + i64::from(b - b'0'))
        }
        _ => None,
    }
}

fn duration_micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

const fn max_micros() -> u64 {
    END_OF_9999_SECS * 1_000_000 - 1
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The invariant (1970 ..= 9999) is exactly humantime's formattable range.
        fmt::Display::fmt(&humantime::format_rfc3339_micros(self.0), f)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl FromStr for Timestamp {
    type Err = TimeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_rfc3339(text)
    }
}

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Self {
        Timestamp::from_system_time(time)
    }
}

impl From<Timestamp> for SystemTime {
    fn from(timestamp: Timestamp) -> Self {
        timestamp.0
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;

    /// Saturates at the end of year 9999 instead of overflowing.
    fn add(self, duration: Duration) -> Timestamp {
        self.saturating_add(duration)
    }
}

impl AddAssign<Duration> for Timestamp {
    fn add_assign(&mut self, duration: Duration) {
        *self = self.saturating_add(duration);
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;

    /// Saturates at the Unix epoch instead of underflowing.
    fn sub(self, duration: Duration) -> Timestamp {
        self.saturating_sub(duration)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl de::Visitor<'_> for Visitor {
            type Value = Timestamp;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 timestamp string")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Timestamp, E> {
                parse_rfc3339(text).map_err(E::custom)
            }
        }

        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(text: &str) -> Timestamp {
        parse_rfc3339(text).unwrap()
    }

    #[test]
    fn formats_with_six_digits_and_z() {
        let t = UNIX_EPOCH + Duration::new(1_777_371_302, 114_503_999);
        assert_eq!(format_rfc3339(t), "2026-04-28T10:15:02.114503Z");
        assert_eq!(
            Timestamp::UNIX_EPOCH.to_string(),
            "1970-01-01T00:00:00.000000Z"
        );
        let whole = UNIX_EPOCH + Duration::from_secs(1_767_607_872);
        assert_eq!(format_rfc3339(whole), "2026-01-05T10:11:12.000000Z");
    }

    #[test]
    fn now_has_fixed_width() {
        let text = now_rfc3339();
        assert_eq!(text.len(), 27);
        assert!(text.ends_with('Z'));
        assert_eq!(&text[19..20], ".");
    }

    #[test]
    fn parse_round_trips_canonical_text() {
        for text in [
            "2026-04-28T10:15:02.114503Z",
            "2026-01-05T10:11:12.345000Z",
            "1970-01-01T00:00:00.000000Z",
            "9999-12-31T23:59:59.999999Z",
            "2024-02-29T23:59:59.000001Z",
        ] {
            assert_eq!(ts(text).to_string(), text);
        }
    }

    #[test]
    fn parse_normalises_other_rfc3339_forms() {
        let cases = [
            ("2026-04-28T10:15:02Z", "2026-04-28T10:15:02.000000Z"),
            ("2026-04-28T10:15:02.1Z", "2026-04-28T10:15:02.100000Z"),
            (
                "2026-04-28T10:15:02.123456789Z",
                "2026-04-28T10:15:02.123456Z",
            ),
            ("2026-04-28t10:15:02.5z", "2026-04-28T10:15:02.500000Z"),
            ("2026-04-28 10:15:02Z", "2026-04-28T10:15:02.000000Z"),
            ("2026-04-28T12:15:02+02:00", "2026-04-28T10:15:02.000000Z"),
            (
                "2026-04-28T05:45:02.25-04:30",
                "2026-04-28T10:15:02.250000Z",
            ),
            ("2026-12-31T23:30:00-01:00", "2027-01-01T00:30:00.000000Z"),
            ("2026-04-28T10:15:02+00:00", "2026-04-28T10:15:02.000000Z"),
            ("2026-04-28T10:15:02-00:00", "2026-04-28T10:15:02.000000Z"),
        ];
        for (input, expected) in cases {
            assert_eq!(ts(input).to_string(), expected, "{input}");
        }
    }

    #[test]
    fn parse_rejects_invalid_input() {
        for bad in [
            "",
            "2026-04-28",
            "2026-04-28T10:15:02",
            "2026-04-28T10:15:02.Z",
            "2026-04-28T10:15:02.12",
            "2026-04-28T10:15:02+0200",
            "2026-04-28T10:15:02+24:00",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-04-28T25:00:00Z",
            "1969-12-31T23:59:59Z",
            "1970-01-01T00:30:00+01:00",
            "2026-04-28X10:15:02Z",
            "2026-04-28T10:15:02Zjunk",
            "２026-04-28T10:15:02Z",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "accepted {bad:?}");
        }
        let err = parse_rfc3339("nope").unwrap_err().to_string();
        assert!(err.contains("\"nope\""), "{err}");
    }

    #[test]
    fn serde_uses_canonical_form_and_accepts_others() {
        let t = ts("2026-04-28T12:15:02.1+02:00");
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2026-04-28T10:15:02.100000Z\""
        );
        let back: Timestamp = serde_json::from_str("\"2026-04-28T10:15:02.1Z\"").unwrap();
        assert_eq!(back, t);
        assert!(serde_json::from_str::<Timestamp>("42").is_err());
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
    }

    #[test]
    fn construction_truncates_to_micros_and_clamps() {
        let t = Timestamp::from_system_time(UNIX_EPOCH + Duration::new(5, 999_999_999));
        assert_eq!(t.unix_micros(), 5_999_999);
        let before = UNIX_EPOCH - Duration::from_secs(10);
        assert_eq!(Timestamp::from_system_time(before), Timestamp::UNIX_EPOCH);
        let far = UNIX_EPOCH + Duration::from_secs(END_OF_9999_SECS * 2);
        assert_eq!(format_rfc3339(far), "9999-12-31T23:59:59.999999Z");
        assert_eq!(format_rfc3339(before), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn ordering_and_arithmetic() {
        let a = ts("2026-04-28T10:15:02.114503Z");
        let b = a + Duration::from_millis(1500);
        assert!(b > a);
        assert_eq!(b.to_string(), "2026-04-28T10:15:03.614503Z");
        assert_eq!(b.duration_since(a), Duration::from_millis(1500));
        assert_eq!(a.duration_since(b), Duration::ZERO);
        assert_eq!(b - Duration::from_millis(1500), a);
        let mut c = a;
        c += Duration::from_micros(1);
        assert_eq!(c.to_string(), "2026-04-28T10:15:02.114504Z");
        assert_eq!(
            Timestamp::UNIX_EPOCH - Duration::from_secs(1),
            Timestamp::UNIX_EPOCH
        );
        let end = ts("9999-12-31T23:59:59.999999Z");
        assert_eq!(end + Duration::from_secs(3600), end);
        // Text order is time order thanks to the fixed width.
        let mut texts = [b.to_string(), a.to_string(), c.to_string()];
        texts.sort();
        assert_eq!(texts, [a.to_string(), c.to_string(), b.to_string()]);
    }

    #[test]
    fn unix_conversions() {
        let t = Timestamp::from_unix_micros(1_777_371_302_114_503);
        assert_eq!(t.to_string(), "2026-04-28T10:15:02.114503Z");
        assert_eq!(t.unix_millis(), 1_777_371_302_114);
        assert_eq!(SystemTime::from(t), t.as_system_time());
        assert!(Timestamp::now().elapsed() < Duration::from_secs(5));
    }
}
