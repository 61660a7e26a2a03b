//! The route handlers: live streams, their playback IDs and simulcast targets, and playback
//! ID lookup (assets are in [`crate::assets`]). Each answers `{"data": ...}` like the hosted
//! API, or an [`ApiError`].

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use store::{
    LiveStream, LiveStreamPatch, LiveStreamStatus, NewLiveStream, PlaybackId, PlaybackOwner,
    PlaybackPolicy, Store,
};
use utoipa::ToSchema;

use crate::body::{decode, integral_floats, optional_string, read_object, Object};
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::openapi::{
    CreateLiveStreamRequest, CreatePlaybackIdRequest, CreateSimulcastTargetRequest, Data, Empty,
};
use crate::simulcast::{NewTarget, SimulcastTarget};
use crate::ApiState;

/// Default page size of list endpoints (the seeds' `limit` default).
pub const DEFAULT_PAGE_LIMIT: u32 = 10;
/// Largest page size of list endpoints (the seeds' `limit` maximum).
pub const MAX_PAGE_LIMIT: u32 = 100;
/// Largest page number of list endpoints (the hosted API's `page` is a 32-bit integer).
pub(crate) const MAX_PAGE: u32 = i32::MAX as u32;

/// Fields the hosted API types as JSON integers that some SDKs send as floats (`600.0`).
const WHOLE_SECONDS_FIELDS: &[&str] = &["max_continuous_duration"];

pub(crate) type ApiResult = Result<Response, ApiError>;

/// `{"data": value}` with `status`.
pub(crate) fn data(status: StatusCode, value: impl Serialize) -> ApiResult {
    Ok((status, Json(Data { data: value })).into_response())
}

/// `{"data": {}}`: what complete, disable and enable answer.
fn empty_data() -> ApiResult {
    data(StatusCode::OK, Empty {})
}

/// What `GET /playback-ids/{playback_id}` answers.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PlaybackIdOwner {
    id: String,
    policy: PlaybackPolicy,
    object: OwnerObject,
}

/// The live stream or asset a playback ID belongs to.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OwnerObject {
    #[serde(rename = "type")]
    kind: OwnerType,
    id: String,
}

/// What kind of resource a playback ID belongs to.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OwnerType {
    /// A live stream.
    LiveStream,
    /// An asset.
    Asset,
}

pub(crate) fn no_content() -> ApiResult {
    Ok(StatusCode::NO_CONTENT.into_response())
}

impl ApiState {
    /// A live stream with its simulcast targets filled in.
    fn present(&self, mut stream: LiveStream) -> LiveStream {
        self.simulcast().fill(&mut stream);
        stream
    }

    async fn live_stream(&self, id: &str) -> Result<LiveStream, ApiError> {
        self.store()
            .get_live_stream(id)
            .await?
            .ok_or_else(ApiError::live_stream_not_found)
    }
}

// ---- live streams ----

/// `POST /live-streams`
#[utoipa::path(
    post,
    path = "/video/v1/live-streams",
    tag = "live streams",
    operation_id = "create-live-stream",
    request_body = CreateLiveStreamRequest,
    responses((status = 201, description = "The new live stream", body = Data<LiveStream>))
)]
pub(crate) async fn create_live_stream(
    State(api): State<ApiState>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let mut object = read_object(&headers, body, api.config().max_body_bytes).await?;
    integral_floats(&mut object, WHOLE_SECONDS_FIELDS);
    let targets = NewTarget::list_from_body(&object)?;
    let params: NewLiveStream = decode(object)?;
    // Validate before anything is written, so a bad request creates nothing.
    params.validate()?;
    let stream = api.store().create_live_stream(params).await?;
    api.simulcast().add(&stream.id, targets)?;
    tracing::info!(live_stream_id = %stream.id, "live stream created");
    data(StatusCode::CREATED, api.present(stream))
}

/// A positive integer query parameter `name` (1..=`max`, `default` when absent); `400`
/// naming it otherwise.
pub(crate) fn parse_page_param(
    query: &HashMap<String, String>,
    name: &'static str,
    default: u32,
    max: u32,
) -> Result<u32, ApiError> {
    let Some(raw) = query.get(name) else {
        return Ok(default);
    };
    raw.trim()
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| {
            ApiError::InvalidParameters(format!(
                "invalid {name}: must be an integer between 1 and {max}, got {raw:?}"
            ))
        })
}

