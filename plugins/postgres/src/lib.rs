//! `backplane-plugin-postgres` is Backplane's PostgreSQL backend, named
//! `postgres`: relational, graph and vector stores on a PostgreSQL server
//! (12 or later), every table in one configurable schema so several
//! applications share a database.
//!
//! The plugin talks to the server with the synchronous `postgres` crate
//! (each client drives its own small tokio runtime, so the plugin owns its
//! runtime and never touches the host's), through a pool of connections
//! per store: `pool_size` connections at most, `connect_timeout` to reach a
//! server, `timeout` for a statement (`statement_timeout`) and for a free
//! connection. Opening a store connects once, so a wrong password is one
//! `Config` error at open and an unreachable server one `Unavailable`
//! error. Later, a server that goes away makes calls fail with
//! `Unavailable`; the pool drops the broken connections and reconnects by
//! itself. Several hosts in `url` with `target_session_attrs=read-write`
//! send new connections to whichever is the primary after a failover. TLS
//! is not built in: `sslmode=require` and stricter are refused.
//!
//! # Layout
//!
//! - `lib.rs`: [`PostgresPlugin`], its [`BackendDescriptor`], opening a
//!   store, and the one [`export_plugin!`](backplane_core::export_plugin).
//! - [`config`]: [`PgConfig`], the store section of plugins.toml.
//! - [`pool`]: the connection pool, kept statements, and the mapping from
//!   the driver's errors (SQLSTATEs) to Backplane's kinds.
//! - [`sql`]: placeholder rewriting (`?`, `?N`, `:name` to `$n`) and the
//!   few facts about SQL text the plugin needs.
//! - [`types`]: values both ways between Backplane and PostgreSQL types.
//! - [`relational`]: [`PgRelational`], the relational capability.
//! - [`dump`]: `backup`/`restore` to a portable file, without `pg_dump`.
//! - [`filter`]: the payload filter language translated to SQL over
//!   `jsonb`.
//! - [`graph`]: [`PgGraph`], nodes and edges tables, recursive traversal.
//! - [`vector`]: [`PgVector`], collections with exact search, or pgvector's
//!   HNSW index when the server has the extension.
#![warn(missing_docs)]

pub mod config;
pub mod dump;
pub mod filter;
pub mod graph;
pub mod pool;
pub mod relational;
pub mod sql;
pub mod types;
pub mod vector;

pub use config::PgConfig;
pub use graph::PgGraph;
pub use relational::PgRelational;
pub use vector::PgVector;

use backplane_core::{
    BackendDescriptor, Capability, Graph, Plugin, Relational, Result, StoreConfig, Vector,
};
use pool::Pool;
use std::sync::Arc;

/// The backend's name in plugins.toml.
pub const BACKEND: &str = "postgres";

/// The plugin: one backend, `postgres`, serving relational, graph and
/// vector stores.
#[derive(Clone, Copy, Debug, Default)]
pub struct PostgresPlugin;

impl PostgresPlugin {
    /// What the `postgres` backend declares.
    pub fn descriptor() -> BackendDescriptor {
        let mut d = BackendDescriptor::new(
            BACKEND,
            &[Capability::Relational, Capability::Vector, Capability::Graph],
        )
        .describe(
            "PostgreSQL server: relational, graph (recursive queries), vector (pgvector HNSW when installed, else exact); pooled, schema per store",
        );
        d.persistent = true;
        d
    }
}

/// Parse the section, connect once (a refused login or an unreachable
/// server fails here), and create the schema if it is missing.
pub fn open_pool(config: &StoreConfig) -> Result<Arc<Pool>> {
    let settings = PgConfig::settings(config)?;
    let pool = Arc::new(Pool::new(settings));
    {
        let mut conn = pool.get()?;
        const EXISTS: &str = "SELECT 1 FROM pg_namespace WHERE nspname = $1";
        let schema = pool.schema().to_string();
        let exists = match conn.client.query_opt(EXISTS, &[&schema]) {
            Ok(r) => r.is_some(),
            Err(e) => return Err(conn.error(&e, EXISTS)),
        };
        if !exists {
            let create = format!("CREATE SCHEMA IF NOT EXISTS {}", sql::quote_ident(&schema));
            if let Err(e) = conn.client.batch_execute(&create) {
                return Err(conn.error(&e, &create).context(format!(
                    "[{}.{}]: cannot create schema '{schema}'",
                    config.capability, config.store
                )));
            }
            log::info!("postgres: created schema '{schema}' on {}", pool.shown());
        }
    }
    log::debug!(
        "postgres: opened [{}.{}] on {} (schema {})",
        config.capability,
        config.store,
        pool.shown(),
        pool.schema()
    );
    Ok(pool)
}

impl Plugin for PostgresPlugin {
    fn name(&self) -> &str {
        BACKEND
    }

    fn version(&self) -> &str {
        env!("CARGO_PKG_VERSION")
    }

    fn backends(&self) -> Vec<BackendDescriptor> {
        vec![Self::descriptor()]
    }

    fn open_relational(&self, config: &StoreConfig) -> Result<Box<dyn Relational>> {
        Ok(Box::new(PgRelational::new(open_pool(config)?)))
    }

    fn open_graph(&self, config: &StoreConfig) -> Result<Box<dyn Graph>> {
        Ok(Box::new(PgGraph::open(open_pool(config)?)?))
    }

    fn open_vector(&self, config: &StoreConfig) -> Result<Box<dyn Vector>> {
        Ok(Box::new(PgVector::open(open_pool(config)?)?))
    }
}

backplane_core::export_plugin!(PostgresPlugin);
