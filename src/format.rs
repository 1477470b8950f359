//! Human formats of cli-and-ops.md §1.1: durations (`812ms`, `12.3s`, `4m05s`, `2h03m`), costs
//! (`$0.000420`), tokens (`in/out`), local times (`YYYY-MM-DD HH:MM:SS`), duration flags
//! (`90s`, `5m`, `1h30m`, bare seconds) and borderless tables.

use crate::output::Style;
use std::time::Duration;

/// A missing value.
pub const MISSING: &str = "-";

/// `812ms` below a second, `12.3s` below a minute, `4m05s` below an hour, else `2h03m`.
pub fn duration_ms(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    // Tenths of a second, rounded; 59.96s would print as "60.0s", so it moves up a unit.
    let tenths = (ms + 50) / 100;
    if tenths < 600 {
        return format!("{}.{}s", tenths / 10, tenths % 10);
    }
    let secs = (ms + 500) / 1000;
    if secs < 3600 {
        return format!("{}m{:02}s", secs / 60, secs % 60);
    }
    let mins = (secs + 30) / 60;
    format!("{}h{:02}m", mins / 60, mins % 60)
}

pub fn duration(d: Duration) -> String {
    duration_ms(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `$0.000420`: USD with six decimals, enough for one cheap model call.
pub fn cost(usd: f64) -> String {
    format!("${usd:.6}")
}

/// `in/out`.
pub fn tokens(tokens_in: u64, tokens_out: u64) -> String {
    format!("{tokens_in}/{tokens_out}")
}

/// Parses an RFC 3339 timestamp of the API.
pub fn parse_time(text: &str) -> Option<jiff::Timestamp> {
    text.parse().ok()
}

/// `YYYY-MM-DD HH:MM:SS` in the local time zone; the text itself when it is not a timestamp.
pub fn local_time(text: &str) -> String {
    match parse_time(text) {
        Some(ts) => ts
            .to_zoned(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        None => text.to_string(),
    }
}

/// The time between two API timestamps (`None` when either is missing or unreadable, or
/// when `end` is earlier).
pub fn between(start: Option<&str>, end: Option<&str>) -> Option<Duration> {
    let start = parse_time(start?)?;
    let end = parse_time(end?)?;
    Duration::try_from(end.duration_since(start)).ok()
}

/// The time from an API timestamp until now (`None` when unreadable or in the future).
pub fn since(start: &str) -> Option<Duration> {
    let start = parse_time(start)?;
    Duration::try_from(jiff::Timestamp::now().duration_since(start)).ok()
}

/// The time from now until an API timestamp (zero once it has passed).
pub fn until(end: &str) -> Option<Duration> {
    let end = parse_time(end)?;
    Some(Duration::try_from(end.duration_since(jiff::Timestamp::now())).unwrap_or_default())
}

/// A duration flag: `90s`, `5m`, `1h30m`, `250ms`, or a bare number of seconds (`2.5`).
pub fn parse_flag_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration \"{text}\" (examples: 90s, 5m, 1h30m, 30)");
    let text = text.trim();
    if text.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| bad());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..digits].parse().map_err(|_| bad())?;
        let after = &rest[digits..];
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let scale = match &after[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += Duration::try_from_secs_f64(value * scale).map_err(|_| bad())?;
        rest = &after[unit_len..];
    }
    Ok(total)
}

/// A table cell: its text, and whether it is a status word to colour.
pub struct Cell {
    text: String,
    status: bool,
}

impl Cell {
    pub fn status(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            status: true,
        }
    }
}

impl<T: Into<String>> From<T> for Cell {
    fn from(text: T) -> Cell {
        Cell {
            text: text.into(),
            status: false,
        }
    }
}

