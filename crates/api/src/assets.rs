//! The asset handlers: the recordings of broadcasts (one asset per broadcast, its ID the
//! broadcast's; see [`store::Asset`]), their playback IDs and their input info.
//!
//! The store creates assets and completes them with the broadcast lifecycle; the API only
//! reads them, edits their `passthrough` and `meta`, adds and removes playback IDs, and
//! deletes them with their media.

use std::collections::HashMap;
use std::io::ErrorKind;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use serde_json::{Map, Value};
use store::{
    Asset, AssetPatch, AssetQuery, AssetTrack, PlaybackId, Store, DEFAULT_ASSET_LIST_LIMIT,
    MAX_ASSET_LIST_LIMIT,
};
use utoipa::ToSchema;

use crate::body::{decode, read_object};
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::handlers::{
    data, no_content, parse_page_param, playback_id_not_found, read_policy, ApiResult, MAX_PAGE,
};
use crate::openapi::{CreatePlaybackIdRequest, Data};
use crate::ApiState;

fn asset_not_found() -> ApiError {
    ApiError::NotFound("asset not found".to_owned())
}

impl ApiState {
    async fn asset(&self, id: &str) -> Result<Asset, ApiError> {
        self.store()
            .get_asset(id)
            .await?
            .ok_or_else(asset_not_found)
    }
}

/// `GET /assets?limit=&page=&cursor=&live_stream_id=`: newest first, with `next_cursor`
/// (`null` on the last page), which the official SDKs follow while it is non-empty.
#[utoipa::path(
    get,
    path = "/video/v1/assets",
    tag = "assets",
    operation_id = "list-assets",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size (default 25)"), ("page" = Option<u32>, Query, minimum = 1, maximum = 2147483647, description = "Page number, from 1"), ("cursor" = Option<String>, Query, pattern = "^([1-9][0-9]{0,17})?$", description = "The `next_cursor` of the previous page"), ("live_stream_id" = Option<String>, Query, description = "Only the recordings of this live stream"), ("upload_id" = Option<String>, Query, description = "Only assets of this direct upload (OnAir has none)")),
    responses((status = 200, description = "A page of assets, newest first", body = AssetList))
)]
pub(crate) async fn list_assets(
    State(api): State<ApiState>,
    ApiQuery(query): ApiQuery<HashMap<String, String>>,
) -> ApiResult {
    let limit = parse_page_param(
        &query,
        "limit",
        DEFAULT_ASSET_LIST_LIMIT,
        MAX_ASSET_LIST_LIMIT,
    )?;
    let page = parse_page_param(&query, "page", 1, MAX_PAGE)?;
    let non_empty = |name: &str| query.get(name).filter(|v| !v.is_empty()).cloned();
    let found = api
        .store()
        .list_assets(AssetQuery {
            limit,
            page,
            cursor: non_empty("cursor"),
            live_stream_id: non_empty("live_stream_id"),
        })
        .await?;
    // Every asset here is the recording of a broadcast; none comes from a direct upload.
    // (Asked after the store, so that a bad cursor is refused either way.)
    if non_empty("upload_id").is_some() {
        return list_page(Vec::new(), None);
    }
    list_page(found.assets, found.next_cursor)
}

/// A page of assets: `{"data": [...], "next_cursor"}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AssetList {
    data: Vec<Asset>,
    /// Asks for the next page; `null` on the last one.
    next_cursor: Option<String>,
}

fn list_page(data: Vec<Asset>, next_cursor: Option<String>) -> ApiResult {
    let body = AssetList { data, next_cursor };
    Ok((StatusCode::OK, Json(body)).into_response())
}

/// One input of `GET /assets/{id}/input-info`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct InputInfo {
    /// The settings the asset was made with (none: it is a recording).
    #[schema(value_type = Object)]
    settings: Map<String, Value>,
    file: InputFile,
}

/// What was measured of an input.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct InputFile {
    /// ffprobe's name: `flv` (RTMP) or `mpegts` (SRT).
    #[serde(skip_serializing_if = "Option::is_none")]
    container_format: Option<&'static str>,
    tracks: Vec<InputTrack>,
}

