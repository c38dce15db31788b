//! The wall clock, as integers since the Unix epoch.
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

#[cfg(test)]
mod tests {
    use super::*;

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
