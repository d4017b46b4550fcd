//! One sampled picture: packed RGB pixels, when it was taken, and a slot
//! for the encoder features computed from it (filled once, by `vision`).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// A frame as stored in a ring. Shared as `Arc<Frame>`: readers never copy
/// pixels.
#[derive(Debug)]
pub struct Frame {
    /// Per-camera sequence number, counting from 0 when the camera starts.
    pub seq: u64,
    /// Stream time of the frame, monotonic across file loops; `None` when the
    /// source gave no timestamp.
    pub pts: Option<Duration>,
    /// Wall-clock capture time, for people and the event store.
    pub wall: SystemTime,
    /// Monotonic capture time, for windows ("the last 4 s").
    pub captured: Instant,
    pub width: u32,
    pub height: u32,
    /// Packed RGB, `width * height * 3` bytes, rows without padding.
    pub pixels: Vec<u8>,
    features: OnceLock<Arc<Features>>,
}

impl Frame {
    pub fn new(
        seq: u64,
        pts: Option<Duration>,
        wall: SystemTime,
        captured: Instant,
        width: u32,
        height: u32,
        pixels: Vec<u8>,
    ) -> Frame {
        debug_assert_eq!(pixels.len(), width as usize * height as usize * 3);
        Frame {
            seq,
            pts,
            wall,
            captured,
            width,
            height,
            pixels,
            features: OnceLock::new(),
        }
    }

    /// The cached encoder features, once computed.
    pub fn features(&self) -> Option<&Arc<Features>> {
        self.features.get()
    }

    /// Bytes this frame holds (pixels, plus features once attached).
    pub fn bytes(&self) -> usize {
        self.pixels.len() + self.features.get().map_or(0, |f| f.bytes())
    }

    /// Sets the features; false when they were already set (first one wins,
    /// since a frame is encoded once).
    pub(super) fn set_features(&self, features: Arc<Features>) -> bool {
        self.features.set(features).is_ok()
    }

    /// Milliseconds since the Unix epoch of `wall`.
    pub fn wall_ms(&self) -> u64 {
        self.wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// Encoder output for one frame, e.g. `[49, 1280]` for a 7×7 feature map.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    pub shape: Vec<usize>,
    pub data: FeatureData,
}

/// Features are kept as f32, or as f16 bits to halve the memory they take.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureData {
    F32(Vec<f32>),
    F16(Vec<u16>),
}

impl Features {
    pub fn bytes(&self) -> usize {
        match &self.data {
            FeatureData::F32(v) => v.len() * 4,
            FeatureData::F16(v) => v.len() * 2,
        }
    }
}
