//! What playback serves of a broadcast's recording, by one of its asset's playback IDs: the
//! whole broadcast so far while it is live (DVR: the recording's event playlist, from its
//! first segment), then on demand (the same playlist, ended with `EXT-X-ENDLIST`).
//!
//! Everything comes from the recording on disk (`stream.m3u8` and `{N}.ts` in the broadcast's
//! directory, see `recording`) and from the asset's measured media in the store (the
//! multivariant playlist's codecs, bandwidth and resolution). Segment URIs are
//! `{asset_id}/{N}.ts` relative to the media playlist, like a live stream's
//! `{broadcast_id}/{N}.ts` (the asset's ID is its broadcast's).

use std::path::PathBuf;

use hls::{render_multivariant, Variant};
use store::AssetMedia;

/// An asset's recording, as playback finds it.
#[derive(Debug, Clone)]
pub struct RecordedView {
    asset_id: String,
    dir: PathBuf,
    media: AssetMedia,
    live: bool,
}

impl RecordedView {
    pub(crate) fn new(asset_id: String, dir: PathBuf, media: AssetMedia, live: bool) -> Self {
        RecordedView {
            asset_id,
            dir,
            media,
            live,
        }
    }

    /// The asset (and broadcast) ID: segment URIs carry it.
    pub fn asset_id(&self) -> &str {
        &self.asset_id
    }

    /// Whether the broadcast is still going on (the playlist still grows).
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// The multivariant playlist for `playback_id` (its media playlist is
    /// `{playback_id}/stream.m3u8`), from the asset's measured media.
    pub fn multivariant(&self, playback_id: &str) -> String {
        let m = &self.media;
        render_multivariant(&[Variant {
            bandwidth: m.bandwidth,
            average_bandwidth: Some(m.average_bandwidth),
            codecs: m.codecs.clone(),
            resolution: m.video.as_ref().map(|v| (v.width, v.height)),
            frame_rate: m.video.as_ref().and_then(|v| v.frame_rate),
            uri: format!("{playback_id}/stream.m3u8"),
        }])
    }

    /// The media playlist: the recording's, with segment URIs made relative to
    /// `/{playback_id}/stream.m3u8`. `None` while nothing is recorded yet.
    pub async fn media_playlist(&self) -> std::io::Result<Option<String>> {
        let text = match tokio::fs::read_to_string(self.dir.join("stream.m3u8")).await {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(self.rewrite(&text)))
    }

    fn rewrite(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() + text.len() / 8);
        for line in text.lines() {
            if !line.is_empty() && !line.starts_with('#') {
                out.push_str(&self.asset_id);
                out.push('/');
            }
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    /// Where segment `file` (`{N}.ts`) of this recording is, if `file` names one.
    pub fn segment_path(&self, file: &str) -> Option<PathBuf> {
        let n = file.strip_suffix(".ts")?;
        (!n.is_empty() && n.len() <= 20 && n.bytes().all(|b| b.is_ascii_digit()))
            .then(|| self.dir.join(file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::VideoMedia;

    fn view() -> RecordedView {
        RecordedView::new(
            "A1".into(),
            PathBuf::from("/rec/LS/A1"),
            AssetMedia {
                codecs: "avc1.64001f,mp4a.40.2".into(),
                bandwidth: 2_000_000,
                average_bandwidth: 1_500_000,
                video: Some(VideoMedia {
                    width: 1280,
                    height: 720,
                    frame_rate: Some(30.0),
                }),
                ..AssetMedia::default()
            },
            false,
        )
    }

    #[test]
    fn playlists_point_at_the_asset() {
        let v = view();
        assert_eq!(
            v.rewrite("#EXTM3U\n#EXTINF:2.000,\n0.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:2.000,\n1.ts\n#EXT-X-ENDLIST\n"),
            "#EXTM3U\n#EXTINF:2.000,\nA1/0.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:2.000,\nA1/1.ts\n#EXT-X-ENDLIST\n"
        );
        let master = v.multivariant("P1");
        assert!(master.contains("RESOLUTION=1280x720"), "{master}");
        assert!(
            master.contains("CODECS=\"avc1.64001f,mp4a.40.2\""),
            "{master}"
        );
        assert!(master.ends_with("\nP1/stream.m3u8\n"), "{master}");
    }

    #[test]
    fn only_numbered_segments() {
        let v = view();
        assert_eq!(
            v.segment_path("12.ts"),
            Some(PathBuf::from("/rec/LS/A1/12.ts"))
        );
        for bad in ["stream.m3u8", "../x.ts", ".ts", "1a.ts", "12.TS"] {
            assert_eq!(v.segment_path(bad), None, "{bad}");
        }
    }
}