/// `GET /live-streams?page=&limit=&status=&stream_key=`
#[utoipa::path(
    get,
    path = "/video/v1/live-streams",
    tag = "live streams",
    operation_id = "list-live-streams",
    params(("page" = Option<u32>, Query, minimum = 1, maximum = 2147483647, description = "Page number, from 1"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size (default 10)"), ("status" = Option<LiveStreamStatus>, Query, description = "Only live streams with this status"), ("stream_key" = Option<String>, Query, description = "Only the live stream with this stream key")),
    responses((status = 200, description = "A page of live streams, newest first", body = Data<Vec<LiveStream>>))
)]
pub(crate) async fn list_live_streams(
    State(api): State<ApiState>,
    ApiQuery(query): ApiQuery<HashMap<String, String>>,
) -> ApiResult {
    let page = parse_page_param(&query, "page", 1, MAX_PAGE)?;
    let limit = parse_page_param(&query, "limit", DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT)?;
    let status = query
        .get("status")
        .map(|s| {
            LiveStreamStatus::parse(s).ok_or_else(|| {
                ApiError::InvalidParameters(format!(
                    "invalid status: unknown status {s:?} (expected active, idle or disabled)"
                ))
            })
        })
        .transpose()?;
    let streams = match query.get("stream_key") {
        // At most one live stream has a given key: it is the whole first page.
        Some(key) => {
            let found = api.store().find_live_stream_by_stream_key(key).await?;
            found
                .filter(|s| page == 1 && status.is_none_or(|wanted| s.status == wanted))
                .into_iter()
                .collect()
        }
        None => api.store().list_live_streams(page, limit, status).await?,
    };
    let streams: Vec<LiveStream> = streams.into_iter().map(|s| api.present(s)).collect();
    data(StatusCode::OK, streams)
}

/// `GET /live-streams/{id}`
#[utoipa::path(
    get,
    path = "/video/v1/live-streams/{live_stream_id}",
    tag = "live streams",
    operation_id = "get-live-stream",
    params(("live_stream_id" = String, Path, description = "The live stream")),
    responses((status = 200, description = "The live stream", body = Data<LiveStream>), (status = 404, description = "Not found"))
)]
pub(crate) async fn get_live_stream(
    State(api): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult {
    let stream = api.live_stream(&id).await?;
    data(StatusCode::OK, api.present(stream))
}

/// `PATCH /live-streams/{id}`
#[utoipa::path(
    patch,
    path = "/video/v1/live-streams/{live_stream_id}",
    tag = "live streams",
    operation_id = "update-live-stream",
    params(("live_stream_id" = String, Path, description = "The live stream")),
    request_body = LiveStreamPatch,
    responses((status = 200, description = "The live stream", body = Data<LiveStream>), (status = 404, description = "Not found"))
)]
pub(crate) async fn update_live_stream(
    State(api): State<ApiState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    // A missing live stream is 404 whatever the body says.
    let existing = api.live_stream(&id).await?;
    let mut object = read_object(&headers, body, api.config().max_body_bytes).await?;
    integral_floats(&mut object, WHOLE_SECONDS_FIELDS);
    title_into_meta(&mut object, existing.meta);
    let patch: LiveStreamPatch = decode(object)?;
    let stream = api
        .store()
        .update_live_stream(&id, patch)
        .await?
        .ok_or_else(ApiError::live_stream_not_found)?;
    data(StatusCode::OK, api.present(stream))
}

/// A top-level `title` (what `mux live update --title` sends, CLI 2.0.1) is `meta.title`:
/// it changes the title and keeps the rest of `meta` (`null` removes the title). A body with
/// `meta` itself wins.
fn title_into_meta(object: &mut Object, meta: Option<store::AssetMeta>) {
    let Some(title) = object.remove("title") else {
        return;
    };
    if object.contains_key("meta") {
        return;
    }
    let mut meta = match serde_json::to_value(meta.unwrap_or_default()) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => Object::new(),
    };
    if title.is_null() {
        meta.remove("title");
    } else {
        meta.insert("title".to_owned(), title);
    }
    object.insert("meta".to_owned(), serde_json::Value::Object(meta));
}

