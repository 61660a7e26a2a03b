//! The management commands.
//!
//! - `onair live-streams ...` and `onair assets ...` are clients of the server's REST API
//!   (`--api-url`, `--access-token` / `ONAIR_ACCESS_TOKEN`): each prints the `data` the API
//!   answered (`assets list`: the whole page, with its `next_cursor`), so what the CLI shows
//!   is exactly what the API says.
//! - `onair access-tokens ...` manage the tokens in the data directory's database directly
//!   (they are how the API is reached in the first place; SQLite allows it while the server
//!   runs). Only a salted hash of each secret is stored; `create` shows the secret once.

use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use store::{Permissions, SqliteStore, Store};

use crate::api_client::ApiClient;

/// Where the API is and how to authenticate.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// Base URL of the OnAir server's HTTP listener.
    #[arg(
        long,
        global = true,
        env = "ONAIR_API_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub api_url: String,
    /// Access token as ID:SECRET (printed by the server's first start, or set there with
    /// ONAIR_ACCESS_TOKEN).
    #[arg(
        long,
        global = true,
        env = "ONAIR_ACCESS_TOKEN",
        hide_env_values = true
    )]
    pub access_token: Option<String>,
}

/// The live stream settings that `create` and `update` share.
#[derive(Debug, Clone, Args)]
pub struct LiveStreamSettings {
    /// `standard`, `reduced` or `low`.
    #[arg(long)]
    latency_mode: Option<String>,
    /// Seconds to wait for a reconnecting encoder (0 to 1800, fractions allowed).
    #[arg(long)]
    reconnect_window: Option<f64>,
    /// Seconds a broadcast may last (60..=43200).
    #[arg(long)]
    max_continuous_duration: Option<i64>,
    /// Arbitrary metadata (at most 255 characters).
    #[arg(long)]
    passthrough: Option<String>,
}

impl LiveStreamSettings {
    /// Sets the given settings in `body`.
    fn apply(self, body: &mut Value) {
        if let Some(v) = self.latency_mode {
            body["latency_mode"] = json!(v);
        }
        if let Some(v) = self.reconnect_window {
            body["reconnect_window"] = json!(v);
        }
        if let Some(v) = self.max_continuous_duration {
            body["max_continuous_duration"] = json!(v);
        }
        if let Some(v) = self.passthrough {
            body["passthrough"] = json!(v);
        }
    }
}

/// `meta` fields; on an update the ones given replace the whole `meta`.
#[derive(Debug, Clone, Args)]
pub struct MetaArgs {
    /// `meta.title`.
    #[arg(long)]
    title: Option<String>,
    /// `meta.creator_id`.
    #[arg(long)]
    creator_id: Option<String>,
    /// `meta.external_id`.
    #[arg(long)]
    external_id: Option<String>,
}

impl MetaArgs {
    /// Sets `body["meta"]` to the given fields, if any was given.
    fn apply(self, body: &mut Value) {
        let mut meta = serde_json::Map::new();
        for (name, value) in [
            ("title", self.title),
            ("creator_id", self.creator_id),
            ("external_id", self.external_id),
        ] {
            if let Some(value) = value {
                meta.insert(name.to_owned(), json!(value));
            }
        }
        if !meta.is_empty() {
            body["meta"] = Value::Object(meta);
        }
    }
}

