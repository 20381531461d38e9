//! Photo checks and thumbnailing.
//!
//! An upload is accepted only if its declared type is an image type we allow,
//! it is at most [`MAX_PHOTO_BYTES`], and it actually decodes (the declared type
//! alone proves nothing). GIF and WebP are allowed types but this build decodes
//! only JPEG and PNG, so such uploads are refused as undecodable.

use std::io::Cursor;

use image::{DynamicImage, ImageReader, Limits, codecs::jpeg::JpegEncoder};

pub const MAX_PHOTO_BYTES: usize = 5 * 1024 * 1024;
/// Longest side of a stored thumbnail.
pub const THUMB_MAX_SIDE: u32 = 256;
pub const ALLOWED_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];
/// A 5 MiB file can claim a huge canvas; refuse before allocating it.
const MAX_DECODE_SIDE: u32 = 12_000;
const MAX_DECODE_ALLOC: u64 = 256 * 1024 * 1024;

/// A file part from a form.
#[derive(Clone, Debug)]
pub struct Upload {
    pub content_type: Option<String>,
    pub bytes: bytes::Bytes,
    /// Set when the part was longer than [`MAX_PHOTO_BYTES`]; `bytes` is then truncated.
    pub too_large: bool,
}

/// Checks the cheap rules (type, size); the message is for the `photo` field.
pub fn check_declared(upload: &Upload) -> Result<(), String> {
    let ct = upload
        .content_type
        .as_deref()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if !ALLOWED_TYPES.contains(&ct.as_str()) {
        return Err(format!(
            "must be a JPEG, PNG, GIF or WebP image (got content type {:?})",
            if ct.is_empty() { "none" } else { &ct }
        ));
    }
    if upload.too_large || upload.bytes.len() > MAX_PHOTO_BYTES {
        return Err("must be at most 5 MiB".to_owned());
    }
    if upload.bytes.is_empty() {
        return Err("is empty".to_owned());
    }
    Ok(())
}

/// Decodes `bytes` and returns a JPEG thumbnail; CPU-bound, so call it off the async workers.
pub fn thumbnail_jpeg(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let img = decode(bytes).map_err(|e| format!("could not be decoded as an image ({e})"))?;
    let thumb = img.thumbnail(THUMB_MAX_SIDE, THUMB_MAX_SIDE);
    // JPEG has no alpha channel; flatten first.
    let rgb = DynamicImage::ImageRgb8(thumb.to_rgb8());
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 85)
        .encode_image(&rgb)
        .map_err(|e| format!("could not be re-encoded ({e})"))?;
    Ok(out)
}

fn decode(bytes: &[u8]) -> image::ImageResult<DynamicImage> {
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format()?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DECODE_SIDE);
    limits.max_image_height = Some(MAX_DECODE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_ALLOC);
    reader.limits(limits);
    reader.decode()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageFormat, RgbaImage};

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = RgbaImage::from_pixel(w, h, image::Rgba([10, 200, 30, 128]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn upload(ct: &str, bytes: Vec<u8>) -> Upload {
        Upload {
            content_type: Some(ct.to_owned()),
            bytes: bytes.into(),
            too_large: false,
        }
    }

    #[test]
    fn thumbnail_fits_and_keeps_aspect() {
        let jpg = thumbnail_jpeg(&png(600, 300)).unwrap();
        let t = image::load_from_memory(&jpg).unwrap();
        assert_eq!((t.width(), t.height()), (256, 128));
        assert_eq!(image::guess_format(&jpg).unwrap(), ImageFormat::Jpeg);
    }

    #[test]
    fn declared_checks() {
        assert!(check_declared(&upload("image/png; charset=x", png(2, 2))).is_ok());
        assert!(
            check_declared(&upload("text/plain", png(2, 2)))
                .unwrap_err()
                .contains("JPEG, PNG")
        );
        let mut big = upload("image/png", vec![0; 10]);
        big.too_large = true;
        assert!(check_declared(&big).unwrap_err().contains("5 MiB"));
        assert!(
            check_declared(&upload("image/png", vec![]))
                .unwrap_err()
                .contains("empty")
        );
    }

    #[test]
    fn garbage_does_not_decode() {
        assert!(
            thumbnail_jpeg(b"GIF89a not really")
                .unwrap_err()
                .contains("decoded")
        );
        assert!(thumbnail_jpeg(b"hello").is_err());
    }
}
