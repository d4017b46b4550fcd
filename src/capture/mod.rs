//! capture: GStreamer pipelines that sample each camera into its ring.
//!
//! Public face: [`Camera`] (a supervised capture thread per camera),
//! and [`probe()`] (what `vigil probe` runs). Still pictures in and out
//! are [`crate::picture`]'s.

mod backoff;
mod camera;
mod error;
mod pipeline;
mod probe;
mod rate;
mod session;

pub use backoff::Backoff;
pub use camera::{
    CAMERA_METRICS, Camera, CameraState, CameraStatus, FrameObserver, RingStatusView,
};
pub use error::{CaptureError, package_for};
pub use pipeline::describe;
pub use probe::{ProbeError, ProbeOptions, probe};
pub use session::init;