/// `DELETE /live-streams/{id}`: also disconnects a live encoder.
#[utoipa::path(
    delete,
    path = "/video/v1/live-streams/{live_stream_id}",
    tag = "live streams",
    operation_id = "delete-live-stream",
    params(("live_stream_id" = String, Path, description = "The live stream")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "Not found"))
)]
pub(crate) async fn delete_live_stream(
    State(api): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult {
    if !api.store().delete_live_stream(&id).await? {
        return Err(ApiError::live_stream_not_found());
    }
    // Deleted first, so that the encoder cannot be admitted again with the same key; then
    // the running broadcast (if any) ends.
    api.sessions().delete(&id).await;
    api.simulcast().remove_live_stream(&id);
    tracing::info!(live_stream_id = %id, "live stream deleted");
    no_content()
}

/// `POST /live-streams/{id}/reset-stream-key`: also disconnects the encoder on the old key.
#[utoipa::path(
    post,
    path = "/video/v1/live-streams/{live_stream_id}/reset-stream-key",
    tag = "live streams",
    operation_id = "reset-stream-key",
    params(("live_stream_id" = String, Path, description = "The live stream")),
    responses((status = 201, description = "The live stream with its new stream key", body = Data<LiveStream>), (status = 404, description = "Not found"))
)]
pub(crate) async fn reset_stream_key(
    State(api): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult {
    let stream = api
        .store()
        .reset_stream_key(&id)
        .await?
        .ok_or_else(ApiError::live_stream_not_found)?;
    // The encoder on the old key is disconnected; the broadcast waits for one with the new
    // key for its reconnect window.
    api.sessions().reset_stream_key(&id).await;
    tracing::info!(live_stream_id = %id, "stream key reset");
    data(StatusCode::CREATED, api.present(stream))
}

/// `PUT /live-streams/{id}/complete`: ends the broadcast now (the encoder is disconnected
/// and the stream goes idle instead of waiting for the reconnect window). Answers once the
/// broadcast's lifecycle has written `idle`, so the next read shows it.
#[utoipa::path(
    put,
    path = "/video/v1/live-streams/{live_stream_id}/complete",
    tag = "live streams",
    operation_id = "signal-live-stream-complete",
    params(("live_stream_id" = String, Path, description = "The live stream")),
    responses((status = 200, description = "Done", body = Data<Empty>), (status = 404, description = "Not found"))
)]
pub(crate) async fn complete_live_stream(
    State(api): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult {
    api.live_stream(&id).await?;
    api.sessions().complete(&id).await;
    tracing::info!(live_stream_id = %id, "live stream completed");
    empty_data()
}

/// `PUT /live-streams/{id}/disable`: disconnects the encoder and refuses new ones.
#[utoipa::path(
    put,
    path = "/video/v1/live-streams/{live_stream_id}/disable",
    tag = "live streams",
    operation_id = "disable-live-stream",
    params(("live_stream_id" = String, Path, description = "The live stream")),
    responses((status = 200, description = "Done", body = Data<Empty>), (status = 404, description = "Not found"))
)]
pub(crate) async fn disable_live_stream(
    State(api): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult {
    api.store()
        .disable_live_stream(&id)
        .await?
        .ok_or_else(ApiError::live_stream_not_found)?;
    // Disabled first: the session manager refuses publishers of a disabled stream; then the
    // running broadcast (if any) ends.
    api.sessions().disable(&id).await;
    tracing::info!(live_stream_id = %id, "live stream disabled");
    empty_data()
}

/// `PUT /live-streams/{id}/enable`
#[utoipa::path(
    put,
    path = "/video/v1/live-streams/{live_stream_id}/enable",
    tag = "live streams",
    operation_id = "enable-live-stream",
    params(("live_stream_id" = String, Path, description = "The live stream")),
    responses((status = 200, description = "Done", body = Data<Empty>), (status = 404, description = "Not found"))
)]
pub(crate) async fn enable_live_stream(
    State(api): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult {
    api.store()
        .enable_live_stream(&id)
        .await?
        .ok_or_else(ApiError::live_stream_not_found)?;
    tracing::info!(live_stream_id = %id, "live stream enabled");
    empty_data()
}

// ---- playback IDs ----

pub(crate) fn playback_id_not_found() -> ApiError {
    ApiError::NotFound("playback ID not found".to_owned())
}

/// The `policy` of a create-playback-ID body (`public`, `signed` or `drm`; default `public`).
pub(crate) async fn read_policy(
    api: &ApiState,
    headers: &HeaderMap,
    body: Body,
) -> Result<PlaybackPolicy, ApiError> {
    let object = read_object(headers, body, api.config().max_body_bytes).await?;
    match optional_string(&object, "policy")? {
        None => Ok(PlaybackPolicy::Public),
        Some(name) => PlaybackPolicy::parse(&name).ok_or_else(|| {
            ApiError::InvalidParameters(format!(
                "invalid policy: unknown playback policy {name:?} (expected public, signed or drm)"
            ))
        }),
    }
}

/// `POST /live-streams/{id}/playback-ids` with `{"policy": "public" | "signed" | "drm"}`
/// (default `public`).
#[utoipa::path(
    post,
    path = "/video/v1/live-streams/{live_stream_id}/playback-ids",
    tag = "live streams",
    operation_id = "create-live-stream-playback-id",
    params(("live_stream_id" = String, Path, description = "The live stream")),
    request_body = CreatePlaybackIdRequest,
    responses((status = 201, description = "The new playback ID", body = Data<PlaybackId>), (status = 404, description = "Not found"))
)]
pub(crate) async fn create_playback_id(
    State(api): State<ApiState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    api.live_stream(&id).await?;
    let policy = read_policy(&api, &headers, body).await?;
    let playback_id = api.store().add_playback_id(&id, policy).await?;
    api.sessions().playback_id_added(&id, &playback_id);
    data(StatusCode::CREATED, playback_id)
}

