//! Keeps frames at the camera's exact sampling rate. videorate in the
//! pipeline only caps the rate at whole frames per second (it cannot convert
//! variable-rate streams); this gate does the rest, including rates below
//! one frame per second.

use std::time::Duration;

#[derive(Debug)]
pub struct RateGate {
    interval: Duration,
    /// Frames are accepted from this stream time on.
    next_due: Option<Duration>,
    /// Stream time of the last frame offered, kept or not.
    last_seen: Option<Duration>,
    /// Smoothed spacing of the incoming frames.
    input_gap: Duration,
}

impl RateGate {
    pub fn new(interval: Duration) -> RateGate {
        RateGate {
            interval,
            next_due: None,
            last_seen: None,
            input_gap: Duration::ZERO,
        }
    }

    /// Whether the frame at stream time `t` is kept.
    pub fn accept(&mut self, t: Duration) -> bool {
        if let Some(prev) = self.last_seen.filter(|&p| t > p) {
            let gap = t - prev;
            self.input_gap = if self.input_gap.is_zero() {
                gap
            } else {
                (self.input_gap * 7 + gap) / 8
            };
        }
        self.last_seen = Some(t);
        // Keep the incoming frame nearest to the due time: one less than half
        // an input frame early is taken, so jittery timestamps do not push
        // the pick a whole input frame late.
        let slack = (self.input_gap / 2).min(self.interval / 2);
        match self.next_due {
            Some(due) if t + slack < due => false,
            Some(due) => {
                let next = due + self.interval;
                // After a gap (or a seek back), start again from this frame.
                self.next_due = Some(if t >= next || t + self.interval < due {
                    t + self.interval
                } else {
                    next
                });
                true
            }
            None => {
                self.next_due = Some(t + self.interval);
                true
            }
        }
    }

    /// Forgets the schedule (after a loop to the start of a file).
    pub fn reset(&mut self) {
        self.next_due = None;
        self.last_seen = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(gate: &mut RateGate, times_ms: impl IntoIterator<Item = u64>) -> Vec<u64> {
        times_ms
            .into_iter()
            .filter(|&t| gate.accept(Duration::from_millis(t)))
            .collect()
    }

    #[test]
    fn keeps_one_frame_per_interval_from_a_faster_stream() {
        let mut gate = RateGate::new(Duration::from_secs(2));
        // A 5 fps stream with jitter, as an MJPEG camera timestamps it.
        let times = (0..50).map(|i| i * 200 + if i % 3 == 0 { 13 } else { 0 });
        assert_eq!(kept(&mut gate, times), vec![13, 2000, 4000, 6013, 8000]);
    }

    #[test]
    fn picks_the_input_frame_nearest_each_due_time() {
        // 30 fps starting at 3 ms, sampled at 1 fps: 1003, 2003, ... exactly.
        let mut gate = RateGate::new(Duration::from_secs(1));
        let times: Vec<u64> = (0..100).map(|i| 3 + i * 100 / 3).collect();
        let picked = kept(&mut gate, times);
        assert_eq!(picked, vec![3, 1003, 2003, 3003]);
    }

    #[test]
    fn passes_a_stream_already_at_the_rate() {
        let mut gate = RateGate::new(Duration::from_millis(500));
        let times: Vec<u64> = (0..6).map(|i| 5 + i * 500).collect();
        assert_eq!(kept(&mut gate, times.clone()), times);
    }

    #[test]
    fn restarts_the_schedule_after_a_gap() {
        let mut gate = RateGate::new(Duration::from_secs(1));
        assert_eq!(
            kept(&mut gate, [0, 1000, 5300, 5400, 6300]),
            vec![0, 1000, 5300, 6300]
        );
    }
}
