//! The connection to the server: a blocking HTTP agent (ureq) with the
//! section's timeouts, the token header, the paths of Chroma's v2 API, and
//! the server's answers as Backplane errors.
//!
//! Every call is a few JSON requests, each bounded by `timeout_ms` as a
//! whole (connect, send, wait, read) and by `connect_timeout_ms` for the
//! connect; nothing hangs past them.

use crate::config::{Settings, TokenHeader};
use backplane_core::kit::redact::{redact_url, scrub};
use backplane_core::{Error, ErrorKind, Result};
use serde_json::Value as Json;

/// The most bytes of one answer read (a page of 10,000 records of 4,096
/// dimensions with payloads stays under it).
const MAX_ANSWER: u64 = 1 << 30;

/// A client of one server, tenant and database.
pub(crate) struct Client {
    agent: ureq::Agent,
    /// `<url>/api/v2`.
    api: String,
    /// `<api>/tenants/<t>/databases/<d>/collections`.
    collections: String,
    /// The url as messages show it (any password masked).
    pub(crate) shown: String,
    /// The token and its header.
    token: Option<(String, TokenHeader)>,
}

/// How a request went wrong before an answer came.
fn transport(shown: &str, e: ureq::Error, what: &str) -> Error {
    match e {
        ureq::Error::Protocol(p) => Error::config(format!(
            "{what}: the server at {shown} does not answer as an HTTP server ({p}): check `url` names a Chroma server"
        )),
        ureq::Error::BodyExceedsLimit(n) => Error::backend(format!(
            "{what}: Chroma at {shown} answered more than {n} bytes at once: ask for fewer records per call"
        )),
        ureq::Error::Timeout(t) => Error::unavailable(format!(
            "{what}: Chroma at {shown} did not answer in time ({t}; `timeout_ms` / `connect_timeout_ms` bound it): the call can be retried"
        )),
        other => Error::unavailable(format!(
            "{what}: Chroma at {shown} is unreachable ({other}): start it or fix `url`; the call can be retried"
        )),
    }
}

impl Client {
    /// A client for `settings` (nothing is sent yet).
    pub(crate) fn new(settings: &Settings) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(settings.timeout))
            .timeout_connect(Some(settings.connect_timeout))
            .http_status_as_error(false)
            .user_agent(concat!(
                "backplane-plugin-chroma/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .into();
        let api = format!("{}/api/v2", settings.url);
        let collections = format!(
            "{api}/tenants/{}/databases/{}/collections",
            settings.tenant, settings.database
        );
        Client {
            agent,
            api,
            collections,
            shown: redact_url(&settings.url),
            token: settings
                .token
                .as_ref()
                .map(|(t, h)| (t.expose().clone(), *h)),
        }
    }

    /// `<url>/api/v2` + `path`.
    pub(crate) fn api(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    /// The url of the collections of the configured database, + `path`.
    pub(crate) fn collections(&self, path: &str) -> String {
        format!("{}{path}", self.collections)
    }

    /// Send one request; the status and the answer's text. `what` names
    /// the call in messages.
    pub(crate) fn raw(
        &self,
        method: &str,
        url: &str,
        body: Option<&Json>,
        what: &str,
    ) -> Result<(u16, String)> {
        let token = self.token.as_ref().map(|(t, h)| match h {
            TokenHeader::XChromaToken => ("x-chroma-token", t.clone()),
            TokenHeader::Authorization => ("authorization", format!("Bearer {t}")),
        });
        macro_rules! with_token {
            ($req:expr) => {{
                let req = $req;
                match &token {
                    Some((h, v)) => req.header(*h, v.as_str()),
                    None => req,
                }
            }};
        }
        let sent = match (method, body) {
            ("GET", _) => with_token!(self.agent.get(url)).call(),
            ("DELETE", _) => with_token!(self.agent.delete(url)).call(),
            (m, body) => {
                let text = body.map(Json::to_string).unwrap_or_default();
                let req = if m == "PUT" {
                    self.agent.put(url)
                } else {
                    self.agent.post(url)
                };
                with_token!(req.header("content-type", "application/json")).send(text.as_str())
            }
        };
        let mut answer = sent.map_err(|e| self.scrubbed(transport(&self.shown, e, what)))?;
        let status = answer.status().as_u16();
        let text = answer
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .map_err(|e| self.scrubbed(transport(&self.shown, e, what)))?;
        Ok((status, text))
    }

    /// Send one request and read a JSON answer; any status but 2xx is an
    /// error ([`Client::status_error`]).
    pub(crate) fn call(
        &self,
        method: &str,
        url: &str,
        body: Option<&Json>,
        what: &str,
    ) -> Result<Json> {
        let (status, text) = self.raw(method, url, body, what)?;
        if !(200..300).contains(&status) {
            return Err(self.status_error(status, &text, what));
        }
        serde_json::from_str(&text).map_err(|e| {
            Error::backend(format!(
                "{what}: the server at {} answered HTTP {status} with something that is not Chroma's JSON ({e}): check `url` names a Chroma 1.x server",
                self.shown
            ))
        })
    }

    /// The error for an answer with a status other than 2xx: Chroma's own
    /// message (`{"error": .., "message": ..}`) kept, the kind from the
    /// status.
    pub(crate) fn status_error(&self, status: u16, text: &str, what: &str) -> Error {
        let said = serde_json::from_str::<Json>(text)
            .ok()
            .and_then(|j| {
                j.get("message")
                    .and_then(Json::as_str)
                    .map(str::to_string)
                    .or_else(|| j.get("error").and_then(Json::as_str).map(str::to_string))
            })
            .unwrap_or_else(|| {
                let t = text.trim();
                if t.chars().count() > 200 {
                    format!("{}…", t.chars().take(200).collect::<String>())
                } else {
                    t.to_string()
                }
            });
        let (kind, hint) = match status {
            400 | 422 => (ErrorKind::InvalidInput, ""),
            401 | 403 => (
                ErrorKind::Config,
                ": the server refused the credentials: set `token_env` to a variable holding a valid token (and `token_header` as the server expects)",
            ),
            404 => (ErrorKind::NotFound, ""),
            409 => (ErrorKind::AlreadyExists, ""),
            429 | 502 | 503 | 504 => (ErrorKind::Unavailable, "; the call can be retried"),
            _ => (ErrorKind::Backend, ""),
        };
        self.scrubbed(Error::new(
            kind,
            format!(
                "{what}: Chroma at {} answered HTTP {status}: {said}{hint}",
                self.shown
            ),
        ))
    }

    /// `e` with the token taken out of its message, should the server or
    /// the transport have echoed it.
    fn scrubbed(&self, e: Error) -> Error {
        match &self.token {
            Some((t, _)) if e.message().contains(t.as_str()) => {
                Error::new(e.kind(), scrub(e.message(), &[t.as_str()]))
            }
            _ => e,
        }
    }
}
