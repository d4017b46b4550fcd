//! Change gating: when the frames a question would look at are the same
//! picture as at its last run, the LM is not run again and the question
//! keeps its answer. "The same" is measured on small grey thumbnails: the
//! fraction of thumbnail pixels whose grey level moved by more than
//! `NOISE` (so sensor noise and compression shimmer do not count).

use crate::ring::Frame;

/// Thumbnail side, in pixels.
const SIDE: usize = 32;
/// Grey-level steps a pixel may move without counting as changed.
const NOISE: u8 = 12;

/// A 32×32 grey picture of a frame (box-averaged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnail(Vec<u8>);

impl Thumbnail {
    pub fn of(frame: &Frame) -> Thumbnail {
        let (w, h) = (frame.width as usize, frame.height as usize);
        let mut out = Vec::with_capacity(SIDE * SIDE);
        for ty in 0..SIDE {
            let (y0, y1) = (ty * h / SIDE, ((ty + 1) * h / SIDE).max(ty * h / SIDE + 1));
            for tx in 0..SIDE {
                let (x0, x1) = (tx * w / SIDE, ((tx + 1) * w / SIDE).max(tx * w / SIDE + 1));
                // Up to 4×4 samples per cell is plenty for a change test.
                let (sy, sx) = ((y1 - y0).div_ceil(4), (x1 - x0).div_ceil(4));
                let (mut sum, mut n) = (0u32, 0u32);
                for y in (y0..y1.min(h)).step_by(sy.max(1)) {
                    for x in (x0..x1.min(w)).step_by(sx.max(1)) {
                        let p = &frame.pixels[(y * w + x) * 3..][..3];
                        // ITU-R BT.601 luma, integer weights summing to 256.
                        sum += (77 * p[0] as u32 + 150 * p[1] as u32 + 29 * p[2] as u32) >> 8;
                        n += 1;
                    }
                }
                out.push((sum / n.max(1)) as u8);
            }
        }
        Thumbnail(out)
    }

    /// Fraction of pixels that moved by more than the noise allowance.
    pub fn changed_fraction(&self, other: &Thumbnail) -> f64 {
        let changed = self
            .0
            .iter()
            .zip(&other.0)
            .filter(|(a, b)| a.abs_diff(**b) > NOISE)
            .count();
        changed as f64 / self.0.len().max(1) as f64
    }
}

/// Remembers what one question last ran on.
#[derive(Debug, Default)]
pub struct Gate {
    last: Option<Vec<Thumbnail>>,
}

impl Gate {
    /// True when `frames` differ from the last run's by at least
    /// `threshold` (any frame, position by position), or the window now
    /// holds a different number of frames. A threshold of 0 always runs.
    pub fn changed(&self, thumbnails: &[Thumbnail], threshold: f64) -> bool {
        if threshold <= 0.0 {
            return true;
        }
        match &self.last {
            None => true,
            Some(last) if last.len() != thumbnails.len() => true,
            Some(last) => last
                .iter()
                .zip(thumbnails)
                .any(|(a, b)| a.changed_fraction(b) >= threshold),
        }
    }

    /// Records the frames the LM just ran on.
    pub fn ran_on(&mut self, thumbnails: Vec<Thumbnail>) {
        self.last = Some(thumbnails);
    }

    /// Forgets the last run (e.g. after a failed one).
    pub fn reset(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Instant, SystemTime};

    fn frame(w: u32, h: u32, paint: impl Fn(usize, usize) -> u8) -> Frame {
        let mut pixels = Vec::with_capacity((w * h * 3) as usize);
        for y in 0..h as usize {
            for x in 0..w as usize {
                let v = paint(x, y);
                pixels.extend([v, v, v]);
            }
        }
        Frame::new(0, None, SystemTime::now(), Instant::now(), w, h, pixels)
    }

    #[test]
    fn noise_does_not_count_and_an_object_does() {
        let base = Thumbnail::of(&frame(320, 240, |x, y| ((x + y) % 200) as u8));
        // ±5 grey levels of noise everywhere.
        let noisy = Thumbnail::of(&frame(320, 240, |x, y| {
            (((x + y) % 200) as i32 + if (x * 7 + y * 13) % 3 == 0 { 5 } else { -5 }).clamp(0, 255)
                as u8
        }));
        assert_eq!(base.changed_fraction(&noisy), 0.0);
        // A bright 40×40 object: 1/8 × 1/6 of the picture.
        let object = Thumbnail::of(&frame(320, 240, |x, y| {
            if (100..140).contains(&x) && (100..140).contains(&y) {
                255
            } else {
                ((x + y) % 200) as u8
            }
        }));
        let f = base.changed_fraction(&object);
        assert!((0.015..0.04).contains(&f), "changed fraction {f}");

        let mut gate = Gate::default();
        assert!(gate.changed(std::slice::from_ref(&base), 0.005));
        gate.ran_on(vec![base.clone()]);
        assert!(!gate.changed(std::slice::from_ref(&noisy), 0.005));
        assert!(gate.changed(std::slice::from_ref(&object), 0.005));
        assert!(gate.changed(&[base.clone(), base.clone()], 0.005));
        assert!(gate.changed(&[base], 0.0), "threshold 0 turns gating off");
    }
}
