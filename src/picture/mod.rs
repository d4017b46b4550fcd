//! picture: still pictures in and out of [`Frame`]s, with GStreamer's own
//! decoders and encoder: an image file decoded for few-shot examples and
//! datasets ([`load_rgb`]), a frame encoded as a JPEG snapshot
//! ([`encode_jpeg`]), and a GStreamer RGB sample copied into packed pixels
//! ([`packed_rgb`], which cameras use too).
//!
//! A leaf above `ring`: capture, watch, api, output and eval use it; it
//! uses none of them.
//!
//! [`Frame`]: crate::ring::Frame

mod decode;
mod error;
mod jpeg;
mod sample;

pub use decode::load_rgb;
pub use error::PictureError;
pub use jpeg::encode_jpeg;
pub use sample::packed_rgb;

fn init() -> Result<(), PictureError> {
    gstreamer::init().map_err(|e| PictureError::Init(e.to_string()))
}
