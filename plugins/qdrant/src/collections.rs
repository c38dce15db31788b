//! Collections on the server: their names, how one is created, and what
//! the plugin knows of each ([`Known`]), cached per store.
//!
//! A collection `name` is the server's collection `<collection_prefix><name>`
//! with two named vectors for cosine (`search`, the one searched, which
//! Qdrant normalises; `raw`, dot distance, on disk, never indexed, which
//! keeps the vector as given so `get`/`scroll` return it bit for bit) and
//! one (`search`) for dot and euclidean. Its metadata carries
//! `backplane_format = 1` (a collection without it was not made here and is
//! left alone) and `backplane_dotted_keys`.
//!
//! # The payload shape
//!
//! The filter translation's one collection-wide fact, whether some payload
//! has a top-level key containing `.`, is kept in the collection's
//! metadata so every process sharing the collection knows it: upsert sets
//! it before writing such a payload, and a filter with a dotted key
//! re-reads it while the cached value is still false. Empty arrays are
//! always assumed possible (one more clause in `exists`, nothing to keep in
//! sync).

use crate::backend::QdrantVector;
use crate::config::Settings;
use crate::filter::Grpc;
use backplane_core::{Distance, Error, ErrorKind, Filter, Result};
use backplane_qdrant_common::collection::{check_name, keeps_raw, unknown, RAW_VECTOR};
use backplane_qdrant_common::filter::{reads_dotted_keys, translate, Translation};
use backplane_qdrant_common::point::PayloadShape;
use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::vectors_config::Config as VConfig;
use qdrant_client::qdrant::{
    with_vectors_selector, CreateCollection, Distance as QDistance, Filter as QFilter,
    HnswConfigDiff, UpdateCollection, Value, VectorParams, VectorParamsMap, VectorsConfig,
    VectorsSelector, WithVectorsSelector,
};
use qdrant_client::QdrantError;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The searched vector.
pub(crate) const SEARCH_VECTOR: &str = "search";
/// Metadata key marking a collection made by this backend.
const META_FORMAT: &str = "backplane_format";
/// Metadata key: some payload has a top-level key containing `.`.
const META_DOTTED: &str = "backplane_dotted_keys";

/// `m` locked, poisoned or not.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn qdistance(d: Distance) -> QDistance {
    match d {
        Distance::Cosine => QDistance::Cosine,
        Distance::Dot => QDistance::Dot,
        Distance::Euclidean => QDistance::Euclid,
    }
}

fn bool_value(b: bool) -> Value {
    Value {
        kind: Some(Kind::BoolValue(b)),
    }
}

/// What the plugin knows of one collection.
#[derive(Debug)]
pub(crate) struct Known {
    pub(crate) dimension: u32,
    pub(crate) distance: Distance,
    /// See the module docs; only ever turns on.
    pub(crate) dotted: AtomicBool,
}

impl Known {
    fn shape(&self) -> PayloadShape {
        PayloadShape {
            dotted_keys: self.dotted.load(Ordering::Acquire),
            empty_arrays: true,
        }
    }

    /// The vector `get` and `scroll` return.
    pub(crate) fn stored_vector(&self) -> &'static str {
        if keeps_raw(self.distance) {
            RAW_VECTOR
        } else {
            SEARCH_VECTOR
        }
    }

    /// What a read asks for to get [`Self::stored_vector`].
    pub(crate) fn with_vector(&self) -> Option<WithVectorsSelector> {
        Some(WithVectorsSelector {
            selector_options: Some(with_vectors_selector::SelectorOptions::Include(
                VectorsSelector {
                    names: vec![self.stored_vector().to_string()],
                },
            )),
        })
    }
}

/// The request creating collection `full` (the server's name) with the
/// settings of the store's section.
// `on_disk` and `on_disk_payload` are deprecated in the 1.20 client for
// `memory` settings that servers before 1.20 do not know; servers since
// then still honour them.
#[allow(deprecated)]
pub(crate) fn create_request(
    s: &Settings,
    full: String,
    dimension: u32,
    distance: Distance,
) -> CreateCollection {
    let params = |d: QDistance, on_disk: Option<bool>, hnsw: Option<HnswConfigDiff>| VectorParams {
        size: u64::from(dimension),
        distance: d as i32,
        on_disk,
        hnsw_config: hnsw,
        ..VectorParams::default()
    };
    let mut map = HashMap::from([(
        SEARCH_VECTOR.to_string(),
        params(qdistance(distance), s.vectors_on_disk, None),
    )]);
    if keeps_raw(distance) {
        map.insert(
            RAW_VECTOR.to_string(),
            params(
                QDistance::Dot,
                Some(true),
                Some(HnswConfigDiff {
                    m: Some(0),
                    ..HnswConfigDiff::default()
                }),
            ),
        );
    }
    let metadata = HashMap::from([
        (
            META_FORMAT.to_string(),
            Value {
                kind: Some(Kind::IntegerValue(1)),
            },
        ),
        (META_DOTTED.to_string(), bool_value(false)),
    ]);
    CreateCollection {
        collection_name: full,
        vectors_config: Some(VectorsConfig {
            config: Some(VConfig::ParamsMap(VectorParamsMap { map })),
        }),
        hnsw_config: (s.hnsw_m.is_some() || s.hnsw_ef_construct.is_some()).then(|| {
            HnswConfigDiff {
                m: s.hnsw_m,
                ef_construct: s.hnsw_ef_construct,
                ..HnswConfigDiff::default()
            }
        }),
        shard_number: s.shard_number,
        replication_factor: s.replication_factor,
        write_consistency_factor: s.write_consistency_factor,
        on_disk_payload: Some(true),
        metadata,
        ..CreateCollection::default()
    }
}