/// One track of an input.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct InputTrack {
    /// `video` or `audio`.
    #[serde(rename = "type")]
    kind: String,
    /// Seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<f64>,
    /// Pixels.
    #[serde(skip_serializing_if = "Option::is_none")]
    width: Option<u32>,
    /// Pixels.
    #[serde(skip_serializing_if = "Option::is_none")]
    height: Option<u32>,
    /// Frames per second (left out when unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    frame_rate: Option<f64>,
    /// Audio channels.
    #[serde(skip_serializing_if = "Option::is_none")]
    channels: Option<u32>,
}

/// `GET /assets/{id}`
#[utoipa::path(
    get,
    path = "/video/v1/assets/{asset_id}",
    tag = "assets",
    operation_id = "get-asset",
    params(("asset_id" = String, Path, description = "The asset")),
    responses((status = 200, description = "The asset", body = Data<Asset>), (status = 404, description = "Not found"))
)]
pub(crate) async fn get_asset(
    State(api): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult {
    data(StatusCode::OK, api.asset(&id).await?)
}

/// `PATCH /assets/{id}` with `passthrough` and `meta` (`{title, creator_id, external_id}`).
/// `null` clears a field, and so does an empty `passthrough` (the hosted API's way, which the
/// SDKs document). Other fields are refused: these two are all an asset has to edit, and a
/// misplaced one (`title` outside `meta`) should not be silently ignored.
#[utoipa::path(
    patch,
    path = "/video/v1/assets/{asset_id}",
    tag = "assets",
    operation_id = "update-asset",
    params(("asset_id" = String, Path, description = "The asset")),
    request_body = AssetPatch,
    responses((status = 200, description = "The asset", body = Data<Asset>), (status = 404, description = "Not found"))
)]
pub(crate) async fn update_asset(
    State(api): State<ApiState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    // A missing asset is 404 whatever the body says.
    api.asset(&id).await?;
    let mut object = read_object(&headers, body, api.config().max_body_bytes).await?;
    if let Some(passthrough) = object.get_mut("passthrough") {
        if passthrough.as_str() == Some("") {
            *passthrough = Value::Null;
        }
    }
    let patch: AssetPatch = decode(object)?;
    let asset = api
        .store()
        .update_asset(&id, patch)
        .await?
        .ok_or_else(asset_not_found)?;
    data(StatusCode::OK, asset)
}

/// `DELETE /assets/{id}`: the asset, its playback IDs and its recording on disk. `409` while
/// its broadcast goes on.
#[utoipa::path(
    delete,
    path = "/video/v1/assets/{asset_id}",
    tag = "assets",
    operation_id = "delete-asset",
    params(("asset_id" = String, Path, description = "The asset")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "Not found"), (status = 409, description = "Its broadcast goes on"))
)]
pub(crate) async fn delete_asset(
    State(api): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult {
    let (_, recording_dir) = api
        .store()
        .delete_asset(&id)
        .await?
        .ok_or_else(asset_not_found)?;
    // The store checked `recording_dir` (relative, no `..`) when the broadcast started.
    let dir = api.sessions().config().recordings_dir.join(&recording_dir);
    // The asset is gone once the store says so: a directory that cannot be removed is the
    // operator's to clean up (logged), not a failed request that the client would retry
    // into a 404.
    match tokio::fs::remove_dir_all(&dir).await {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(
            asset_id = %id,
            dir = %dir.display(),
            error = %e,
            "could not remove a deleted asset's recording"
        ),
    }
    tracing::info!(asset_id = %id, "asset deleted");
    no_content()
}

/// `GET /assets/{id}/input-info`: one input, the broadcast as it arrived. `file` says what
/// was measured, in the hosted API's shape: the container of the ingest protocol (`flv` for
/// RTMP, `mpegts` for SRT, ffprobe's names) and one track per recorded track. What OnAir does
/// not know (an input URL, codecs, sample rates) is left out rather than made up.
#[utoipa::path(
    get,
    path = "/video/v1/assets/{asset_id}/input-info",
    tag = "assets",
    operation_id = "get-asset-input-info",
    params(("asset_id" = String, Path, description = "The asset")),
    responses((status = 200, description = "The broadcast as it arrived", body = Data<Vec<InputInfo>>), (status = 404, description = "Not found"))
)]
pub(crate) async fn input_info(
    State(api): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult {
    let asset = api.asset(&id).await?;
    let container_format = match asset.ingest_type.as_deref() {
        Some("live_rtmp") => Some("flv"),
        Some("live_srt") => Some("mpegts"),
        _ => None,
    };
    let file = InputFile {
        container_format,
        tracks: asset.tracks.iter().map(input_track).collect(),
    };
    data(
        StatusCode::OK,
        [InputInfo {
            settings: Map::new(),
            file,
        }],
    )
}

/// An asset track as an input-info track (`width`, `height`, `frame_rate`, `channels`); an
/// unknown frame rate (`-1`) is left out.
fn input_track(track: &AssetTrack) -> InputTrack {
    InputTrack {
        kind: track.kind.clone(),
        duration: track.duration,
        width: track.max_width,
        height: track.max_height,
        frame_rate: track.max_frame_rate.filter(|r| *r > 0.0),
        channels: track.max_channels,
    }
}

/// `POST /assets/{id}/playback-ids` with `{"policy": "public" | "signed" | "drm"}` (default
/// `public`).
#[utoipa::path(
    post,
    path = "/video/v1/assets/{asset_id}/playback-ids",
    tag = "assets",
    operation_id = "create-asset-playback-id",
    params(("asset_id" = String, Path, description = "The asset")),
    request_body = CreatePlaybackIdRequest,
    responses((status = 201, description = "The new playback ID", body = Data<PlaybackId>), (status = 404, description = "Not found"))
)]
pub(crate) async fn create_playback_id(
    State(api): State<ApiState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    api.asset(&id).await?;
    let policy = read_policy(&api, &headers, body).await?;
    let playback_id = api.store().add_asset_playback_id(&id, policy).await?;
    data(StatusCode::CREATED, playback_id)
}

