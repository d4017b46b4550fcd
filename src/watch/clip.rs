//! From a camera's ring to the K/V of a media chunk: the frames of a
//! window, their cached features, the resampler's visual tokens and the
//! blocks' keys and values. Questions on the same camera and window at the
//! same moment see the same frames, so the result is cached by the frames'
//! sequence numbers and shared.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::error::ClipError;
use crate::config::Window;
use crate::lm::{MediaKv, Session, Visual};
use crate::ring::{Frame, Ring};
use crate::vision::{Resampler, VisionWorker};

/// Clips kept for reuse (each a few MB of K/V at most).
const CACHED_CLIPS: usize = 8;

/// The frames of `window` in `ring`, oldest first, at most `max_frames`
/// (evenly spaced, always ending with the newest).
pub fn frames(ring: &Ring, window: Window, max_frames: usize) -> Vec<Arc<Frame>> {
    let all = match window {
        Window::Frames(n) => ring.latest(n as usize),
        Window::Span(span) => ring.window(span),
    };
    thin(all, max_frames)
}

fn thin(frames: Vec<Arc<Frame>>, max: usize) -> Vec<Arc<Frame>> {
    let n = frames.len();
    if n <= max || max == 0 {
        return frames;
    }
    if max == 1 {
        return frames.into_iter().skip(n - 1).collect();
    }
    (0..max)
        .map(|i| Arc::clone(&frames[i * (n - 1) / (max - 1)]))
        .collect()
}

/// A media chunk ready for a prompt.
pub struct Clip {
    pub kv: Arc<MediaKv>,
    pub frames: Vec<Arc<Frame>>,
    /// Time spent on features, resampling and K/V; 0 when cached.
    pub resample_ms: f64,
}

#[derive(Default)]
pub struct ClipCache {
    entries: VecDeque<(String, Vec<u64>, Arc<MediaKv>)>,
    pub hits: u64,
}

impl ClipCache {
    /// The clip for `frames` of `camera`, computed unless cached.
    pub fn get(
        &mut self,
        camera: &str,
        ring: &Arc<Ring>,
        frames: Vec<Arc<Frame>>,
        vision: &VisionWorker,
        resampler: &Resampler,
        session: &Session<'_>,
    ) -> Result<Clip, ClipError> {
        let seqs: Vec<u64> = frames.iter().map(|f| f.seq).collect();
        if let Some((_, _, kv)) = self
            .entries
            .iter()
            .find(|(c, s, _)| c == camera && *s == seqs)
        {
            self.hits += 1;
            return Ok(Clip {
                kv: Arc::clone(kv),
                frames,
                resample_ms: 0.0,
            });
        }
        let started = Instant::now();
        let mut features = Vec::with_capacity(frames.len());
        let mut kept = Vec::with_capacity(frames.len());
        for frame in frames {
            match vision.ensure(ring, &frame) {
                Ok(Some(f)) => {
                    features.push(f);
                    kept.push(frame);
                }
                // The frame left the ring while we looked: skip it.
                Ok(None) => {}
                Err(source) => {
                    return Err(ClipError::Encode {
                        seq: frame.seq,
                        source,
                    });
                }
            }
        }
        if kept.is_empty() {
            return Err(ClipError::LeftRing);
        }
        let _exclusive = vision.exclusive();
        let refs: Vec<_> = features.iter().map(|f| f.as_ref()).collect();
        let tokens = resampler.resample(&refs).map_err(ClipError::Resample)?;
        let kv = session
            .media(Visual {
                data: &tokens.data,
                n_tokens: tokens.n,
                dim: tokens.dim,
            })
            .map_err(ClipError::Media)?;
        let seqs: Vec<u64> = kept.iter().map(|f| f.seq).collect();
        if self.entries.len() >= CACHED_CLIPS {
            self.entries.pop_front();
        }
        self.entries
            .push_back((camera.to_string(), seqs, Arc::clone(&kv)));
        Ok(Clip {
            kv,
            frames: kept,
            resample_ms: started.elapsed().as_secs_f64() * 1000.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn thinning_keeps_the_ends_and_spaces_evenly() {
        let frames: Vec<Arc<Frame>> = (0..10)
            .map(|seq| {
                Arc::new(Frame::new(
                    seq,
                    None,
                    SystemTime::now(),
                    Instant::now(),
                    1,
                    1,
                    vec![0; 3],
                ))
            })
            .collect();
        let seqs = |f: Vec<Arc<Frame>>| f.iter().map(|f| f.seq).collect::<Vec<_>>();
        assert_eq!(seqs(thin(frames.clone(), 4)), vec![0, 3, 6, 9]);
        assert_eq!(seqs(thin(frames.clone(), 1)), vec![9]);
        assert_eq!(seqs(thin(frames.clone(), 16)).len(), 10);
    }
}
