//! `/system/v1/signing-keys`: the RSA key pairs that sign playback tokens of `signed`
//! playback IDs. A key's private half is generated here, returned once (base64 of a PEM, as
//! the hosted API returns it) and never stored; the store keeps the public half, and
//! playback's [`SigningKeys`](playback::token::SigningKeys) verifies tokens with it. Deleting
//! a key invalidates every token signed with it, at once.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use store::{SigningKey, Store};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::handlers::{data, no_content, parse_page_param, ApiResult, MAX_PAGE};
use crate::openapi::Data;
use crate::ApiState;

/// Default page size of `GET /system/v1/signing-keys`.
pub const DEFAULT_SIGNING_KEY_PAGE_LIMIT: u32 = 25;

/// What creating a signing key answers: the key and, this once, its private key.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NewSigningKey {
    #[serde(flatten)]
    key: SigningKey,
    /// Base64 of a PEM `RSA PRIVATE KEY` (PKCS #1) document. Returned only here.
    private_key: String,
}

fn signing_key_not_found() -> ApiError {
    ApiError::NotFound("signing key not found".to_owned())
}

/// `POST /system/v1/signing-keys` (no body).
#[utoipa::path(
    post,
    path = "/system/v1/signing-keys",
    tag = "signing keys",
    operation_id = "create-signing-key",
    responses((status = 201, description = "The new signing key with its private key (returned only now)", body = Data<NewSigningKey>))
)]
pub(crate) async fn create_signing_key(State(api): State<ApiState>) -> ApiResult {
    // RSA key generation takes tens of milliseconds of CPU: off the async workers.
    let generated = tokio::task::spawn_blocking(playback::token::generate_key_pair)
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(|e| {
            tracing::error!(error = %e, "signing key generation failed");
            ApiError::Internal
        })?;
    let key = api
        .store()
        .create_signing_key(&generated.public_key_der)
        .await?;
    if let Err(e) = api
        .signing_keys()
        .insert(&key.id, &generated.public_key_der)
    {
        tracing::error!(error = %e, "a generated signing key was refused");
        return Err(ApiError::Internal);
    }
    tracing::info!(signing_key_id = %key.id, "signing key created");
    data(
        StatusCode::CREATED,
        NewSigningKey {
            key,
            private_key: generated.private_key_base64_pem,
        },
    )
}

/// `GET /system/v1/signing-keys?page=&limit=`
#[utoipa::path(
    get,
    path = "/system/v1/signing-keys",
    tag = "signing keys",
    operation_id = "list-signing-keys",
    params(("page" = Option<u32>, Query, minimum = 1, maximum = 2147483647, description = "Page number, from 1"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size (default 25)")),
    responses((status = 200, description = "A page of signing keys, newest first (without private keys)", body = Data<Vec<SigningKey>>))
)]
pub(crate) async fn list_signing_keys(
    State(api): State<ApiState>,
    ApiQuery(query): ApiQuery<HashMap<String, String>>,
) -> ApiResult {
    let page = parse_page_param(&query, "page", 1, MAX_PAGE)?;
    let limit = parse_page_param(
        &query,
        "limit",
        DEFAULT_SIGNING_KEY_PAGE_LIMIT,
        store::MAX_SIGNING_KEY_LIST_LIMIT,
    )?;
    data(
        StatusCode::OK,
        api.store().list_signing_keys(page, limit).await?,
    )
}

/// `GET /system/v1/signing-keys/{signing_key_id}`
#[utoipa::path(
    get,
    path = "/system/v1/signing-keys/{signing_key_id}",
    tag = "signing keys",
    operation_id = "get-signing-key",
    params(("signing_key_id" = String, Path, description = "The signing key")),
    responses((status = 200, description = "The signing key (without its private key)", body = Data<SigningKey>), (status = 404, description = "Not found"))
)]
pub(crate) async fn get_signing_key(
    State(api): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult {
    let key = api
        .store()
        .get_signing_key(&id)
        .await?
        .ok_or_else(signing_key_not_found)?;
    data(StatusCode::OK, key)
}

/// `DELETE /system/v1/signing-keys/{signing_key_id}`: tokens signed with it stop playing.
#[utoipa::path(
    delete,
    path = "/system/v1/signing-keys/{signing_key_id}",
    tag = "signing keys",
    operation_id = "delete-signing-key",
    params(("signing_key_id" = String, Path, description = "The signing key")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "Not found"))
)]
pub(crate) async fn delete_signing_key(
    State(api): State<ApiState>,
    ApiPath(id): ApiPath<String>,
) -> ApiResult {
    if !api.store().delete_signing_key(&id).await? {
        return Err(signing_key_not_found());
    }
    api.signing_keys().remove(&id);
    tracing::info!(signing_key_id = %id, "signing key deleted");
    no_content()
}
