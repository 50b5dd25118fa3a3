//! When to try a request again and how long to wait first: exponential backoff with jitter,
//! a cap on attempts, and the server's own `Retry-After` (seconds or an HTTP date) honoured.

use std::time::{Duration, SystemTime};

/// How a judge retries failed requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0: never retry).
    pub max_retries: u32,
    /// The wait before the first retry; it doubles with each further one.
    pub base_delay: Duration,
    /// The longest computed wait (a server's `Retry-After` may ask for more, up to
    /// `max_retry_after`).
    pub max_delay: Duration,
    /// The longest `Retry-After` honoured: a server asking for an hour gets this instead.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (0-based). `jitter` in [0, 1) spreads the retries
    /// of concurrent requests so that they do not hit a recovering server all at once: the
    /// computed wait is between half and all of the exponential step. A `Retry-After` is a
    /// floor: the wait is never shorter than what the server asked for.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        let step = self
            .base_delay
            .saturating_mul(1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX))
            .min(self.max_delay);
        let jitter = jitter.clamp(0.0, 1.0);
        let computed = step.mul_f64(0.5 + 0.5 * jitter);
        match retry_after {
            Some(asked) => asked.min(self.max_retry_after) + self.base_delay.mul_f64(jitter),
            None => computed,
        }
    }
}

/// Reads a `Retry-After` header: delay-seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`), relative to `now`. A date in the past means "now".
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let date = time::PrimitiveDateTime::parse(value, format)
        .ok()?
        .assume_utc();
    let when = SystemTime::from(date);
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A number in [0, 1) that differs between threads and calls, for backoff jitter: it needs to
/// spread retries, not to be unpredictable.
pub fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_stays_within_the_step() {
        let p = RetryPolicy {
            max_retries: 10,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        };
        assert_eq!(p.delay(0, None, 0.999_999).as_secs(), 0, "just under 1 s");
        assert_eq!(p.delay(0, None, 0.0), Duration::from_millis(500));
        assert_eq!(p.delay(1, None, 0.0), Duration::from_secs(1));
        assert_eq!(p.delay(2, None, 0.0), Duration::from_secs(2));
        assert_eq!(p.delay(3, None, 0.0), Duration::from_secs(4));
        assert_eq!(
            p.delay(9, None, 0.0),
            Duration::from_secs(4),
            "capped at 8 s"
        );
        assert_eq!(
            p.delay(40, None, 0.0),
            Duration::from_secs(4),
            "no overflow"
        );
        assert!(p.delay(3, None, 0.5) > p.delay(3, None, 0.0));
        assert!(p.delay(3, None, 0.99) <= Duration::from_secs(8));
    }

    #[test]
    fn retry_after_is_a_floor_and_capped() {
        let p = RetryPolicy::default();
        let d = p.delay(0, Some(Duration::from_secs(7)), 0.3);
        assert!(d >= Duration::from_secs(7), "{d:?}");
        assert!(d < Duration::from_secs(8), "{d:?}");
        let d = p.delay(0, Some(Duration::from_secs(86_400)), 0.0);
        assert_eq!(d, p.max_retry_after);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_470); // 07:27:50 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("1.5", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means retry now"
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn jitter_is_in_range() {
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j));
        }
    }
}