/// `GET /live-streams/{id}/playback-ids/{playback_id}`
#[utoipa::path(
    get,
    path = "/video/v1/live-streams/{live_stream_id}/playback-ids/{playback_id}",
    tag = "live streams",
    operation_id = "get-live-stream-playback-id",
    params(("live_stream_id" = String, Path, description = "The live stream"), ("playback_id" = String, Path, description = "The playback ID")),
    responses((status = 200, description = "The playback ID", body = Data<PlaybackId>), (status = 404, description = "Not found"))
)]
pub(crate) async fn get_playback_id(
    State(api): State<ApiState>,
    ApiPath((id, playback_id)): ApiPath<(String, String)>,
) -> ApiResult {
    let playback_id = api
        .store()
        .get_playback_id(&id, &playback_id)
        .await?
        .ok_or_else(playback_id_not_found)?;
    data(StatusCode::OK, playback_id)
}

/// `DELETE /live-streams/{id}/playback-ids/{playback_id}`
#[utoipa::path(
    delete,
    path = "/video/v1/live-streams/{live_stream_id}/playback-ids/{playback_id}",
    tag = "live streams",
    operation_id = "delete-live-stream-playback-id",
    params(("live_stream_id" = String, Path, description = "The live stream"), ("playback_id" = String, Path, description = "The playback ID")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "Not found"))
)]
pub(crate) async fn delete_playback_id(
    State(api): State<ApiState>,
    ApiPath((id, playback_id)): ApiPath<(String, String)>,
) -> ApiResult {
    if !api.store().delete_playback_id(&id, &playback_id).await? {
        return Err(playback_id_not_found());
    }
    api.sessions().playback_id_removed(&id, &playback_id);
    no_content()
}

/// `GET /playback-ids/{playback_id}`: what a playback ID belongs to, a live stream or an
/// asset.
#[utoipa::path(
    get,
    path = "/video/v1/playback-ids/{playback_id}",
    tag = "playback IDs",
    operation_id = "get-asset-or-livestream-id",
    params(("playback_id" = String, Path, description = "The playback ID")),
    responses((status = 200, description = "What the playback ID belongs to", body = Data<PlaybackIdOwner>), (status = 404, description = "Not found"))
)]
pub(crate) async fn lookup_playback_id(
    State(api): State<ApiState>,
    ApiPath(playback_id): ApiPath<String>,
) -> ApiResult {
    let owner = api
        .store()
        .playback_owner(&playback_id)
        .await?
        .ok_or_else(playback_id_not_found)?;
    let (kind, owner_id, playback_id) = match owner {
        PlaybackOwner::LiveStream { id, playback_id } => (OwnerType::LiveStream, id, playback_id),
        PlaybackOwner::Asset { id, playback_id } => (OwnerType::Asset, id, playback_id),
    };
    data(
        StatusCode::OK,
        PlaybackIdOwner {
            id: playback_id.id,
            policy: playback_id.policy,
            object: OwnerObject { kind, id: owner_id },
        },
    )
}

