//! A small grey picture of a frame, to tell cheaply whether two frames show
//! the same scene: the fraction of its pixels whose grey level moved by
//! more than `NOISE` (so sensor noise and compression shimmer do not
//! count). Used by change gating (watch) and by the encoder's reuse of
//! features for unchanged frames (vision).

use super::Frame;

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
