//! The connection to the server: the plugin's own tokio runtime, the gRPC
//! client, the check of the server's version, and the client's errors as
//! Backplane errors.
//!
//! Every call is one or a few gRPC requests run to completion on the
//! runtime (one worker thread; the calling thread drives the request). The
//! host's tokio is another copy of tokio, which a plugin cannot share
//! across the ABI boundary.

use crate::config::Settings;
use backplane_core::kit::redact::{redact_url, scrub, userinfo};
use backplane_core::{Error, Result};
use qdrant_client::{Qdrant, QdrantError};
use std::future::Future;
use tonic::Code;

/// The oldest server release served: collection metadata came in 1.16.
const MIN_SERVER: (u32, u32) = (1, 16);

/// `major.minor` of a version string such as `1.18.3`.
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim_start_matches('v').split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// What must not appear in a message about `settings`' server.
fn secrets_of(settings: &Settings) -> Vec<String> {
    let mut out: Vec<String> = userinfo(&settings.url)
        .map(str::to_string)
        .into_iter()
        .collect();
    if let Some(k) = &settings.api_key {
        out.push(k.expose().clone());
    }
    out
}

/// A connected client and the runtime its requests run on.
pub(crate) struct Client {
    // Declared before the runtime: dropped first.
    qdrant: Qdrant,
    rt: tokio::runtime::Runtime,
    /// The server's gRPC url, for messages, its password masked.
    url: String,
    /// What the client's own messages must never show: the url's user
    /// info and the API key.
    secrets: Vec<String>,
}

impl Client {
    /// Connect to the server `settings` names and check it: a health check
    /// (for the version), then a collection listing (the health check
    /// needs no API key; the listing does). An absent server or a refused
    /// key is an error here, not at the first call. Returns the client and
    /// the server's version.
    pub(crate) fn connect(settings: &Settings) -> Result<(Client, String)> {
        let rt = backplane_core::kit::runtime::runtime("qdrant")?;
        let qdrant = Qdrant::from_url(&settings.url)
            .api_key(settings.api_key.as_ref().map(|k| k.expose().clone()))
            .timeout(settings.timeout)
            .connect_timeout(settings.connect_timeout)
            .skip_compatibility_check()
            .build()
            .map_err(|e| {
                Error::config(format!(
                    "`url` \"{}\" is not a usable gRPC endpoint ({}): give e.g. url = \"http://127.0.0.1:6334\"",
                    redact_url(&settings.url),
                    scrub(&e.to_string(), &secrets_of(settings).iter().map(String::as_str).collect::<Vec<_>>())
                ))
            })?;
        let client = Client {
            qdrant,
            rt,
            url: redact_url(&settings.url),
            secrets: secrets_of(settings),
        };
        let reply = client
            .call(|q| q.health_check())
            .map_err(|e| client.error(e, "connecting"))?;
        match major_minor(&reply.version) {
            Some(v) if v < MIN_SERVER => {
                return Err(Error::incompatible(format!(
                    "the Qdrant server at {} is version {}, but the qdrant backend needs {}.{} or later (it keeps what it knows of a collection in the collection's metadata, which Qdrant has since {}.{}): upgrade the server",
                    client.url, reply.version, MIN_SERVER.0, MIN_SERVER.1, MIN_SERVER.0, MIN_SERVER.1
                )))
            }
            Some((1, _)) => {}
            _ => log::warn!(
                "qdrant: the server at {} is version {}; this plugin's client (qdrant-client 1.20) speaks Qdrant 1.x",
                client.url,
                reply.version
            ),
        }
        client
            .call(|q| q.list_collections())
            .map_err(|e| client.error(e, "connecting"))?;
        Ok((client, reply.version))
    }

    /// The server's gRPC url.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Run the request `f` makes to completion.
    pub(crate) fn call<'a, F: Future>(&'a self, f: impl FnOnce(&'a Qdrant) -> F) -> F::Output {
        self.rt.block_on(f(&self.qdrant))
    }

    /// A client error as one of ours; `what` says what was being done. The
    /// client's message may quote the url: its secrets are masked.
    pub(crate) fn error(&self, e: QdrantError, what: &str) -> Error {
        let err = self.classify(e, what);
        let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        Error::new(err.kind(), scrub(err.message(), &secrets))
    }

    fn classify(&self, e: QdrantError, what: &str) -> Error {
        let url = &self.url;
        let status = match &e {
            QdrantError::ResponseError { status }
            | QdrantError::ResourceExhaustedError { status, .. } => status,
            QdrantError::InvalidUri(_) => {
                return Error::config(format!(
                    "{what}: `url` \"{url}\" is not a valid URI ({e}): give e.g. url = \"http://127.0.0.1:6334\""
                ))
            }
            _ => return Error::backend(format!("{what}: {e}")),
        };
        let msg = status.message();
        // The client reports a failed connect as `Internal`.
        let unreachable = msg.starts_with("Failed to connect")
            || (status.code() == Code::Unknown
                && (msg.contains("transport") || msg.contains("connection")));
        if unreachable {
            return Error::unavailable(format!(
                "{what}: no Qdrant server answers at {url} ({msg}): check that it runs and that `url` names its gRPC port (6334 by default); the call can be retried"
            ));
        }
        // An HTTP/2 failure on a connection that was made: whatever listens
        // there does not speak gRPC (the REST port, or another server).
        if status.code() == Code::Internal
            && (msg.contains("h2 protocol error") || msg.contains("http2 error"))
        {
            return Error::config(format!(
                "{what}: the server at {url} answered, but not as Qdrant's gRPC does ({msg}): `url` must name the gRPC port (6334 by default), not the REST port"
            ));
        }
        if msg.starts_with("Failed to create TLS config") {
            return Error::config(format!("{what}: TLS to {url}: {msg}"));
        }
        match status.code() {
            Code::NotFound => Error::not_found(format!("{what}: {msg}")),
            Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
                Error::invalid(format!("{what}: the Qdrant server refused the request: {msg}"))
            }
            Code::AlreadyExists => Error::already_exists(format!("{what}: {msg}")),
            Code::Unauthenticated | Code::PermissionDenied => Error::config(format!(
                "{what}: the Qdrant server at {url} refused the credentials ({msg}): set the server's API key with `api_key_env` (or `api_key`)"
            )),
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::ResourceExhausted
            | Code::Aborted => Error::unavailable(format!(
                "{what}: the Qdrant server at {url} did not answer ({msg}): check that it runs and that `url` names its gRPC port (6334 by default); the call can be retried"
            )),
            code => Error::backend(format!("{what}: Qdrant answered {code:?}: {msg}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_versions() {
        assert_eq!(major_minor("1.18.3"), Some((1, 18)));
        assert_eq!(major_minor("v1.9.0-rc1"), Some((1, 9)));
        assert_eq!(major_minor("dev"), None);
        assert!(major_minor("1.15.5").unwrap() < MIN_SERVER);
        assert!(major_minor("1.16.0").unwrap() >= MIN_SERVER);
    }
}