// ---- simulcast targets ----

fn simulcast_target_not_found() -> ApiError {
    ApiError::NotFound("simulcast target not found".to_owned())
}

/// `POST /live-streams/{id}/simulcast-targets` with `{url, stream_key, passthrough}`; `409`
/// when the live stream has [`crate::MAX_TARGETS_PER_LIVE_STREAM`] already.
#[utoipa::path(
    post,
    path = "/video/v1/live-streams/{live_stream_id}/simulcast-targets",
    tag = "live streams",
    operation_id = "create-live-stream-simulcast-target",
    params(("live_stream_id" = String, Path, description = "The live stream")),
    request_body = CreateSimulcastTargetRequest,
    responses((status = 201, description = "The new simulcast target", body = Data<SimulcastTarget>), (status = 404, description = "Not found"), (status = 409, description = "The live stream has the most simulcast targets it may have"))
)]
pub(crate) async fn create_simulcast_target(
    State(api): State<ApiState>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    api.live_stream(&id).await?;
    let object = read_object(&headers, body, api.config().max_body_bytes).await?;
    let target = NewTarget::from_object(&object, "")?;
    let added = api.simulcast().add(&id, vec![target])?;
    let target = added.into_iter().next().ok_or(ApiError::Internal)?;
    tracing::info!(live_stream_id = %id, simulcast_target_id = %target.id, "simulcast target added");
    data(StatusCode::CREATED, target)
}

/// `GET /live-streams/{id}/simulcast-targets/{target_id}`
#[utoipa::path(
    get,
    path = "/video/v1/live-streams/{live_stream_id}/simulcast-targets/{simulcast_target_id}",
    tag = "live streams",
    operation_id = "get-live-stream-simulcast-target",
    params(("live_stream_id" = String, Path, description = "The live stream"), ("simulcast_target_id" = String, Path, description = "The simulcast target")),
    responses((status = 200, description = "The simulcast target", body = Data<SimulcastTarget>), (status = 404, description = "Not found"))
)]
pub(crate) async fn get_simulcast_target(
    State(api): State<ApiState>,
    ApiPath((id, target_id)): ApiPath<(String, String)>,
) -> ApiResult {
    if api.store().get_live_stream(&id).await?.is_none() {
        // Deleted behind the API's back (the CLI): forget its targets too.
        api.simulcast().remove_live_stream(&id);
        return Err(ApiError::live_stream_not_found());
    }
    let target = api
        .simulcast()
        .get(&id, &target_id)
        .ok_or_else(simulcast_target_not_found)?;
    data(StatusCode::OK, target)
}

/// `DELETE /live-streams/{id}/simulcast-targets/{target_id}`
#[utoipa::path(
    delete,
    path = "/video/v1/live-streams/{live_stream_id}/simulcast-targets/{simulcast_target_id}",
    tag = "live streams",
    operation_id = "delete-live-stream-simulcast-target",
    params(("live_stream_id" = String, Path, description = "The live stream"), ("simulcast_target_id" = String, Path, description = "The simulcast target")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "Not found"))
)]
pub(crate) async fn delete_simulcast_target(
    State(api): State<ApiState>,
    ApiPath((id, target_id)): ApiPath<(String, String)>,
) -> ApiResult {
    if !api.simulcast().remove(&id, &target_id) {
        return Err(simulcast_target_not_found());
    }
    no_content()
}

// ---- everything else under /video/v1 ----

/// Unknown paths under `/video/v1` (after authentication, like the known ones).
pub(crate) async fn unknown_route() -> ApiError {
    ApiError::NotFound("no such API route".to_owned())
}

/// A known path with a method it does not have.
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
