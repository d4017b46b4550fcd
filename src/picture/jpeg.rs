//! JPEG snapshots of ring frames, encoded by GStreamer's own jpegenc.

use std::time::Duration;

use gstreamer as gst;
use gstreamer_video as gst_video;

use super::PictureError;
use crate::ring::Frame;

/// Encodes a frame as JPEG.
pub fn encode_jpeg(frame: &Frame) -> Result<Vec<u8>, PictureError> {
    super::init()?;
    let fail = PictureError::Encode;
    let info =
        gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, frame.width, frame.height)
            .build()
            .map_err(|e| fail(e.to_string()))?;
    // GStreamer's RGB rows are padded to 4 bytes; the ring's are packed.
    let stride = info.stride()[0] as usize;
    let row = frame.width as usize * 3;
    let mut padded = vec![0u8; info.size()];
    for (y, src) in frame.pixels.chunks_exact(row).enumerate() {
        padded[y * stride..y * stride + row].copy_from_slice(src);
    }
    let caps = info.to_caps().map_err(|e| fail(e.to_string()))?;
    let sample = gst::Sample::builder()
        .buffer(&gst::Buffer::from_mut_slice(padded))
        .caps(&caps)
        .build();
    let jpeg_caps = gst::Caps::builder("image/jpeg").build();
    let timeout = gst::ClockTime::from_nseconds(Duration::from_secs(10).as_nanos() as u64);
    let out = gst_video::convert_sample(&sample, &jpeg_caps, Some(timeout))
        .map_err(|e| fail(e.to_string()))?;
    let buffer = out.buffer().ok_or_else(|| fail("no output".into()))?;
    let map = buffer.map_readable().map_err(|e| fail(e.to_string()))?;
    Ok(map.as_slice().to_vec())
}
