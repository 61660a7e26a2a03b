//! Rendered slates shared by the broadcasts that need the same one, and rendered one at a
//! time.
//!
//! Rendering a slate costs 0.25 s of CPU at 720p and 0.5 s at 1080p (docs/PERFORMANCE.md).
//! Many streams start together (a gateway restart, an event) and most use the default image
//! at a handful of resolutions: without sharing, 200 encoders connecting within seconds would
//! mean a minute of CPU spent encoding the same picture 200 times, competing with their
//! media. So a slate is rendered once per (image, resolution, frame rate, audio layout), the
//! broadcasts asking for it meanwhile wait for that one render, and renders run one after
//! another on the blocking pool (never more than one core).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{OnceCell, Semaphore};

/// Distinct slates kept; beyond that the cache starts over (a slate is 15-30 KiB of H.264,
/// but each entry also stands for a render that is not repeated).
pub(crate) const MAX_CACHED_SLATES: usize = 32;

/// What a slate is rendered from: the image (its length and hash) and the media it must fit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    image_len: usize,
    image_hash: u64,
    width: u32,
    height: u32,
    milli_fps: u32,
    gop_ms: u128,
    audio: Option<(u32, u8)>,
}

type Cell = Arc<OnceCell<Result<Arc<slate::Slate>, String>>>;

/// The gateway's slate renders.
#[derive(Debug)]
pub(crate) struct SlateCache {
    slates: Mutex<HashMap<CacheKey, Cell>>,
    /// One render at a time.
    rendering: Semaphore,
}

impl Default for SlateCache {
    fn default() -> Self {
        SlateCache {
            slates: Mutex::default(),
            rendering: Semaphore::new(1),
        }
    }
}

impl SlateCache {
    /// The slate of `image` for `spec`: rendered now (after any render in progress), or the
    /// one rendered before. The error says why the image could not be used.
    pub(crate) async fn get(
        &self,
        image: &Bytes,
        spec: &slate::SlateSpec,
    ) -> Result<Arc<slate::Slate>, String> {
        let mut hasher = DefaultHasher::new();
        image.hash(&mut hasher);
        let key = CacheKey {
            image_len: image.len(),
            image_hash: hasher.finish(),
            width: spec.width,
            height: spec.height,
            milli_fps: (spec.frame_rate * 1000.0).round() as u32,
            gop_ms: spec.gop_duration.as_millis(),
            audio: spec.audio.map(|a| (a.sample_rate, a.channels)),
        };
        let cell = {
            let mut slates = self.slates.lock().unwrap_or_else(|e| e.into_inner());
            if slates.len() >= MAX_CACHED_SLATES && !slates.contains_key(&key) {
                slates.clear();
            }
            Arc::clone(slates.entry(key).or_default())
        };
        cell.get_or_init(|| async {
            let _one_at_a_time = self.rendering.acquire().await;
            let (image, spec) = (image.clone(), spec.clone());
            tokio::task::spawn_blocking(move || slate::Slate::render(&image, &spec))
                .await
                .map_err(|e| format!("the slate render failed: {e}"))
                .and_then(|r| r.map(Arc::new).map_err(|e| e.to_string()))
        })
        .await
        .clone()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn spec(width: u32) -> slate::SlateSpec {
        slate::SlateSpec {
            width,
            height: 360,
            frame_rate: 30.0,
            gop_duration: Duration::from_secs(2),
            audio: None,
        }
    }

    #[tokio::test]
    async fn one_render_per_image_and_media() {
        let cache = SlateCache::default();
        let image = Bytes::from_static(slate::default_image());
        let s640 = spec(640);
        let (a, b) = tokio::join!(cache.get(&image, &s640), cache.get(&image, &s640));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(Arc::ptr_eq(&a, &b), "rendered once for both");
        let other = cache.get(&image, &spec(480)).await.unwrap();
        assert!(!Arc::ptr_eq(&a, &other));
        let bad = cache
            .get(&Bytes::from_static(b"not an image"), &spec(640))
            .await;
        assert!(bad.is_err());
    }
}
