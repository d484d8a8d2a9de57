//! Time formats of spec AF §1 item 5: `create_time` of rows as `YYYY-MM-DD HH:mm:ss` in the display
//! time zone, every other datetime as ISO-8601 UTC with milliseconds, notices in epoch milliseconds.

use chrono::{DateTime, FixedOffset, NaiveDateTime, Timelike, Utc};

/// Now, truncated to whole seconds (DATETIME columns keep no fraction on MySQL; both backends agree).
pub fn now_db() -> NaiveDateTime {
    let n = Utc::now().naive_utc();
    n.with_nanosecond(0).unwrap_or(n)
}

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// `"2025-07-13T03:46:05.000Z"`
pub fn iso(t: &NaiveDateTime) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// `"2025-07-13 11:46:05"` in the display zone.
pub fn local(t: &NaiveDateTime, tz: &FixedOffset) -> String {
    DateTime::<Utc>::from_naive_utc_and_offset(*t, Utc)
        .with_timezone(tz)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// `"2025/8/19 09:05:03"` in the display zone (GR §4.3 `<T>`).
pub fn local_slash(ms: i64, tz: &FixedOffset) -> String {
    let t = DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(tz);
    t.format("%Y/%-m/%-d %H:%M:%S").to_string()
}

pub fn parse_offset(s: &str) -> Option<FixedOffset> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => (1, s),
    };
    let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
    let secs = h.parse::<i32>().ok()? * 3600 + m.parse::<i32>().ok()? * 60;
    FixedOffset::east_opt(sign * secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_match_the_original() {
        let t = NaiveDateTime::parse_from_str("2025-07-13 03:46:05", "%Y-%m-%d %H:%M:%S")
            .expect("valid");
        let tz = parse_offset("+08:00").expect("valid");
        assert_eq!(iso(&t), "2025-07-13T03:46:05.000Z");
        assert_eq!(local(&t, &tz), "2025-07-13 11:46:05");
        assert_eq!(local_slash(1755565503000, &tz), "2025/8/19 09:05:03");
    }
}
