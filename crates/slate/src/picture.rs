//! From image file to encoder input: decoding a PNG or JPEG within limits, letterboxing it
//! onto a black canvas of the stream's size, and converting it to BT.709 I420.

use std::io::Cursor;

use zune_core::bytestream::ZCursor;
use zune_core::colorspace::ColorSpace;
use zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

use crate::error::SlateError;
use crate::{MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS};

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
const JPEG_SOI: &[u8] = &[0xff, 0xd8, 0xff];

/// An 8-bit RGB picture, rows packed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rgb {
    pub(crate) width: usize,
    pub(crate) height: usize,
    pub(crate) data: Vec<u8>,
}

/// Decodes a PNG or JPEG file into RGB, compositing any alpha channel onto black. The size of
/// the file and the pixel count from its header are checked before anything is allocated for
/// the pixels.
pub(crate) fn decode(image: &[u8]) -> Result<Rgb, SlateError> {
    if image.len() > MAX_IMAGE_BYTES {
        return Err(SlateError::ImageTooLarge {
            bytes: image.len(),
            max: MAX_IMAGE_BYTES,
        });
    }
    if image.starts_with(PNG_SIGNATURE) {
        decode_png(image)
    } else if image.starts_with(JPEG_SOI) {
        decode_jpeg(image)
    } else {
        Err(SlateError::UnsupportedFormat)
    }
}

fn check_pixels(width: u64, height: u64) -> Result<(), SlateError> {
    if width == 0 || height == 0 || width.saturating_mul(height) > MAX_IMAGE_PIXELS {
        return Err(SlateError::TooManyPixels {
            width,
            height,
            max: MAX_IMAGE_PIXELS,
        });
    }
    Ok(())
}

fn decode_png(data: &[u8]) -> Result<Rgb, SlateError> {
    let err = |e: png::DecodingError| SlateError::Decode {
        format: "PNG",
        reason: e.to_string(),
    };
    // The IHDR chunk comes first (signature, length, "IHDR", width, height): refuse a huge
    // picture by its header, before the decoder sizes anything from it.
    if let (Some(b"IHDR"), Some(w), Some(h)) =
        (data.get(12..16), data.get(16..20), data.get(20..24))
    {
        let dim = |b: &[u8]| u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        check_pixels(dim(w), dim(h))?;
    }
    let mut decoder = png::Decoder::new_with_limits(
        Cursor::new(data),
        png::Limits {
            // Room for the largest allowed picture at 16 bits per RGBA sample.
            bytes: (MAX_IMAGE_PIXELS * 8) as usize,
        },
    );
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(err)?;
    let (width, height) = (reader.info().width, reader.info().height);
    check_pixels(width.into(), height.into())?;
    let size = reader
        .output_buffer_size()
        .ok_or(SlateError::TooManyPixels {
            width: width.into(),
            height: height.into(),
            max: MAX_IMAGE_PIXELS,
        })?;
    let mut buf = vec![0; size];
    let frame = reader.next_frame(&mut buf).map_err(err)?;
    let channels = frame.color_type.samples();
    let (width, height) = (frame.width as usize, frame.height as usize);
    if frame.bit_depth != png::BitDepth::Eight || frame.line_size != width * channels {
        return Err(SlateError::Decode {
            format: "PNG",
            reason: format!(
                "unexpected output layout {:?}/{:?}",
                frame.color_type, frame.bit_depth
            ),
        });
    }
    buf.truncate(frame.buffer_size());
    Ok(to_rgb(buf, channels, width, height))
}

fn decode_jpeg(data: &[u8]) -> Result<Rgb, SlateError> {
    let err = |e: zune_jpeg::errors::DecodeErrors| SlateError::Decode {
        format: "JPEG",
        reason: e.to_string(),
    };
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(ColorSpace::RGB)
        .set_max_width(usize::from(u16::MAX))
        .set_max_height(usize::from(u16::MAX));
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(data), options);
    decoder.decode_headers().map_err(err)?;
    let (width, height) = decoder.dimensions().ok_or_else(|| SlateError::Decode {
        format: "JPEG",
        reason: "no frame header".into(),
    })?;
    check_pixels(width as u64, height as u64)?;
    let pixels = decoder.decode().map_err(err)?;
    if pixels.len() != width * height * 3 {
        return Err(SlateError::Decode {
            format: "JPEG",
            reason: format!("{} bytes decoded for {width}x{height} RGB", pixels.len()),
        });
    }
    Ok(Rgb {
        width,
        height,
        data: pixels,
    })
}

