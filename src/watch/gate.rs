//! Change gating: when the frames a question would look at are the same
//! picture as at its last run (compared on [`Thumbnail`]s), the LM is not
//! run again and the question keeps its answer.

use crate::ring::Thumbnail;

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
    use crate::ring::Frame;
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
