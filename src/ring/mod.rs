//! The per-camera ring buffer: the last few minutes of frames, bounded both
//! by age and by a memory budget.
//!
//! Policy when full: the oldest frames go first. Age is measured against the
//! newest frame, not the clock, so a camera that goes silent keeps showing
//! what it last saw. Readers get `Arc<Frame>`s, never copies of pixels.

mod frame;
mod thumbnail;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use frame::{FeatureData, Features, Frame};
pub use thumbnail::Thumbnail;

/// How much a ring may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingLimits {
    /// Frames older than this, relative to the newest one, are dropped.
    pub max_age: Duration,
    /// Total bytes of pixels and features.
    pub max_bytes: u64,
}

/// Counters of what the ring did, for status and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingStats {
    pub frames: usize,
    pub bytes: u64,
    /// Frames that aged out normally.
    pub expired: u64,
    /// Frames dropped early because the memory budget was reached.
    pub dropped: u64,
    /// Frames pushed since the ring was made.
    pub pushed: u64,
}

#[derive(Debug)]
pub struct Ring {
    limits: RingLimits,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    frames: VecDeque<Arc<Frame>>,
    stats: RingStats,
}

impl Ring {
    pub fn new(limits: RingLimits) -> Ring {
        Ring {
            limits,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn limits(&self) -> RingLimits {
        self.limits
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the deque half-edited
        // (every edit is a single push/pop), so a poisoned lock is still sound.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a frame as the newest and evicts what no longer fits.
    pub fn push(&self, frame: Frame) -> Arc<Frame> {
        let frame = Arc::new(frame);
        let mut inner = self.lock();
        inner.stats.bytes += frame.bytes() as u64;
        inner.stats.pushed += 1;
        inner.frames.push_back(Arc::clone(&frame));
        self.evict(&mut inner);
        frame
    }

    /// Attaches encoder features to a frame still in the ring, counting them
    /// against the budget. False if the frame already had features or has
    /// left the ring.
    pub fn attach_features(&self, frame: &Arc<Frame>, features: Features) -> bool {
        self.attach_shared(frame, Arc::new(features))
    }

    /// Like `attach_features`, with features another frame already holds
    /// (the same picture). They are counted against the budget again: the
    /// budget errs on the safe side when the first frame leaves.
    pub fn attach_shared(&self, frame: &Arc<Frame>, features: Arc<Features>) -> bool {
        let mut inner = self.lock();
        let present = inner.frames.iter().any(|f| Arc::ptr_eq(f, frame));
        let bytes = features.bytes() as u64;
        if !present || !frame.set_features(features) {
            return false;
        }
        inner.stats.bytes += bytes;
        self.evict(&mut inner);
        true
    }

    fn evict(&self, inner: &mut Inner) {
        let Some(newest) = inner.frames.back().map(|f| f.captured) else {
            return;
        };
        while let Some(oldest) = inner.frames.front() {
            let too_old = newest.duration_since(oldest.captured) > self.limits.max_age;
            // The newest frame always stays, even alone over budget: an
            // empty ring would hide that the camera works.
            let over_budget = inner.stats.bytes > self.limits.max_bytes && inner.frames.len() > 1;
            if !too_old && !over_budget {
                break;
            }
            let gone = inner.frames.pop_front().expect("front exists");
            inner.stats.bytes -= gone.bytes() as u64;
            if too_old {
                inner.stats.expired += 1;
            } else {
                inner.stats.dropped += 1;
            }
        }
    }

    /// The newest frame.
    pub fn newest(&self) -> Option<Arc<Frame>> {
        self.lock().frames.back().cloned()
    }

    /// The newest `n` frames, oldest first.
    pub fn latest(&self, n: usize) -> Vec<Arc<Frame>> {
        let inner = self.lock();
        let skip = inner.frames.len().saturating_sub(n);
        inner.frames.iter().skip(skip).cloned().collect()
    }

    /// Frames captured at or after `since`, oldest first.
    pub fn since(&self, since: Instant) -> Vec<Arc<Frame>> {
        let inner = self.lock();
        // Frames are in capture order, so the window is a suffix.
        let start = inner.frames.partition_point(|f| f.captured < since);
        inner.frames.range(start..).cloned().collect()
    }

    /// Frames captured within `span` before now, oldest first.
    pub fn window(&self, span: Duration) -> Vec<Arc<Frame>> {
        match Instant::now().checked_sub(span) {
            Some(since) => self.since(since),
            None => self.latest(usize::MAX),
        }
    }

    pub fn stats(&self) -> RingStats {
        let inner = self.lock();
        RingStats {
            frames: inner.frames.len(),
            ..inner.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn frame(seq: u64, at: Instant, bytes: usize) -> Frame {
        // 1 pixel wide so `bytes` can be any multiple of 3.
        let height = (bytes / 3) as u32;
        Frame::new(
            seq,
            Some(Duration::from_secs(seq)),
            SystemTime::now(),
            at,
            1,
            height,
            vec![0; bytes],
        )
    }

    fn limits(max_age_s: u64, max_bytes: u64) -> RingLimits {
        RingLimits {
            max_age: Duration::from_secs(max_age_s),
            max_bytes,
        }
    }

    #[test]
    fn keeps_only_the_configured_duration() {
        let ring = Ring::new(limits(10, u64::MAX));
        let t0 = Instant::now();
        for s in 0..30 {
            ring.push(frame(s, t0 + Duration::from_secs(s), 300));
        }
        let kept: Vec<u64> = ring.latest(100).iter().map(|f| f.seq).collect();
        assert_eq!(kept, (19..30).collect::<Vec<_>>());
        let stats = ring.stats();
        assert_eq!((stats.frames, stats.expired, stats.dropped), (11, 19, 0));
        assert_eq!(stats.bytes, 11 * 300);
    }

    #[test]
    fn memory_budget_drops_oldest_first() {
        let ring = Ring::new(limits(3600, 1000));
        let t0 = Instant::now();
        for s in 0..10 {
            ring.push(frame(s, t0 + Duration::from_secs(s), 300));
        }
        let kept: Vec<u64> = ring.latest(100).iter().map(|f| f.seq).collect();
        assert_eq!(kept, vec![7, 8, 9]);
        let stats = ring.stats();
        assert_eq!((stats.dropped, stats.expired, stats.bytes), (7, 0, 900));
    }

    #[test]
    fn a_frame_larger_than_the_budget_is_still_kept_alone() {
        let ring = Ring::new(limits(3600, 100));
        let t0 = Instant::now();
        ring.push(frame(0, t0, 300));
        ring.push(frame(1, t0 + Duration::from_secs(1), 300));
        assert_eq!(ring.latest(10).len(), 1);
        assert_eq!(ring.newest().unwrap().seq, 1);
    }

    #[test]
    fn features_count_against_the_budget() {
        let ring = Ring::new(limits(3600, 1000));
        let t0 = Instant::now();
        let a = ring.push(frame(0, t0, 300));
        let b = ring.push(frame(1, t0 + Duration::from_secs(1), 300));
        let features = Features {
            shape: vec![2, 50],
            data: FeatureData::F32(vec![0.5; 100]),
        };
        assert!(ring.attach_features(&b, features.clone()));
        assert!(!ring.attach_features(&b, features.clone()), "set once");
        assert_eq!(ring.stats().bytes, 1000);
        // 300 more bytes push the budget over: the oldest frame (a) goes.
        ring.push(frame(2, t0 + Duration::from_secs(2), 300));
        assert_eq!(ring.stats().bytes, 1000 - 300 + 300);
        assert!(!ring.attach_features(&a, features), "a left the ring");
        assert_eq!(b.features().unwrap().shape, vec![2, 50]);
    }

    #[test]
    fn window_queries_return_the_frames_in_the_window_without_copying() {
        let ring = Ring::new(limits(3600, u64::MAX));
        let t0 = Instant::now();
        for s in 0..10 {
            ring.push(frame(s, t0 + Duration::from_secs(s), 3));
        }
        let w: Vec<u64> = ring
            .since(t0 + Duration::from_millis(6500))
            .iter()
            .map(|f| f.seq)
            .collect();
        assert_eq!(w, vec![7, 8, 9]);
        assert_eq!(ring.since(t0 + Duration::from_secs(100)).len(), 0);
        let last3 = ring.latest(3);
        assert_eq!(
            last3.iter().map(|f| f.seq).collect::<Vec<_>>(),
            vec![7, 8, 9]
        );
        let again = ring.latest(1);
        assert!(Arc::ptr_eq(&last3[2], &again[0]), "same frame, not a copy");
        assert!(std::ptr::eq(
            last3[2].pixels.as_ptr(),
            again[0].pixels.as_ptr()
        ));
    }
}