/// Gray, gray+alpha, RGB or RGBA samples to RGB, in place; alpha is composited onto black
/// (the slate's canvas colour).
fn to_rgb(mut buf: Vec<u8>, channels: usize, width: usize, height: usize) -> Rgb {
    let pixels = width * height;
    let over_black = |c: u8, a: u8| ((u16::from(c) * u16::from(a) + 127) / 255) as u8;
    match channels {
        1 => {
            buf.resize(pixels * 3, 0);
            for i in (0..pixels).rev() {
                let g = buf[i];
                buf[i * 3..i * 3 + 3].fill(g);
            }
        }
        2 => {
            buf.resize(pixels * 3, 0);
            for i in (0..pixels).rev() {
                let g = over_black(buf[i * 2], buf[i * 2 + 1]);
                buf[i * 3..i * 3 + 3].fill(g);
            }
        }
        4 => {
            for i in 0..pixels {
                let a = buf[i * 4 + 3];
                for c in 0..3 {
                    buf[i * 3 + c] = over_black(buf[i * 4 + c], a);
                }
            }
            buf.truncate(pixels * 3);
        }
        _ => {}
    }
    Rgb {
        width,
        height,
        data: buf,
    }
}

/// Scales `picture` to fit `width` x `height` keeping its aspect ratio, centred on black.
pub(crate) fn letterbox(picture: &Rgb, width: usize, height: usize) -> Rgb {
    let scale = f64::min(
        width as f64 / picture.width as f64,
        height as f64 / picture.height as f64,
    );
    let fit_w = ((picture.width as f64 * scale).round() as usize).clamp(1, width);
    let fit_h = ((picture.height as f64 * scale).round() as usize).clamp(1, height);
    let scaled = if (fit_w, fit_h) == (picture.width, picture.height) {
        None
    } else {
        Some(resize(picture, fit_w, fit_h))
    };
    let scaled = scaled.as_ref().unwrap_or(picture);
    if (fit_w, fit_h) == (width, height) {
        return scaled.clone();
    }
    let mut canvas = vec![0u8; width * height * 3];
    let (left, top) = ((width - fit_w) / 2, (height - fit_h) / 2);
    for (y, row) in scaled.data.chunks_exact(fit_w * 3).enumerate() {
        let at = ((top + y) * width + left) * 3;
        canvas[at..at + fit_w * 3].copy_from_slice(row);
    }
    Rgb {
        width,
        height,
        data: canvas,
    }
}

/// The input samples and weights of one output sample.
struct Taps {
    start: usize,
    weights: Vec<f32>,
}

/// Triangle-filter taps for resampling `src` samples to `dst`: bilinear when enlarging, and
/// averaging over the whole footprint of an output sample when reducing (no aliasing of thin
/// lines and text, which a slate is mostly made of).
fn taps(src: usize, dst: usize) -> Vec<Taps> {
    let ratio = src as f64 / dst as f64;
    let support = ratio.max(1.0);
    (0..dst)
        .map(|o| {
            let center = (o as f64 + 0.5) * ratio;
            let start = ((center - support).floor().max(0.0)) as usize;
            let end = ((center + support).ceil() as usize).min(src);
            let mut weights: Vec<f32> = (start..end)
                .map(|i| (1.0 - ((i as f64 + 0.5 - center) / support).abs()).max(0.0) as f32)
                .collect();
            let sum: f32 = weights.iter().sum();
            if sum > 0.0 {
                weights.iter_mut().for_each(|w| *w /= sum);
                Taps { start, weights }
            } else {
                Taps {
                    start: (center as usize).min(src - 1),
                    weights: vec![1.0],
                }
            }
        })
        .collect()
}

fn resize(picture: &Rgb, width: usize, height: usize) -> Rgb {
    let to_u8 = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    // Horizontally first, into an 8-bit intermediate of the source's height.
    let x_taps = taps(picture.width, width);
    let mut wide = vec![0u8; picture.height * width * 3];
    for (src_row, dst_row) in picture
        .data
        .chunks_exact(picture.width * 3)
        .zip(wide.chunks_exact_mut(width * 3))
    {
        for (t, out) in x_taps.iter().zip(dst_row.chunks_exact_mut(3)) {
            let src = &src_row[t.start * 3..(t.start + t.weights.len()) * 3];
            let mut acc = [0f32; 3];
            for (w, p) in t.weights.iter().zip(src.chunks_exact(3)) {
                acc[0] += f32::from(p[0]) * w;
                acc[1] += f32::from(p[1]) * w;
                acc[2] += f32::from(p[2]) * w;
            }
            out.copy_from_slice(&acc.map(to_u8));
        }
    }
    // Then vertically, a whole row at a time.
    let row_len = width * 3;
    let mut out = vec![0u8; height * row_len];
    let mut acc = vec![0f32; row_len];
    for (t, dst_row) in taps(picture.height, height)
        .iter()
        .zip(out.chunks_exact_mut(row_len))
    {
        acc.fill(0.0);
        for (i, w) in t.weights.iter().enumerate() {
            let src_row = &wide[(t.start + i) * row_len..(t.start + i + 1) * row_len];
            for (a, &p) in acc.iter_mut().zip(src_row) {
                *a += f32::from(p) * w;
            }
        }
        for (d, &a) in dst_row.iter_mut().zip(&acc) {
            *d = to_u8(a);
        }
    }
    Rgb {
        width,
        height,
        data: out,
    }
}

