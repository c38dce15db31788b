#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod backup;
mod bind;
mod client;
mod collections;
mod config;
mod dump;
mod error;
mod exact;
mod filter;
mod graph;
mod pgvector;
mod port;
mod relational;
mod restore;
mod started;
mod statement;
mod types;
mod vector;

pub use config::PgConfig;

use backplane_core::{
    BackendDescriptor, Capability, Graph, Plugin, Relational, Result, StoreConfig, Vector,
};
use client::Pool;
use graph::PgGraph;
use relational::PgRelational;
use vector::PgVector;

/// The backend's name in plugins.toml.
const BACKEND: &str = "postgres";

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
        Ok(Box::new(PgRelational::new(Pool::open(config)?)))
    }

    fn open_graph(&self, config: &StoreConfig) -> Result<Box<dyn Graph>> {
        Ok(Box::new(PgGraph::open(Pool::open(config)?)?))
    }

    fn open_vector(&self, config: &StoreConfig) -> Result<Box<dyn Vector>> {
        Ok(Box::new(PgVector::open(Pool::open(config)?)?))
    }
}

backplane_core::export_plugin!(PostgresPlugin);
