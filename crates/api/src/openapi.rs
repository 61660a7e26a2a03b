//! OnAir's own OpenAPI 3 document, generated from the handlers' `#[utoipa::path]`
//! annotations and the request and response types themselves (`store::LiveStream`,
//! `store::Asset`, [`crate::error::ErrorBody`], ...), so that it cannot drift from the code.
//! Served at [`OPENAPI_PATH`] without authentication (it holds nothing secret).
//!
//! The annotations give each route its own answers (`201`, `204`, `404`, `409`, ...); the
//! answers every route shares are added here, once ([`CommonResponses`]): `401` (with
//! `WWW-Authenticate`), `403`, `405`, `408` and `429` (with `Retry-After`) everywhere, and
//! `400` and `413` wherever a request body or query parameters are read.

use std::sync::OnceLock;

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::error::ErrorBody;
use crate::{assets, event_stream, handlers, signing_keys};

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/video/v1/openapi.json";

/// `{"data": ...}`: every success answer of the API (see [`crate::handlers::data`]).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Data<T> {
    /// The resource.
    pub(crate) data: T,
}

/// `{}`: what complete, disable and enable answer in `data`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Empty {}

/// The body of `POST .../playback-ids` (read by [`crate::handlers::read_policy`]).
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Documents a body the handler reads field by field.
pub(crate) struct CreatePlaybackIdRequest {
    /// Default `public`.
    policy: Option<store::PlaybackPolicy>,
}

/// The body of `POST /live-streams/{id}/simulcast-targets`, and each entry of a create
/// body's `simulcast_targets` (read by `simulcast::NewTarget`).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // Documents a body the handler reads field by field.
pub(crate) struct CreateSimulcastTargetRequest {
    /// An `rtmp://`, `rtmps://` or `srt://` URL with a host (not starting with `/`).
    #[schema(max_length = 2048, pattern = r"^(rtmps?|srt)://[!-.0-~][!-~]*$")]
    url: String,
    /// The key on the third-party service (at most 1024 bytes).
    #[schema(max_length = 1024, pattern = r"^[ -~]*$")]
    stream_key: Option<String>,
    /// Arbitrary metadata.
    #[schema(max_length = 255)]
    passthrough: Option<String>,
}

/// The body of `POST /live-streams`: [`store::NewLiveStream`] and its simulcast targets.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // Documents a body read as store::NewLiveStream plus simulcast targets.
pub(crate) struct CreateLiveStreamRequest {
    #[serde(flatten)]
    settings: store::NewLiveStream,
    /// Restream targets (at most 10).
    #[schema(max_items = 10)]
    simulcast_targets: Option<Vec<CreateSimulcastTargetRequest>>,
}

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "OnAir REST API",
        description = "The live stream, asset and playback ID resources of OnAir, a \
            self-hosted live-streaming gateway, in the shapes of the hosted API its official \
            SDKs were written for. Every success is `{\"data\": ...}`; every error is \
            `{\"error\": {\"type\", \"messages\"}}`. Authenticate with HTTP basic auth: an \
            access token's ID and secret."
    ),
    paths(
        handlers::create_live_stream,
        handlers::list_live_streams,
        handlers::get_live_stream,
        handlers::update_live_stream,
        handlers::delete_live_stream,
        handlers::reset_stream_key,
        handlers::complete_live_stream,
        handlers::disable_live_stream,
        handlers::enable_live_stream,
        handlers::create_playback_id,
        handlers::get_playback_id,
        handlers::delete_playback_id,
        handlers::create_simulcast_target,
        handlers::get_simulcast_target,
        handlers::delete_simulcast_target,
        handlers::lookup_playback_id,
        assets::list_assets,
        assets::get_asset,
        assets::update_asset,
        assets::delete_asset,
        assets::input_info,
        assets::create_playback_id,
        assets::get_playback_id,
        assets::delete_playback_id,
        event_stream::whoami,
        event_stream::webhook_event_stream,
        signing_keys::create_signing_key,
        signing_keys::list_signing_keys,
        signing_keys::get_signing_key,
        signing_keys::delete_signing_key,
    ),
    components(schemas(ErrorBody)),
    modifiers(&CommonResponses),
    security(("access_token" = [])),
    tags(
        (name = "live streams", description = "Live streams, their playback IDs and simulcast targets"),
        (name = "assets", description = "The recordings of broadcasts"),
        (name = "playback IDs", description = "What a playback ID belongs to"),
        (name = "system", description = "The access token's environment and the webhook event stream"),
        (name = "signing keys", description = "Key pairs that sign playback tokens of signed playback IDs"),
    )
)]
pub(crate) struct ApiDoc;

