//! Frame → encoder input, step for step as the model kit's reference
//! (`tools/vigil_kit/preprocess.py`), which the tests compare against:
//! fit (crop, letterbox or stretch), a separable triangle filter whose
//! support widens when shrinking (so downscaling averages, not aliases),
//! rounding to 8 bits, then per-channel normalisation into NCHW f32.

use super::metadata::{Fit, Preprocess};

/// One output pixel's taps: the first input index and the weights from it.
struct Taps {
    start: usize,
    weights: Vec<f64>,
}

/// Resampling taps mapping the input span `[offset, offset + extent)` of
/// an axis of `in_size` pixels onto `out_size` pixels.
fn taps(in_size: usize, out_size: usize, offset: f64, extent: f64) -> Vec<Taps> {
    let scale = extent / out_size as f64;
    let support = scale.max(1.0);
    (0..out_size)
        .map(|i| {
            let center = offset + (i as f64 + 0.5) * scale;
            let lo = ((center - support).floor().max(0.0)) as usize;
            let hi = ((center + support).ceil() as usize).min(in_size);
            let mut weights: Vec<f64> = (lo..hi)
                .map(|x| (1.0 - ((x as f64 + 0.5 - center).abs() / support)).max(0.0))
                .collect();
            let total: f64 = weights.iter().sum();
            if total > 0.0 {
                weights.iter_mut().for_each(|w| *w /= total);
            }
            Taps { start: lo, weights }
        })
        .collect()
}

/// Where the frame lands in the square input: source span and destination box.
struct Geometry {
    src: [f64; 4],
    dst: [usize; 4],
}

fn geometry(width: usize, height: usize, size: usize, fit: Fit) -> Geometry {
    let (w, h) = (width as f64, height as f64);
    match fit {
        Fit::Stretch => Geometry {
            src: [0.0, 0.0, w, h],
            dst: [0, 0, size, size],
        },
        Fit::Crop => {
            let side = w.min(h);
            Geometry {
                src: [(w - side) / 2.0, (h - side) / 2.0, side, side],
                dst: [0, 0, size, size],
            }
        }
        Fit::Letterbox => {
            // Python's round() rounds halves to even; so does this.
            let (dw, dh) = if width >= height {
                (
                    size,
                    ((size as f64 * h / w).round_ties_even() as usize).max(1),
                )
            } else {
                (
                    ((size as f64 * w / h).round_ties_even() as usize).max(1),
                    size,
                )
            };
            Geometry {
                src: [0.0, 0.0, w, h],
                dst: [(size - dw) / 2, (size - dh) / 2, dw, dh],
            }
        }
    }
}

/// Packed RGB `width × height` → packed RGB `size × size`.
pub fn to_input_image(
    rgb: &[u8],
    width: usize,
    height: usize,
    size: usize,
    pre: &Preprocess,
) -> Vec<u8> {
    assert_eq!(rgb.len(), width * height * 3, "packed RGB expected");
    let Geometry { src, dst } = geometry(width, height, size, pre.fit);
    let [dx, dy, dw, dh] = dst;
    let ty = taps(height, dh, src[1], src[3]);
    let tx = taps(width, dw, src[0], src[2]);

    // Vertical pass: dh rows of the full input width, in f64.
    let mut rows = vec![0f64; dh * width * 3];
    for (oy, t) in ty.iter().enumerate() {
        let out = &mut rows[oy * width * 3..(oy + 1) * width * 3];
        for (k, &w) in t.weights.iter().enumerate() {
            let line = &rgb[(t.start + k) * width * 3..(t.start + k + 1) * width * 3];
            for (o, &p) in out.iter_mut().zip(line) {
                *o += w * p as f64;
            }
        }
    }
    // Horizontal pass into the destination box, the rest filled.
    let mut image = Vec::with_capacity(size * size * 3);
    for _ in 0..size * size {
        image.extend_from_slice(&pre.fill);
    }
    for oy in 0..dh {
        let row = &rows[oy * width * 3..(oy + 1) * width * 3];
        for (ox, t) in tx.iter().enumerate() {
            let mut acc = [0f64; 3];
            for (k, &w) in t.weights.iter().enumerate() {
                let p = &row[(t.start + k) * 3..(t.start + k) * 3 + 3];
                acc[0] += w * p[0];
                acc[1] += w * p[1];
                acc[2] += w * p[2];
            }
            let at = ((dy + oy) * size + dx + ox) * 3;
            for c in 0..3 {
                image[at + c] = (acc[c] + 0.5).floor().clamp(0.0, 255.0) as u8;
            }
        }
    }
    image
}

/// Packed RGB `size × size` → NCHW f32 `(pixel - mean) / std`.
pub fn normalize(image: &[u8], size: usize, pre: &Preprocess) -> Vec<f32> {
    let plane = size * size;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in image.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = (px[c] as f32 - pre.mean[c]) / pre.std[c];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pre(fit: Fit) -> Preprocess {
        Preprocess {
            fit,
            fill: [0, 0, 0],
            mean: [0.0; 3],
            std: [1.0; 3],
        }
    }

    #[test]
    fn a_flat_image_stays_flat_at_any_scale() {
        let rgb: Vec<u8> = [10u8, 200, 90].repeat(640 * 480);
        for fit in [Fit::Crop, Fit::Stretch] {
            let out = to_input_image(&rgb, 640, 480, 224, &pre(fit));
            assert!(out.chunks(3).all(|p| p == [10, 200, 90]), "{fit:?}");
        }
    }

    #[test]
    fn letterbox_keeps_the_aspect_and_fills_the_rest() {
        let rgb = vec![255u8; 640 * 480 * 3];
        let out = to_input_image(&rgb, 640, 480, 224, &pre(Fit::Letterbox));
        // 640x480 → 224x168, centred: rows 28..196 are picture.
        let row = |y: usize| &out[y * 224 * 3..(y + 1) * 224 * 3];
        assert!(row(27).iter().all(|&v| v == 0));
        assert!(row(28).iter().all(|&v| v == 255));
        assert!(row(195).iter().all(|&v| v == 255));
        assert!(row(196).iter().all(|&v| v == 0));
    }

    #[test]
    fn downscaling_averages_instead_of_sampling() {
        // A one-pixel checkerboard shrunk 4x is mid grey, not black or white.
        let (w, h) = (64, 64);
        let rgb: Vec<u8> = (0..w * h)
            .flat_map(|i| {
                let v = if (i % w + i / w) % 2 == 0 { 255 } else { 0 };
                [v, v, v]
            })
            .collect();
        let out = to_input_image(&rgb, w, h, 16, &pre(Fit::Stretch));
        assert!(
            out.iter().all(|&v| (120..=135).contains(&v)),
            "{:?}",
            &out[..12]
        );
    }

    #[test]
    fn normalize_is_planar_and_per_channel() {
        let p = Preprocess {
            fit: Fit::Stretch,
            fill: [0; 3],
            mean: [127.0, 0.0, 100.0],
            std: [128.0, 1.0, 2.0],
        };
        let out = normalize(&[255, 3, 104], 1, &p);
        assert_eq!(out, vec![1.0, 3.0, 2.0]);
    }
}