/// Left-aligned columns separated by two spaces, header in capitals, no borders; the last
/// column is not padded, so lines carry no trailing spaces. Widths count characters of the
/// plain text; colour is applied after padding.
pub fn table(header: &[&str], rows: Vec<Vec<Cell>>, style: Style) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate().take(columns) {
            widths[i] = widths[i].max(cell.text.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<(String, bool)>, out: &mut String| {
        let last = cells.len().saturating_sub(1);
        let mut text = String::new();
        for (i, (cell, status)) in cells.into_iter().enumerate() {
            let pad = if i == last {
                0
            } else {
                widths[i].saturating_sub(cell.chars().count()) + 2
            };
            let shown = if status { style.status(&cell) } else { cell };
            text.push_str(&shown);
            text.push_str(&" ".repeat(pad));
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(
        header.iter().map(|h| (h.to_uppercase(), false)).collect(),
        &mut out,
    );
    for row in rows {
        line(
            row.into_iter().map(|c| (c.text, c.status)).collect(),
            &mut out,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations_use_the_largest_fitting_unit() {
        assert_eq!(duration_ms(0), "0ms");
        assert_eq!(duration_ms(812), "812ms");
        assert_eq!(duration_ms(999), "999ms");
        assert_eq!(duration_ms(1000), "1.0s");
        assert_eq!(duration_ms(12_345), "12.3s");
        assert_eq!(duration_ms(59_949), "59.9s");
        assert_eq!(duration_ms(59_960), "1m00s");
        assert_eq!(duration_ms(245_000), "4m05s");
        assert_eq!(duration_ms(3_599_000), "59m59s");
        assert_eq!(duration_ms(3_600_000), "1h00m");
        assert_eq!(duration_ms(7_380_000), "2h03m");
        assert_eq!(duration(Duration::from_millis(48)), "48ms");
    }

    #[test]
    fn costs_and_tokens() {
        assert_eq!(cost(0.00042), "$0.000420");
        assert_eq!(cost(0.0), "$0.000000");
        assert_eq!(cost(1.5), "$1.500000");
        assert_eq!(tokens(52, 14), "52/14");
    }

    #[test]
    fn flag_durations() {
        let secs = |t: &str| parse_flag_duration(t).map(|d| d.as_secs_f64());
        assert_eq!(secs("90s"), Ok(90.0));
        assert_eq!(secs("5m"), Ok(300.0));
        assert_eq!(secs("1h30m"), Ok(5400.0));
        assert_eq!(secs("30"), Ok(30.0));
        assert_eq!(secs("2.5"), Ok(2.5));
        assert_eq!(secs("250ms"), Ok(0.25));
        assert_eq!(secs("1m30s"), Ok(90.0));
        for bad in ["", "abc", "5x", "m5", "-1", "1h-", "s"] {
            assert!(parse_flag_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn times_between_api_timestamps() {
        let d = between(
            Some("2026-04-28T10:15:02.100000Z"),
            Some("2026-04-28T10:15:02.148000Z"),
        );
        assert_eq!(d, Some(Duration::from_millis(48)));
        assert_eq!(between(None, Some("2026-04-28T10:15:02.148000Z")), None);
        assert_eq!(local_time("not a time"), "not a time");
        assert_eq!(local_time("2026-04-28T10:15:02.100000Z").len(), 19);
    }

    #[test]
    fn tables_align_plain_text_and_colour_after_padding() {
        let rows = vec![
            vec![
                Cell::from("greet"),
                Cell::from("agent"),
                Cell::status("complete"),
            ],
            vec![
                Cell::from("notify"),
                Cell::from("webhook"),
                Cell::status("failed"),
            ],
        ];
        let plain = table(&["step", "type", "status"], rows, Style { enabled: false });
        assert_eq!(
            plain,
            "STEP    TYPE     STATUS\ngreet   agent    complete\nnotify  webhook  failed\n"
        );
        let rows = vec![vec![Cell::status("failed"), Cell::from("x")]];
        let coloured = table(&["status", "b"], rows, Style { enabled: true });
        assert_eq!(coloured, "STATUS  B\n\x1b[31mfailed\x1b[0m  x\n");
    }
}