/// The answers every route shares, and the basic-auth security scheme.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "access_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "An access token: its ID as the user, its secret as the password",
                    ))
                    .build(),
            ),
        );
        let error = |description: &str| {
            ResponseBuilder::new().description(description).content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
        };
        let string_header = |description: &str| {
            HeaderBuilder::new()
                .schema(ObjectBuilder::new().schema_type(Type::String))
                .description(Some(description))
                .build()
        };
        let shared = [
            (
                "400",
                error("`invalid_parameters`: a malformed body or query parameter; the message names the field")
                    .build(),
            ),
            (
                "401",
                error("`unauthorized`: missing or wrong credentials")
                    .header(
                        "WWW-Authenticate",
                        string_header("`Basic realm=\"OnAir\"`"),
                    )
                    .build(),
            ),
            (
                "403",
                error("`forbidden`: the access token lacks the read or write permission").build(),
            ),
            ("404", error("`not_found`: no such resource").build()),
            (
                "405",
                error("`method_not_allowed`: the path has no such method").build(),
            ),
            (
                "408",
                error("`request_timeout`: the request took too long").build(),
            ),
            ("409", error("`conflict`: contradicts the stored state").build()),
            (
                "413",
                error("`payload_too_large`: the body is over the size limit").build(),
            ),
            (
                "429",
                error("`too_many_requests`: the access token's rate limit is exhausted")
                    .header(
                        "Retry-After",
                        string_header("Whole seconds until a request is accepted again"),
                    )
                    .build(),
            ),
            (
                "503",
                error("`service_unavailable`: too many event streams are open").build(),
            ),
        ];
        for (code, response) in shared {
            components
                .responses
                .insert(format!("E{code}"), RefOr::T(response));
        }
        for item in doc.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.patch,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                // An empty body is read as `{}` (the SDKs send none for some calls); only a
                // simulcast target needs one (its `url`).
                let needs_body = operation.operation_id.as_deref()
                    == Some("create-live-stream-simulcast-target");
                if let Some(body) = &mut operation.request_body {
                    if !needs_body {
                        body.required = Some(utoipa::openapi::Required::False);
                    }
                }
                let reads_input = operation.request_body.is_some()
                    || operation.parameters.as_ref().is_some_and(|p| {
                        p.iter()
                            .any(|p| p.parameter_in == utoipa::openapi::path::ParameterIn::Query)
                    });
                let mut codes = vec!["401", "403", "405", "408", "429"];
                if reads_input {
                    codes.push("400");
                }
                if operation.request_body.is_some() {
                    codes.push("413");
                }
                let responses = &mut operation.responses.responses;
                for code in codes {
                    responses.entry(code.to_owned()).or_insert_with(|| {
                        RefOr::Ref(Ref::new(format!("#/components/responses/E{code}")))
                    });
                }
                // Routes that name their own 404/409/503 point them at the shared ones.
                for code in ["404", "409", "503"] {
                    if responses.contains_key(code) {
                        responses.insert(
                            code.to_owned(),
                            RefOr::Ref(Ref::new(format!("#/components/responses/E{code}"))),
                        );
                    }
                }
            }
        }
    }
}

/// One OpenAPI link: the answer `status` of operation `from` gives the `parameters` (name,
/// where its value is) of the operations `to`.
struct Link {
    from: &'static str,
    status: &'static str,
    to: &'static [&'static str],
    parameters: &'static [(&'static str, &'static str)],
}

