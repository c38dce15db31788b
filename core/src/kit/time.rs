//! The wall clock, as integers since the Unix epoch, and dates and times
//! of day as the text SQL databases print.
//!
//! A clock set before 1970 reads as 0 rather than failing: timestamps are
//! metadata, never a reason for a call to fail.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (message timestamps, expiry times).
#[inline]
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Microseconds since the Unix epoch.
#[inline]
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// Days since 1970-01-01 as `YYYY-MM-DD` (proleptic Gregorian; `… BC`
/// before year 1), as PostgreSQL and DuckDB print dates.
pub fn date_text(days: i64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    if y <= 0 {
        format!("{:04}-{m:02}-{d:02} BC", 1 - y)
    } else {
        format!("{y:04}-{m:02}-{d:02}")
    }
}

/// Microseconds since midnight as `HH:MM:SS[.f]` (trailing zeros of the
/// fraction dropped).
pub fn time_text(us: i64) -> String {
    let (s, frac) = (us / 1_000_000, us % 1_000_000);
    let t = format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60);
    if frac == 0 {
        t
    } else {
        format!("{t}.{}", format!("{frac:06}").trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_as_text() {
        assert_eq!(date_text(0), "1970-01-01");
        assert_eq!(date_text(19_844), "2024-05-01");
        assert_eq!(date_text(-1), "1969-12-31");
        assert_eq!(time_text(45_296_500_000), "12:34:56.5");
        assert_eq!(time_text(0), "00:00:00");
    }

    #[test]
    fn clocks_agree_and_advance() {
        let ms = now_ms();
        let us = now_us();
        // After 2020-01-01 and before 2200.
        assert!(ms > 1_577_836_800_000 && ms < 7_258_118_400_000, "{ms}");
        assert!((us / 1000 - ms).abs() < 1000, "{us} vs {ms}");
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(now_ms() > ms);
        assert!(now_us() > us);
    }
}