/// Converts to I420 (planar Y, then U and V at half resolution) with the BT.709 matrix in
/// limited range, which the encoder signals in the SPS (so black is Y=16, U=V=128).
/// `width` and `height` must be even.
pub(crate) fn to_i420(picture: &Rgb) -> Vec<u8> {
    let (w, h) = (picture.width, picture.height);
    let mut out = vec![0u8; w * h * 3 / 2];
    let (luma, chroma) = out.split_at_mut(w * h);
    let (u_plane, v_plane) = chroma.split_at_mut(w * h / 4);
    let px = |x: usize, y: usize| {
        let i = (y * w + x) * 3;
        let d = &picture.data[i..i + 3];
        [f32::from(d[0]), f32::from(d[1]), f32::from(d[2])]
    };
    let scale = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    for y in 0..h {
        for x in 0..w {
            let [r, g, b] = px(x, y);
            luma[y * w + x] = scale(16.0 + (0.2126 * r + 0.7152 * g + 0.0722 * b) * 219.0 / 255.0);
        }
    }
    for cy in 0..h / 2 {
        for cx in 0..w / 2 {
            let mut sum = [0f32; 3];
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let p = px(cx * 2 + dx, cy * 2 + dy);
                (0..3).for_each(|c| sum[c] += p[c] / 4.0);
            }
            let [r, g, b] = sum;
            let i = cy * (w / 2) + cx;
            u_plane[i] = scale(128.0 + (-0.114_572 * r - 0.385_428 * g + 0.5 * b) * 224.0 / 255.0);
            v_plane[i] = scale(128.0 + (0.5 * r - 0.454_153 * g - 0.045_847 * b) * 224.0 / 255.0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(width: usize, height: usize, rgb: [u8; 3]) -> Rgb {
        Rgb {
            width,
            height,
            data: rgb.repeat(width * height),
        }
    }

    #[test]
    fn letterbox_keeps_aspect_and_centres_on_black() {
        // A 4:3 white picture on a 16:9 canvas: 480x360, pillarboxed by 80 columns a side.
        let boxed = letterbox(&solid(400, 300, [255; 3]), 640, 360);
        assert_eq!((boxed.width, boxed.height), (640, 360));
        let at = |x: usize, y: usize| &boxed.data[(y * 640 + x) * 3..(y * 640 + x) * 3 + 3];
        assert_eq!(at(79, 180), [0, 0, 0]);
        assert_eq!(at(80, 180), [255, 255, 255]);
        assert_eq!(at(559, 0), [255, 255, 255]);
        assert_eq!(at(560, 359), [0, 0, 0]);
        // A very wide one: letterboxed top and bottom.
        let boxed = letterbox(&solid(1000, 100, [10, 20, 30]), 200, 200);
        assert_eq!(&boxed.data[..3], [0, 0, 0]);
        let mid = (100 * 200 + 100) * 3;
        assert_eq!(&boxed.data[mid..mid + 3], [10, 20, 30]);
    }

    #[test]
    fn resampling_preserves_flat_colour_and_averages_when_reducing() {
        let flat = resize(&solid(37, 23, [200, 100, 50]), 101, 7);
        assert!(flat.data.chunks(3).all(|p| p == [200, 100, 50]));
        // Alternating black and white columns reduced 4x: mid grey, not aliased stripes.
        let mut stripes = solid(64, 4, [0; 3]);
        for (i, p) in stripes.data.chunks_mut(3).enumerate() {
            if i % 2 == 0 {
                p.fill(255);
            }
        }
        let reduced = resize(&stripes, 16, 4);
        assert!(
            reduced.data.iter().all(|&v| (110..=145).contains(&v)),
            "{:?}",
            &reduced.data[..12]
        );
    }

    #[test]
    fn bt709_limited_range() {
        let yuv = to_i420(&solid(2, 2, [0, 0, 0]));
        assert_eq!(yuv, [16, 16, 16, 16, 128, 128]);
        let yuv = to_i420(&solid(2, 2, [255, 255, 255]));
        assert_eq!(yuv, [235, 235, 235, 235, 128, 128]);
        let red = to_i420(&solid(2, 2, [255, 0, 0]));
        assert_eq!((red[0], red[4], red[5]), (63, 102, 240));
    }

    #[test]
    fn alpha_is_composited_onto_black() {
        let rgb = to_rgb(vec![255, 255, 255, 128, 10, 20, 30, 255], 4, 2, 1);
        assert_eq!(rgb.data, [128, 128, 128, 10, 20, 30]);
        let rgb = to_rgb(vec![200, 0, 100, 255], 2, 2, 1);
        assert_eq!(rgb.data, [0, 0, 0, 100, 100, 100]);
    }
}