/// Which answer gives the IDs that other operations take: the links let a stateful tester
/// (and a reader) go from a created resource to the routes that use it.
const LINKS: &[Link] = &[
    Link {
        from: "create-live-stream",
        status: "201",
        to: &[
            "get-live-stream",
            "update-live-stream",
            "delete-live-stream",
            "reset-stream-key",
            "signal-live-stream-complete",
            "disable-live-stream",
            "enable-live-stream",
            "create-live-stream-playback-id",
            "create-live-stream-simulcast-target",
        ],
        parameters: &[("live_stream_id", "$response.body#/data/id")],
    },
    Link {
        from: "create-live-stream",
        status: "201",
        to: &["get-asset-or-livestream-id"],
        parameters: &[("playback_id", "$response.body#/data/playback_ids/0/id")],
    },
    Link {
        from: "create-live-stream-playback-id",
        status: "201",
        to: &[
            "get-live-stream-playback-id",
            "delete-live-stream-playback-id",
        ],
        parameters: &[
            ("live_stream_id", "$request.path.live_stream_id"),
            ("playback_id", "$response.body#/data/id"),
        ],
    },
    Link {
        from: "create-live-stream-simulcast-target",
        status: "201",
        to: &[
            "get-live-stream-simulcast-target",
            "delete-live-stream-simulcast-target",
        ],
        parameters: &[
            ("live_stream_id", "$request.path.live_stream_id"),
            ("simulcast_target_id", "$response.body#/data/id"),
        ],
    },
    Link {
        from: "create-signing-key",
        status: "201",
        to: &["get-signing-key", "delete-signing-key"],
        parameters: &[("signing_key_id", "$response.body#/data/id")],
    },
    Link {
        from: "list-assets",
        status: "200",
        to: &[
            "get-asset",
            "update-asset",
            "get-asset-input-info",
            "create-asset-playback-id",
            "delete-asset",
        ],
        parameters: &[("asset_id", "$response.body#/data/0/id")],
    },
    Link {
        from: "create-asset-playback-id",
        status: "201",
        to: &["get-asset-playback-id", "delete-asset-playback-id"],
        parameters: &[
            ("asset_id", "$request.path.asset_id"),
            ("playback_id", "$response.body#/data/id"),
        ],
    },
];

/// Adds [`LINKS`] to the answers they start from. Done on the JSON: utoipa 5.5's `Link`
/// serializes `operation_id` where OpenAPI says `operationId`.
fn add_links(doc: &mut serde_json::Value) {
    let operations = doc["paths"]
        .as_object_mut()
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|item| item.values_mut());
    for operation in operations {
        let id = operation["operationId"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for link in LINKS.iter().filter(|link| link.from == id) {
            let Some(response) = operation["responses"].get_mut(link.status) else {
                continue;
            };
            let parameters: serde_json::Map<String, serde_json::Value> = link
                .parameters
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).into()))
                .collect();
            for target in link.to {
                response["links"][*target] = serde_json::json!({
                    "operationId": target,
                    "parameters": parameters,
                });
            }
        }
    }
}

/// The document as JSON, made once.
pub(crate) fn document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        add_links(&mut doc);
        serde_json::to_string_pretty(&doc).unwrap_or_default()
    })
}

/// `GET /video/v1/openapi.json`
pub(crate) async fn openapi_json() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        document(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_covers_every_route_with_its_answers() {
        let doc: serde_json::Value =
            serde_json::from_str(document()).unwrap_or_else(|e| panic!("not JSON: {e}"));
        if let Ok(path) = std::env::var("ONAIR_WRITE_OPENAPI") {
            let _ = std::fs::write(path, document());
        }
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        let paths = doc["paths"].as_object().map(|p| p.len());
        assert_eq!(paths, Some(20));
        let create = &doc["paths"]["/video/v1/live-streams"]["post"];
        for code in ["201", "400", "401", "403", "405", "408", "413", "429"] {
            assert!(create["responses"].get(code).is_some(), "{code}: {create}");
        }
        let schemas = &doc["components"]["schemas"];
        let window = &schemas["LiveStream"]["properties"]["reconnect_window"];
        assert_eq!(window["type"], "number", "{window}");
        assert_eq!(window["maximum"], 1800, "{window}");
        // Every link names an operation of the document.
        let ids: Vec<&str> = doc["paths"]
            .as_object()
            .into_iter()
            .flat_map(|p| p.values())
            .filter_map(|item| item.as_object())
            .flat_map(|item| item.values())
            .filter_map(|op| op["operationId"].as_str())
            .collect();
        assert_eq!(ids.len(), 30);
        for link in LINKS {
            assert!(ids.contains(&link.from), "{}", link.from);
            assert!(link.to.iter().all(|t| ids.contains(t)), "{:?}", link.to);
        }
        let link =
            &doc["paths"]["/video/v1/assets"]["get"]["responses"]["200"]["links"]["get-asset"];
        assert_eq!(link["operationId"], "get-asset", "{link}");
        assert_eq!(link["parameters"]["asset_id"], "$response.body#/data/0/id");
        let modes = &schemas["LatencyMode"]["enum"];
        assert_eq!(modes, &serde_json::json!(["standard", "reduced", "low"]));
    }
}
