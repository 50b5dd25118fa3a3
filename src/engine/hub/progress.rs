//! What a download tells its caller while it runs, and a meter that turns byte counts into a
//! speed and a time left, for a progress bar in the terminal or the GUI.

use std::time::{Duration, Instant};

/// A file the download will provide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    pub name: String,
    /// As the hub lists it; `None` when it does not say.
    pub size: Option<u64>,
    /// Already in the cache: nothing to transfer.
    pub cached: bool,
}

/// Events of one model download, in order: one `Plan`, then `Bytes` (at most about ten a
/// second per file), `Retry` and `FileDone` as files progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadEvent {
    Plan {
        repo: String,
        commit: String,
        files: Vec<PlannedFile>,
        /// Bytes of all planned files whose size is known.
        total_bytes: u64,
        /// Of those, bytes already in the cache.
        cached_bytes: u64,
    },
    Bytes {
        file: String,
        file_done: u64,
        file_total: Option<u64>,
        /// Bytes of the whole plan on disk now (cached, resumed and transferred).
        done: u64,
        total: u64,
    },
    Retry {
        file: String,
        attempt: u32,
        /// Bytes already on disk that the next attempt keeps.
        resume_from: u64,
        reason: String,
    },
    FileDone {
        file: String,
        bytes: u64,
        from_cache: bool,
    },
}

/// Speed and time left from a stream of "bytes done" readings, smoothed over a few seconds
/// so a bar does not jitter.
#[derive(Debug, Clone)]
pub struct TransferMeter {
    started: Instant,
    last: Option<(Instant, u64)>,
    /// Bytes per second, exponentially smoothed.
    rate: Option<f64>,
}

/// How quickly the speed follows changes: the weight of a reading one second long.
const SMOOTHING_PER_SECOND: f64 = 0.3;

impl Default for TransferMeter {
    fn default() -> Self {
        TransferMeter::new()
    }
}

impl TransferMeter {
    pub fn new() -> TransferMeter {
        TransferMeter::starting_at(Instant::now())
    }

    pub fn starting_at(now: Instant) -> TransferMeter {
        TransferMeter {
            started: now,
            last: None,
            rate: None,
        }
    }

    /// Records that `done` bytes are done at `now`. The first reading only sets the baseline
    /// (bytes that were already cached or resumed are not speed).
    pub fn update(&mut self, done: u64, now: Instant) {
        match self.last {
            None => self.last = Some((now, done)),
            Some((then, before)) => {
                let dt = now.saturating_duration_since(then).as_secs_f64();
                if dt < 0.05 {
                    return;
                }
                let sample = done.saturating_sub(before) as f64 / dt;
                let weight = 1.0 - (1.0 - SMOOTHING_PER_SECOND).powf(dt);
                self.rate = Some(match self.rate {
                    Some(rate) => rate + weight * (sample - rate),
                    None => sample,
                });
                self.last = Some((now, done));
            }
        }
    }

    /// Bytes per second, once two readings are apart.
    pub fn bytes_per_second(&self) -> Option<f64> {
        self.rate
    }

    /// Time left to reach `total`, at the current speed.
    pub fn eta(&self, total: u64) -> Option<Duration> {
        let (_, done) = self.last?;
        let rate = self.rate.filter(|r| *r > 0.0)?;
        Some(Duration::from_secs_f64(
            total.saturating_sub(done) as f64 / rate,
        ))
    }

    pub fn elapsed(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.started)
    }
}

/// `1.5 GB`, `12.0 MB`, `512 B`: decimal units, as download sizes are usually quoted.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for u in UNITS {
        if value < 1000.0 {
            break;
        }
        value /= 1000.0;
        unit = u;
    }
    format!("{value:.1} {unit}")
}

/// `1:05:09`, `4:07`, `0:03`.
pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meter_measures_speed_and_eta() {
        let t0 = Instant::now();
        let mut m = TransferMeter::starting_at(t0);
        m.update(1_000, t0);
        assert_eq!(m.bytes_per_second(), None, "one reading is no speed");
        m.update(11_000, t0 + Duration::from_secs(1));
        assert_eq!(m.bytes_per_second(), Some(10_000.0));
        assert_eq!(m.eta(111_000), Some(Duration::from_secs(10)));
        // A slower second pulls the speed down, smoothed.
        m.update(12_000, t0 + Duration::from_secs(2));
        let rate = m.bytes_per_second().unwrap();
        assert!(rate < 10_000.0 && rate > 1_000.0, "{rate}");
        assert_eq!(
            m.elapsed(t0 + Duration::from_secs(2)),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn formats() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1_500), "1.5 kB");
        assert_eq!(format_bytes(15_231_272_152), "15.2 GB");
        assert_eq!(format_duration(Duration::from_secs(3)), "0:03");
        assert_eq!(format_duration(Duration::from_secs(247)), "4:07");
        assert_eq!(format_duration(Duration::from_secs(3909)), "1:05:09");
    }
}