impl QdrantVector {
    /// The server's name of a collection.
    pub(crate) fn full(&self, name: &str) -> String {
        format!("{}{name}", self.settings.prefix)
    }

    /// The client's error for a call on collection `name`: a missing
    /// collection is forgotten and reported as such.
    pub(crate) fn on(&self, name: &str, what: &str) -> impl Fn(QdrantError) -> Error + '_ {
        let (name, what) = (name.to_string(), what.to_string());
        move |e| {
            let e = self
                .client
                .error(e, &format!("{what} in collection '{name}'"));
            if e.kind() == ErrorKind::NotFound && e.message().contains("ollection") {
                self.forget(&name);
                unknown(&name)
            } else {
                e
            }
        }
    }

    /// Drop what the plugin knows of `name`.
    pub(crate) fn forget(&self, name: &str) {
        lock(&self.known).remove(name);
    }

    /// What the plugin knows of `name`, from the cache or the server.
    pub(crate) fn known(&self, name: &str) -> Result<Arc<Known>> {
        check_name(name)?;
        if let Some(k) = lock(&self.known).get(name) {
            return Ok(k.clone());
        }
        self.fetch(name)
    }

    /// [`Self::fetch`], after checking the name.
    pub(crate) fn fetch_if_valid(&self, name: &str) -> Result<Arc<Known>> {
        check_name(name)?;
        self.fetch(name)
    }

    /// Read `name`'s description from the server into the cache.
    pub(crate) fn fetch(&self, name: &str) -> Result<Arc<Known>> {
        let full = self.full(name);
        let info = self
            .client
            .call(|q| q.collection_info(full.as_str()))
            .map_err(self.on(name, "reading the collection"))?
            .result
            .and_then(|i| i.config)
            .ok_or_else(|| {
                Error::backend(format!(
                    "the server described collection '{full}' without its configuration"
                ))
            })?;
        let foreign = || {
            Error::incompatible(format!(
                "collection '{full}' on the Qdrant server at {} was not created by Backplane (no '{META_FORMAT}' metadata and '{SEARCH_VECTOR}' vector): use another name or `collection_prefix`",
                self.client.url()
            ))
        };
        if !info.metadata.contains_key(META_FORMAT) {
            return Err(foreign());
        }
        let dotted = matches!(
            info.metadata.get(META_DOTTED).and_then(|v| v.kind.as_ref()),
            Some(Kind::BoolValue(true))
        );
        let params = match info
            .params
            .and_then(|p| p.vectors_config)
            .and_then(|v| v.config)
        {
            Some(VConfig::ParamsMap(mut m)) => m.map.remove(SEARCH_VECTOR),
            _ => None,
        }
        .ok_or_else(foreign)?;
        let distance = match QDistance::try_from(params.distance) {
            Ok(QDistance::Cosine) => Distance::Cosine,
            Ok(QDistance::Dot) => Distance::Dot,
            Ok(QDistance::Euclid) => Distance::Euclidean,
            _ => return Err(foreign()),
        };
        let k = Arc::new(Known {
            dimension: params.size as u32,
            distance,
            dotted: AtomicBool::new(dotted),
        });
        lock(&self.known).insert(name.to_string(), k.clone());
        Ok(k)
    }

    /// Record in `collection`'s metadata that some payload has a top-level
    /// key containing `.`, unless it is known already. Called before such
    /// a payload is written: a reader must never see one while the
    /// collection says there is none.
    pub(crate) fn note_dotted(&self, collection: &str, k: &Known) -> Result<()> {
        if k.dotted.load(Ordering::Acquire) {
            return Ok(());
        }
        self.client
            .call(|q| {
                q.update_collection(UpdateCollection {
                    collection_name: self.full(collection),
                    metadata: HashMap::from([(META_DOTTED.to_string(), bool_value(true))]),
                    ..UpdateCollection::default()
                })
            })
            .map_err(self.on(collection, "recording the payload shape"))?;
        k.dotted.store(true, Ordering::Release);
        Ok(())
    }

    /// The payload shape to translate `filter` with: a filter that would
    /// read a still-false `dotted` flag re-reads it from the server.
    fn shape_for(&self, name: &str, k: &Known, filter: &Filter) -> Result<PayloadShape> {
        if !k.dotted.load(Ordering::Acquire) && reads_dotted_keys(filter) {
            let fresh = self.fetch(name)?;
            if fresh.dotted.load(Ordering::Acquire) {
                k.dotted.store(true, Ordering::Release);
            }
        }
        Ok(k.shape())
    }

    /// `filter` as Qdrant runs it on collection `name`.
    pub(crate) fn translate(
        &self,
        name: &str,
        k: &Known,
        filter: &Filter,
    ) -> Result<Translation<QFilter>> {
        Ok(translate::<Grpc>(filter, self.shape_for(name, k, filter)?))
    }
}