/// `GET /assets/{id}/playback-ids/{playback_id}`
#[utoipa::path(
    get,
    path = "/video/v1/assets/{asset_id}/playback-ids/{playback_id}",
    tag = "assets",
    operation_id = "get-asset-playback-id",
    params(("asset_id" = String, Path, description = "The asset"), ("playback_id" = String, Path, description = "The playback ID")),
    responses((status = 200, description = "The playback ID", body = Data<PlaybackId>), (status = 404, description = "Not found"))
)]
pub(crate) async fn get_playback_id(
    State(api): State<ApiState>,
    ApiPath((id, playback_id)): ApiPath<(String, String)>,
) -> ApiResult {
    let playback_id = api
        .store()
        .get_asset_playback_id(&id, &playback_id)
        .await?
        .ok_or_else(playback_id_not_found)?;
    data(StatusCode::OK, playback_id)
}

/// `DELETE /assets/{id}/playback-ids/{playback_id}`
#[utoipa::path(
    delete,
    path = "/video/v1/assets/{asset_id}/playback-ids/{playback_id}",
    tag = "assets",
    operation_id = "delete-asset-playback-id",
    params(("asset_id" = String, Path, description = "The asset"), ("playback_id" = String, Path, description = "The playback ID")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "Not found"))
)]
pub(crate) async fn delete_playback_id(
    State(api): State<ApiState>,
    ApiPath((id, playback_id)): ApiPath<(String, String)>,
) -> ApiResult {
    if !api
        .store()
        .delete_asset_playback_id(&id, &playback_id)
        .await?
    {
        return Err(playback_id_not_found());
    }
    no_content()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn as_json(track: InputTrack) -> Value {
        serde_json::to_value(track).unwrap_or_default()
    }

    #[test]
    fn input_tracks_keep_what_was_measured() {
        let video = AssetTrack {
            id: "v".to_owned(),
            kind: "video".to_owned(),
            duration: Some(10.5),
            max_width: Some(1280),
            max_height: Some(720),
            max_frame_rate: Some(-1.0),
            max_channels: None,
            max_channel_layout: None,
        };
        assert_eq!(
            as_json(input_track(&video)),
            json!({"type": "video", "duration": 10.5, "width": 1280, "height": 720})
        );
        let audio = AssetTrack {
            id: "a".to_owned(),
            kind: "audio".to_owned(),
            duration: None,
            max_width: None,
            max_height: None,
            max_frame_rate: None,
            max_channels: Some(2),
            max_channel_layout: Some("stereo".to_owned()),
        };
        assert_eq!(
            as_json(input_track(&audio)),
            json!({"type": "audio", "channels": 2})
        );
    }
}
