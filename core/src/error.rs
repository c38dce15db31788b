//! The one error type every capability returns.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What kind of failure an [`Error`] describes. Callers branch on this, never
/// on the message text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorKind {
    /// The named thing (row, key, collection, node, file) does not exist.
    NotFound,
    /// The thing being created exists already.
    AlreadyExists,
    /// The caller passed something malformed: fix the input and retry.
    InvalidInput,
    /// The backend does not support this operation.
    Unsupported,
    /// Temporary: the server is down or overloaded. Retrying may succeed.
    Unavailable,
    /// A constraint or concurrent change prevented the operation.
    Conflict,
    /// The configuration (plugins.toml or a store section) is wrong.
    Config,
    /// A plugin library cannot be used with this host.
    Incompatible,
    /// The plugin panicked; the host caught it and kept running.
    Panicked,
    /// Any other failure reported by the backend, with its own message.
    Backend,
    /// The principal a handle is bound to may not do this (see the host's
    /// access control); nothing reached the backend.
    PermissionDenied,
}

impl ErrorKind {
    /// The kind's name as it appears in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Config => "configuration error",
            ErrorKind::Incompatible => "incompatible plugin",
            ErrorKind::Panicked => "plugin panicked",
            ErrorKind::Backend => "backend error",
            ErrorKind::PermissionDenied => "permission denied",
        }
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Unavailable)
    }
}

/// An error from Backplane or one of its backends.
///
/// It carries a [`ErrorKind`], a message that says what happened and what to
/// do, and (once it has passed through the host) the store name and backend.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    store: Option<String>,
    backend: Option<String>,
}

/// `Result` with Backplane's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            store: None,
            backend: None,
        }
    }
    /// [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// [`ErrorKind::AlreadyExists`].
    pub fn already_exists(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::AlreadyExists, message)
    }
    /// [`ErrorKind::InvalidInput`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }
    /// [`ErrorKind::Unsupported`].
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
    /// [`ErrorKind::Unavailable`].
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    /// [`ErrorKind::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    /// [`ErrorKind::Config`].
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
    /// [`ErrorKind::Incompatible`].
    pub fn incompatible(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Incompatible, message)
    }
    /// [`ErrorKind::PermissionDenied`].
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::PermissionDenied, message)
    }
    /// [`ErrorKind::Backend`].
    pub fn backend(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Backend, message)
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// The message, without store and backend.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The store the error came from, when known.
    pub fn store(&self) -> Option<&str> {
        self.store.as_deref()
    }
    /// The backend the error came from, when known.
    pub fn backend_name(&self) -> Option<&str> {
        self.backend.as_deref()
    }

    /// Attach the store name and backend, keeping any already set.
    pub fn in_store(mut self, store: &str, backend: &str) -> Self {
        if self.store.is_none() {
            self.store = Some(store.to_string());
        }
        if self.backend.is_none() {
            self.backend = Some(backend.to_string());
        }
        self
    }

    /// Prefix the message with context (`"{context}: {message}"`).
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.store, &self.backend) {
            (Some(s), Some(b)) => write!(f, "store '{s}' ({b}): ")?,
            (Some(s), None) => write!(f, "store '{s}': ")?,
            (None, Some(b)) => write!(f, "{b}: ")?,
            (None, None) => {}
        }
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?}, {self})", self.kind)
    }
}

impl std::error::Error for Error {}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::invalid(format!("invalid JSON: {e}"))
    }
}
