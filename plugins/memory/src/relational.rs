//! The relational capability is not served by `memory`.
//!
//! A relational store runs SQL, and there is no SQL engine in memory:
//! writing one would not be the "simplest correct implementation" this
//! backend exists to be. The `sqlite` backend with `path = ":memory:"` is an
//! in-memory relational store with a real engine, so the descriptor leaves
//! relational out and opening one explains where to go instead.

use backplane_core::{Error, StoreConfig};

/// The error `open_relational` returns: which backend to use instead.
pub(crate) fn unsupported(config: &StoreConfig) -> Error {
    Error::unsupported(format!(
        "[relational.{}]: the memory backend has no SQL engine and does not serve relational stores: \
         use backend = \"sqlite\" with path = \":memory:\" for an in-memory database",
        config.store
    ))
}
