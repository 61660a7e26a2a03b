//! Where webhooks go: endpoints (URL and secret) and the environment named in every envelope.

use std::fmt;

use reqwest::Url;
use sha2::{Digest, Sha256};

use crate::WebhookError;

/// Default `environment.name` of the envelope.
pub const DEFAULT_ENVIRONMENT_NAME: &str = "production";
/// Default `environment.id` of the envelope.
pub const DEFAULT_ENVIRONMENT_ID: &str = "onair";

/// The environment every envelope names (`environment: {name, id}`); receivers written for
/// the hosted API may route on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// E.g. `production`.
    pub name: String,
    /// E.g. `onair`.
    pub id: String,
}

impl Default for Environment {
    fn default() -> Self {
        Environment {
            name: DEFAULT_ENVIRONMENT_NAME.to_owned(),
            id: DEFAULT_ENVIRONMENT_ID.to_owned(),
        }
    }
}

impl Environment {
    /// Checks that neither field is empty.
    pub fn validate(&self) -> Result<(), WebhookError> {
        if self.name.trim().is_empty() {
            return Err(WebhookError::InvalidEnvironment { field: "name" });
        }
        if self.id.trim().is_empty() {
            return Err(WebhookError::InvalidEnvironment { field: "id" });
        }
        Ok(())
    }
}

/// One webhook endpoint: an `http`/`https` URL and the secret its deliveries are signed with.
///
/// `Debug` and [`WebhookEndpoint::display_url`] show neither the secret nor credentials or a
/// query string in the URL (they may carry tokens).
#[derive(Clone)]
pub struct WebhookEndpoint {
    url: Url,
    secret: String,
    key: String,
    display: String,
}

impl WebhookEndpoint {
    /// Validates the URL (absolute, `http` or `https`, with a host) and the secret (not
    /// empty).
    pub fn new(url: &str, secret: &str) -> Result<Self, WebhookError> {
        let parsed = Url::parse(url.trim()).map_err(|e| WebhookError::InvalidUrl {
            url: redact(url),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(WebhookError::InvalidUrl {
                url: redact(url),
                reason: "the scheme must be http or https".to_owned(),
            });
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(WebhookError::InvalidUrl {
                url: redact(url),
                reason: "no host".to_owned(),
            });
        }
        let display = display_url(&parsed);
        if secret.is_empty() {
            return Err(WebhookError::MissingSecret { url: display });
        }
        Ok(WebhookEndpoint {
            key: endpoint_key(&parsed),
            url: parsed,
            secret: secret.to_owned(),
            display,
        })
    }

    /// The URL deliveries are POSTed to.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The signing secret.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The store's name for this endpoint's cursor: `sha256:` and the hex SHA-256 of the URL.
    /// Changing the secret keeps the cursor; changing the URL makes a new endpoint.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The URL for logs: scheme, host, port and path, long path segments shortened.
    pub fn display_url(&self) -> &str {
        &self.display
    }
}

impl fmt::Debug for WebhookEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookEndpoint")
            .field("url", &self.display)
            .field("secret", &"<redacted>")
            .finish()
    }
}

fn endpoint_key(url: &Url) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(url.as_str().as_bytes()))
    )
}

/// Path segments at least this long are shortened in logs: services such as Slack put the
/// endpoint's credential in the path (`/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX`).
const LONG_SEGMENT: usize = 16;

fn display_url(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    let path: Vec<String> = url
        .path()
        .split('/')
        .map(|segment| {
            if segment.chars().count() >= LONG_SEGMENT {
                format!("{}...", segment.chars().take(4).collect::<String>())
            } else {
                segment.to_owned()
            }
        })
        .collect();
    shown.set_path(&path.join("/"));
    shown.to_string()
}

/// An unparsable URL for an error message: only up to the first `@`, `?` or `#` past the
/// scheme, so credentials and tokens stay out of logs.
fn redact(url: &str) -> String {
    let cut = url.find(['@', '?', '#']).map_or(url, |i| &url[..i]);
    if cut.len() < url.len() {
        format!("{cut}…")
    } else {
        cut.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_url_and_secret() {
        let e = WebhookEndpoint::new("http://127.0.0.1:9/hook", "s").unwrap();
        assert_eq!(e.url().as_str(), "http://127.0.0.1:9/hook");
        assert!(e.key().starts_with("sha256:") && e.key().len() == 7 + 64);
        for bad in [
            "",
            "not a url",
            "ftp://example.com/",
            "/relative",
            "http://",
        ] {
            assert!(
                matches!(
                    WebhookEndpoint::new(bad, "s"),
                    Err(WebhookError::InvalidUrl { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            WebhookEndpoint::new("https://example.com/", ""),
            Err(WebhookError::MissingSecret { .. })
        ));
    }

    #[test]
    fn never_shows_secrets() {
        let e = WebhookEndpoint::new("https://user:pw@example.com/h?token=t", "TOPSECRET").unwrap();
        let shown = format!("{e:?} {}", e.display_url());
        for secret in ["TOPSECRET", "pw", "token=t"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        // A credential in the path (Slack style) is shortened; short segments stay readable.
        let slack = WebhookEndpoint::new(
            "https://hooks.example.com/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX",
            "s",
        )
        .unwrap();
        assert!(
            !slack.display_url().contains("XXXXXXXXXXXXXXXX"),
            "{}",
            slack.display_url()
        );
        assert!(slack.display_url().contains("/services/T000/B000/XXXX"));
        // The key depends on the URL only.
        let same_url =
            WebhookEndpoint::new("https://user:pw@example.com/h?token=t", "other").unwrap();
        assert_eq!(e.key(), same_url.key());
        let err = WebhookEndpoint::new("htp:/x@y?secret", "s")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret\""), "{err}");
    }
}
