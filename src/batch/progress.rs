//! Counting a run as its events arrive: per judge, what is done, failed and in flight, the
//! rate and the time left. Plain state with an explicit clock, drawn by the CLI's progress
//! lines and the app's batch window alike.

use super::run::BatchEvent;
use super::Plan;
use std::time::{Duration, Instant};

/// One judge's progress.
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeProgress {
    pub name: String,
    /// Judgments this run set out to make.
    pub total: usize,
    /// Judgments skipped as already in the journal.
    pub already_done: usize,
    pub done: usize,
    pub failed: usize,
    pub retries: usize,
    pub in_flight: usize,
    /// When its first request began (model loading is not counted in its rate).
    pub started: Option<Instant>,
    /// The latest status line from its workers ("loading the model"...).
    pub status: Option<String>,
    /// Set when it stopped early, with why.
    pub stopped: Option<String>,
    /// All its workers have exited.
    pub finished: bool,
}

impl JudgeProgress {
    /// A judge about to make `total` judgments, `already_done` others skipped; nothing begun.
    pub fn new(name: String, total: usize, already_done: usize) -> JudgeProgress {
        JudgeProgress {
            name,
            total,
            already_done,
            done: 0,
            failed: 0,
            retries: 0,
            in_flight: 0,
            started: None,
            status: None,
            stopped: None,
            finished: total == 0,
        }
    }

    /// Judgments per minute since its first request.
    pub fn rate_per_minute(&self, now: Instant) -> Option<f64> {
        let started = self.started?;
        let minutes = now.saturating_duration_since(started).as_secs_f64() / 60.0;
        (self.done > 0 && minutes > 0.0).then(|| self.done as f64 / minutes)
    }

    /// Time left at the current rate.
    pub fn eta(&self, now: Instant) -> Option<Duration> {
        let rate = self.rate_per_minute(now)?;
        let left = self.total.saturating_sub(self.done + self.failed);
        Some(Duration::from_secs_f64(left as f64 / rate * 60.0))
    }

    /// `big  12/40 done, 1 failed, 2 in flight, 23.5/min, ETA 1m 12s`.
    pub fn line(&self, now: Instant) -> String {
        let mut s = format!("{}/{} done", self.done, self.total);
        if self.failed > 0 {
            s.push_str(&format!(", {} failed", self.failed));
        }
        if self.retries > 0 {
            s.push_str(&format!(", {} retries", self.retries));
        }
        if self.in_flight > 0 && !self.finished {
            s.push_str(&format!(", {} in flight", self.in_flight));
        }
        if let Some(rate) = self.rate_per_minute(now) {
            s.push_str(&format!(", {rate:.1}/min"));
        }
        if let Some(why) = &self.stopped {
            s.push_str(&format!(", stopped: {why}"));
        } else if self.finished {
            s.push_str(", finished");
        } else if let Some(eta) = self.eta(now) {
            s.push_str(&format!(", ETA {}", format_eta(eta)));
        } else if let Some(status) = &self.status {
            s.push_str(&format!(", {status}"));
        }
        s
    }
}

/// `45s`, `3m 05s`, `2h 10m`.
pub fn format_eta(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// Every judge's progress in a run.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchProgress {
    pub judges: Vec<JudgeProgress>,
}

impl BatchProgress {
    pub fn new(plan: &Plan) -> BatchProgress {
        BatchProgress {
            judges: plan
                .judges
                .iter()
                .map(|j| JudgeProgress::new(j.judge.name.clone(), j.tasks.len(), j.already_done))
                .collect(),
        }
    }

    /// Counts `event`, which arrived at `now`.
    pub fn apply(&mut self, event: &BatchEvent, now: Instant) {
        let Some(j) = self.judges.get_mut(event.judge()) else {
            return;
        };
        match event {
            BatchEvent::Status { text, .. } => j.status = Some(text.clone()),
            BatchEvent::Started { .. } => {
                j.in_flight += 1;
                j.started.get_or_insert(now);
            }
            BatchEvent::Retrying { .. } => j.retries += 1,
            BatchEvent::Judged { .. } => {
                j.in_flight = j.in_flight.saturating_sub(1);
                j.done += 1;
            }
            BatchEvent::Failed { .. } => {
                j.in_flight = j.in_flight.saturating_sub(1);
                j.failed += 1;
            }
            BatchEvent::Stopped {
                error, not_started, ..
            } => {
                j.failed += not_started.len();
                j.stopped = Some(error.clone());
            }
            BatchEvent::Finished { .. } => {
                j.finished = true;
                j.in_flight = 0;
            }
        }
    }

    /// All judges' workers have exited.
    pub fn is_finished(&self) -> bool {
        self.judges.iter().all(|j| j.finished)
    }

    pub fn done(&self) -> usize {
        self.judges.iter().map(|j| j.done).sum()
    }

    pub fn failed(&self) -> usize {
        self.judges.iter().map(|j| j.failed).sum()
    }

    pub fn total(&self) -> usize {
        self.judges.iter().map(|j| j.total).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn judge(total: usize) -> JudgeProgress {
        JudgeProgress {
            finished: false,
            ..JudgeProgress::new("j".into(), total, 0)
        }
    }

    #[test]
    fn rate_and_eta_follow_the_clock_given() {
        let t0 = Instant::now();
        let mut j = judge(40);
        assert_eq!(j.rate_per_minute(t0), None);
        j.started = Some(t0);
        j.done = 10;
        j.failed = 2;
        let now = t0 + Duration::from_secs(60);
        assert_eq!(j.rate_per_minute(now), Some(10.0));
        assert_eq!(j.eta(now), Some(Duration::from_secs(168)));
        let line = j.line(now);
        assert!(line.starts_with("10/40 done, 2 failed"), "{line}");
        assert!(line.ends_with("10.0/min, ETA 2m 48s"), "{line}");
        assert_eq!(format_eta(Duration::from_secs(7322)), "2h 02m");
    }
}
