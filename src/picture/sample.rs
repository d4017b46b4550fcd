//! A GStreamer RGB sample as packed pixels (the ring's layout).

use gstreamer as gst;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::VideoFrameExt;

use super::PictureError;

/// The sample's width, height and RGB pixels with no row padding
/// (GStreamer pads RGB rows to 4 bytes; the ring's are packed).
pub fn packed_rgb(sample: &gst::Sample) -> Result<(u32, u32, Vec<u8>), PictureError> {
    let caps = sample.caps().ok_or(PictureError::Sample("no caps"))?;
    let info = gst_video::VideoInfo::from_caps(caps)
        .map_err(|_| PictureError::Sample("caps are not video"))?;
    if info.format() != gst_video::VideoFormat::Rgb {
        return Err(PictureError::Sample("not RGB"));
    }
    let buffer = sample.buffer().ok_or(PictureError::Sample("no buffer"))?;
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
        .map_err(|_| PictureError::Sample("buffer cannot be mapped"))?;
    let (width, height) = (info.width(), info.height());
    let row = width as usize * 3;
    let stride = frame.plane_stride()[0] as usize;
    let data = frame
        .plane_data(0)
        .map_err(|_| PictureError::Sample("no plane 0"))?;
    let mut pixels = Vec::with_capacity(row * height as usize);
    for y in 0..height as usize {
        pixels.extend_from_slice(&data[y * stride..y * stride + row]);
    }
    Ok((width, height, pixels))
}