/// The live-streams commands.
#[derive(Debug, Subcommand)]
pub enum LiveStreamsCommand {
    /// Create a live stream (one public playback ID unless --playback-policy says otherwise).
    Create {
        #[command(flatten)]
        settings: LiveStreamSettings,
        /// Playback policy of each playback ID to create (`public`, `signed`); repeatable.
        #[arg(long = "playback-policy")]
        playback_policies: Vec<String>,
        /// Process only the audio track.
        #[arg(long)]
        audio_only: bool,
        /// A test stream.
        #[arg(long)]
        test: bool,
        #[command(flatten)]
        meta: MetaArgs,
    },
    /// List live streams, newest first.
    List {
        /// Page number, from 1.
        #[arg(long, default_value_t = 1)]
        page: u32,
        /// Live streams per page (1..=100).
        #[arg(long, default_value_t = 10)]
        limit: u32,
        /// Only streams with this status (`idle`, `active`, `disabled`).
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one live stream.
    Get {
        /// The live stream ID.
        id: String,
    },
    /// Change a live stream's settings (they apply to its next broadcast); prints the live
    /// stream. The given meta fields replace the old meta.
    Update {
        /// The live stream ID.
        id: String,
        #[command(flatten)]
        settings: LiveStreamSettings,
        #[command(flatten)]
        meta: MetaArgs,
    },
    /// Delete a live stream.
    Delete {
        /// The live stream ID.
        id: String,
    },
    /// Give a live stream a new stream key (the old one stops working).
    ResetStreamKey {
        /// The live stream ID.
        id: String,
    },
    /// Refuse new broadcasts on a live stream.
    Disable {
        /// The live stream ID.
        id: String,
    },
    /// Accept broadcasts again.
    Enable {
        /// The live stream ID.
        id: String,
    },
    /// End the running broadcast now, without waiting for the reconnect window.
    Complete {
        /// The live stream ID.
        id: String,
    },
}

/// Runs a live-streams command against the API.
pub fn run_live_streams(command: LiveStreamsCommand, api: &ApiArgs) -> Result<()> {
    let data = execute(&api.client()?, command)?;
    println!("{}", serde_json::to_string_pretty(&data)?);
    Ok(())
}

impl ApiArgs {
    fn client(&self) -> Result<ApiClient> {
        let token = self
            .access_token
            .as_deref()
            .context("an access token is needed: --access-token ID:SECRET or ONAIR_ACCESS_TOKEN")?;
        ApiClient::new(&self.api_url, token)
    }
}

/// The assets commands (an asset is the recording of one broadcast).
#[derive(Debug, Subcommand)]
pub enum AssetsCommand {
    /// List assets, newest first: prints `{"data": [...], "next_cursor": ...}`; pass
    /// `next_cursor` to --cursor for the next page.
    List {
        /// Assets per page (1..=100).
        #[arg(long, default_value_t = 25)]
        limit: u32,
        /// Page number, from 1 (ignored with --cursor).
        #[arg(long)]
        page: Option<u32>,
        /// Where the page starts: the `next_cursor` of the page before.
        #[arg(long)]
        cursor: Option<String>,
        /// Only the assets of this live stream.
        #[arg(long)]
        live_stream_id: Option<String>,
    },
    /// Show one asset.
    Get {
        /// The asset ID.
        id: String,
    },
    /// Change an asset's passthrough or meta (the given meta fields replace the old meta).
    Update {
        /// The asset ID.
        id: String,
        /// Arbitrary metadata (at most 255 characters; empty clears it).
        #[arg(long)]
        passthrough: Option<String>,
        #[command(flatten)]
        meta: MetaArgs,
    },
    /// Delete an asset and its recording (refused while its broadcast goes on).
    Delete {
        /// The asset ID.
        id: String,
    },
}

/// Runs an assets command against the API.
pub fn run_assets(command: AssetsCommand, api: &ApiArgs) -> Result<()> {
    let client = api.client()?;
    let path = |id: &str| format!("/assets/{}", path_segment(id));
    let value = match command {
        AssetsCommand::List {
            limit,
            page,
            cursor,
            live_stream_id,
        } => {
            let mut query = format!("?limit={limit}");
            if let Some(page) = page {
                query.push_str(&format!("&page={page}"));
            }
            for (name, value) in [("cursor", cursor), ("live_stream_id", live_stream_id)] {
                if let Some(value) = value {
                    query.push_str(&format!("&{name}={}", path_segment(&value)));
                }
            }
            // The whole page: `next_cursor` is how to get the next one.
            client.call("GET", &format!("/assets{query}"), None)?
        }
        AssetsCommand::Get { id } => client.call("GET", &path(&id), None)?["data"].take(),
        AssetsCommand::Update {
            id,
            passthrough,
            meta,
        } => {
            let mut body = json!({});
            if let Some(p) = passthrough {
                body["passthrough"] = json!(p);
            }
            meta.apply(&mut body);
            client.call("PATCH", &path(&id), Some(&body))?["data"].take()
        }
        AssetsCommand::Delete { id } => {
            client.call("DELETE", &path(&id), None)?;
            json!({ "deleted": id })
        }
    };
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

/// `value` with everything but unreserved URL characters percent-encoded, for a path segment
/// or a query value.
fn path_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn execute(client: &ApiClient, command: LiveStreamsCommand) -> Result<Value> {
    let data = |v: Value| v["data"].clone();
    let path = |id: &str| format!("/live-streams/{id}");
    Ok(match command {
        LiveStreamsCommand::Create {
            settings,
            playback_policies,
            audio_only,
            test,
            meta,
        } => {
            let mut body = json!({
                "playback_policies": if playback_policies.is_empty() { vec!["public".to_owned()] } else { playback_policies },
                "audio_only": audio_only,
                "test": test,
            });
            settings.apply(&mut body);
            meta.apply(&mut body);
            data(client.call("POST", "/live-streams", Some(&body))?)
        }
        LiveStreamsCommand::List {
            page,
            limit,
            status,
        } => {
            let mut query = format!("?page={page}&limit={limit}");
            if let Some(s) = status {
                if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    bail!("unknown status {s:?}");
                }
                query.push_str(&format!("&status={s}"));
            }
            data(client.call("GET", &format!("/live-streams{query}"), None)?)
        }
        LiveStreamsCommand::Get { id } => data(client.call("GET", &path(&id), None)?),
        LiveStreamsCommand::Update { id, settings, meta } => {
            let mut body = json!({});
            settings.apply(&mut body);
            meta.apply(&mut body);
            data(client.call("PATCH", &path(&id), Some(&body))?)
        }
        LiveStreamsCommand::Delete { id } => {
            client.call("DELETE", &path(&id), None)?;
            json!({ "deleted": id })
        }
        LiveStreamsCommand::ResetStreamKey { id } => {
            data(client.call("POST", &format!("{}/reset-stream-key", path(&id)), None)?)
        }
        LiveStreamsCommand::Disable { id } => {
            client.call("PUT", &format!("{}/disable", path(&id)), None)?;
            data(client.call("GET", &path(&id), None)?)
        }
        LiveStreamsCommand::Enable { id } => {
            client.call("PUT", &format!("{}/enable", path(&id)), None)?;
            data(client.call("GET", &path(&id), None)?)
        }
        LiveStreamsCommand::Complete { id } => {
            client.call("PUT", &format!("{}/complete", path(&id)), None)?;
            data(client.call("GET", &path(&id), None)?)
        }
    })
}

/// The access-tokens commands.
#[derive(Debug, Subcommand)]
pub enum AccessTokensCommand {
    /// Create a token; its secret is printed once and cannot be shown again.
    Create {
        /// A name to recognise the token by.
        #[arg(long, default_value = "cli")]
        name: String,
        /// Read permission only (GET requests).
        #[arg(long)]
        read_only: bool,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token: requests with it are refused from now on.
    Revoke {
        /// The token ID.
        id: String,
    },
}

/// Runs an access-tokens command on the database in `data_dir`.
pub fn run_access_tokens(command: AccessTokensCommand, data_dir: &Path) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let value = runtime.block_on(async {
        let store = SqliteStore::open(data_dir)
            .await
            .with_context(|| format!("opening the database in {}", data_dir.display()))?;
        Ok::<Value, anyhow::Error>(match command {
            AccessTokensCommand::Create { name, read_only } => {
                let permissions = if read_only {
                    Permissions::READ_ONLY
                } else {
                    Permissions::READ_WRITE
                };
                let issued = store.create_access_token(&name, permissions).await?;
                json!({
                    "id": issued.token.id,
                    "secret": issued.secret,
                    "name": name,
                    "permissions": permissions,
                    "env": format!("ONAIR_ACCESS_TOKEN={}:{}", issued.token.id, issued.secret),
                })
            }
            AccessTokensCommand::List => serde_json::to_value(store.list_access_tokens().await?)?,
            AccessTokensCommand::Revoke { id } => {
                if !store.revoke_access_token(&id).await? {
                    bail!("no access token with ID {id:?}");
                }
                json!({ "revoked": id })
            }
        })
    })?;
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

/// `onair webhooks ...`.
#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Send one signed sample event (`video.live_stream.updated` about the made-up live stream
    /// `onair-test-live-stream`) to URL and print the answer's status; exits non-zero unless
    /// it is 2xx.
    Test {
        /// The receiver, `http://` or `https://`.
        url: String,
        /// The secret to sign with (the receiver's webhook secret).
        #[arg(long, env = "ONAIR_WEBHOOK_SECRET", hide_env_values = true)]
        secret: String,
        /// The environment ID named in the envelope [default: the server's default].
        #[arg(long)]
        environment_id: Option<String>,
        /// The environment name named in the envelope [default: the server's default].
        #[arg(long)]
        environment_name: Option<String>,
    },
}

/// Runs a webhooks command.
pub fn run_webhooks(command: WebhooksCommand) -> Result<()> {
    let WebhooksCommand::Test {
        url,
        secret,
        environment_id,
        environment_name,
    } = command;
    let endpoint = events::WebhookEndpoint::new(&url, &secret)?;
    let mut environment = events::Environment::default();
    if let Some(id) = environment_id {
        environment.id = id;
    }
    if let Some(name) = environment_name {
        environment.name = name;
    }
    environment.validate()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (event, result) = runtime.block_on(events::send_test_event(&endpoint, &environment))?;
    let target = endpoint.display_url();
    match result {
        Ok(status) if (200..300).contains(&status) => {
            println!(
                "{status} {} {} sent to {target}",
                event.event_type, event.id
            );
            Ok(())
        }
        Ok(status) => bail!(
            "{target} answered {status} to {} {}",
            event.event_type,
            event.id
        ),
        Err(reason) => bail!("sending {} to {target}: {reason}", event.event_type),
    }
}

#[cfg(test)]
mod tests {
    use super::path_segment;

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(path_segment("Ab9-_.~"), "Ab9-_.~");
        assert_eq!(path_segment("a b/c?d&e"), "a%20b%2Fc%3Fd%26e");
        assert_eq!(path_segment("é"), "%C3%A9");
    }
}
