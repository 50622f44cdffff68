//! Showing untrusted text safely, and times.
//!
//! Message text and usernames come from other people through an untrusted server. Written to a
//! terminal as they are, control characters could move the cursor, rewrite earlier lines or
//! change the window title, and bidirectional overrides could make text read differently from
//! what it is. Everything shown passes through [`sanitize`] first.

/// `text` with every control character and every bidirectional-formatting character replaced by
/// a visible escape (`\n`, `\t`, `\u{1b}`, `\u{202e}`, ...), so it shows on one line as what it is.
pub(crate) fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Control characters (C0, DEL, C1), the Unicode line and paragraph separators, and the
/// bidirectional marks, embeddings, overrides and isolates.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}'             // line / paragraph separator
            | '\u{061c}'                        // Arabic letter mark
            | '\u{200e}' | '\u{200f}'           // left-to-right / right-to-left mark
            | '\u{202a}'..='\u{202e}'           // embeddings and overrides
            | '\u{2066}'..='\u{2069}' // isolates
        )
}

/// A server timestamp in milliseconds since the Unix epoch as UTC, `2025-06-01T12:00:05Z`.
pub(crate) fn format_utc(timestamp_ms: u64) -> String {
    let secs = timestamp_ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// The time of day of a timestamp, `12:00`, for the chat view (UTC: the CLI has no time zone
/// database).
pub(crate) fn format_clock(timestamp_ms: u64) -> String {
    let rem = (timestamp_ms / 1000) % 86_400;
    format!("{:02}:{:02}", rem / 3600, (rem % 3600) / 60)
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_escapes_what_a_terminal_would_obey() {
        assert_eq!(sanitize("hello, wörld ✓ 日本"), "hello, wörld ✓ 日本");
        assert_eq!(sanitize("a\nb\tc\r"), "a\\nb\\tc\\r");
        assert_eq!(sanitize("\u{1b}[2J\u{7}"), "\\u{1b}[2J\\u{7}");
        assert_eq!(sanitize("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(sanitize("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(sanitize("x\u{2066}y\u{2028}"), "x\\u{2066}y\\u{2028}");
        assert!(!sanitize("\u{0}\u{1f}\u{7f}").chars().any(char::is_control));
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_748_779_205_999), "2025-06-01T12:00:05Z");
        assert_eq!(format_utc(4_102_444_799_000), "2099-12-31T23:59:59Z");
        assert_eq!(format_clock(1_748_779_205_999), "12:00");
    }
}
