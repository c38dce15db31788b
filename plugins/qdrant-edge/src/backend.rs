//! The vector capability ([`QdrantEdgeVector`]): the collections under one
//! folder, each a qdrant-edge shard in its own sub-folder, shared with
//! the process's other stores on that folder.

use crate::collection::{lock, open_shared, registry, Collection};
use crate::config::{DefaultCollection, Tuning};
use crate::filter::translate;
use crate::folder::{self, io, is_collection};
use crate::index::{self, IndexState};
use crate::point::{parse_cursor, point_id};
use crate::search::{matching, record, search_one, with_vector};
use crate::shard::{engine, SEARCH_VECTOR};
use backplane_core::vector::validate_vector;
use backplane_core::{
    CollectionInfo, Distance, Error, Filter, Health, Result, ScrollPage, SearchHit, SearchRequest,
    Vector, VectorRecord,
};
use backplane_qdrant_common::collection::{
    check_name, check_new, describe_all, keeps_raw, scroll_page, unknown, RAW_VECTOR,
};
use backplane_qdrant_common::point::encode_batch;
use qdrant_edge::{
    CountRequest, PointId, PointInsertOperations, PointOperations, PointStruct, ScrollRequest,
    UpdateOperation, Vectors, WithPayloadInterface, WithVector,
};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A vector store: the collections under one folder.
pub struct QdrantEdgeVector {
    root: PathBuf,
    tuning: Tuning,
    /// This store's handles, by collection name.
    open: Mutex<HashMap<String, Arc<Collection>>>,
}

impl QdrantEdgeVector {
    /// Open the store in `root` (created if missing), creating `default`
    /// if given and absent. (The plugin opens stores from their section of
    /// plugins.toml; this is for programs that link the plugin directly.)
    pub fn open(root: &Path, tuning: Tuning, default: Option<DefaultCollection>) -> Result<Self> {
        std::fs::create_dir_all(root).map_err(|e| {
            Error::config(format!(
                "cannot create the folder {} for the collections ({e}): fix `path` or the folder's permissions",
                root.display()
            ))
        })?;
        let root = root.canonicalize().map_err(|e| {
            Error::config(format!("cannot resolve `path` {} ({e})", root.display()))
        })?;
        folder::remove_leftovers(&root);
        let store = QdrantEdgeVector {
            root,
            tuning,
            open: Mutex::new(HashMap::new()),
        };
        if let Some(d) = default {
            d.ensure(&store, "qdrant-edge")?;
        }
        Ok(store)
    }

    /// The folder of the store.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn collection(&self, name: &str) -> Result<Arc<Collection>> {
        check_name(name)?;
        let mut open = lock(&self.open);
        if let Some(c) = open.get(name) {
            if !c.dropped() {
                return Ok(c.clone());
            }
            open.remove(name);
        }
        let c = open_shared(&self.root, name, &self.tuning)?;
        open.insert(name.to_string(), c.clone());
        Ok(c)
    }

    /// Build the index of `collection` now if it has unindexed writes.
    /// Returns whether a build ran. (Not part of the `Vector` trait: for
    /// programs that link the plugin directly, and for the benchmark.)
    pub fn build_index(&self, collection: &str) -> Result<bool> {
        self.collection(collection)?.build_index()
    }

    /// Where `collection`'s vectors are: points, vectors in an HNSW index,
    /// segments. (For programs that link the plugin directly, tests and
    /// the benchmark.)
    pub fn index_state(&self, collection: &str) -> Result<IndexState> {
        self.collection(collection)?
            .with(|shard| Ok(IndexState::of(shard)))
    }
}

/// Stop the background index builder; called by the plugin's `shutdown`.
pub(crate) fn shutdown() {
    index::shutdown();
}

impl Vector for QdrantEdgeVector {
    fn create_collection(&self, name: &str, dimension: u32, distance: Distance) -> Result<()> {
        check_new(name, dimension)?;
        {
            // The registry's lock keeps two stores of this process from
            // building the same collection at once.
            let _reg = registry();
            folder::create(&self.root, name, dimension, distance, &self.tuning)?;
        }
        self.collection(name).map(|_| ())
    }

    fn drop_collection(&self, name: &str) -> Result<()> {
        let c = self.collection(name)?;
        let _w = lock(&c.writer);
        let _b = lock(&c.building);
        let mut reg = registry();
        if !c.close() {
            return Err(unknown(name));
        }
        reg.remove(&c.dir);
        lock(&self.open).remove(name);
        let gone = folder::rename_away(&self.root, name, &c.dir)?;
        drop(reg);
        folder::delete(name, &gone);
        Ok(())
    }

    fn list_collections(&self) -> Result<Vec<CollectionInfo>> {
        let entries = std::fs::read_dir(&self.root)
            .map_err(|e| io(format!("cannot list {}", self.root.display()), e))?;
        describe_all(
            self,
            entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| is_collection(&self.root.join(n))),
        )
    }

    fn collection_info(&self, name: &str) -> Result<CollectionInfo> {
        let c = self.collection(name)?;
        let count = self.count(name, None)?;
        Ok(CollectionInfo { count, ..c.info() })
    }

    fn upsert(&self, collection: &str, records: &[VectorRecord]) -> Result<()> {
        let c = self.collection(collection)?;
        let (payloads, shape) = encode_batch(records, c.dimension)?;
        if records.is_empty() {
            return Ok(());
        }
        let points = records
            .iter()
            .zip(payloads)
            .map(|(r, payload)| {
                let vectors: Vectors = if keeps_raw(c.distance) {
                    if let Some(v) = kept_as_given(&r.vector) {
                        Vectors::new_named([(SEARCH_VECTOR, v)])
                    } else {
                        Vectors::new_named([
                            (SEARCH_VECTOR, r.vector.clone()),
                            (RAW_VECTOR, r.vector.clone()),
                        ])
                    }
                } else {
                    r.vector.clone().into()
                };
                PointStruct::new(point_id(&r.id), vectors, Json::Object(payload)).into()
            })
            .collect();
        c.write(|shard| {
            c.note_shape(shape)?;
            c.update(
                shard,
                "upsert",
                UpdateOperation::PointOperation(PointOperations::UpsertPoints(
                    PointInsertOperations::PointsList(points),
                )),
            )
        })
    }

    fn get(&self, collection: &str, ids: &[String]) -> Result<Vec<VectorRecord>> {
        let c = self.collection(collection)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let points: Vec<PointId> = ids.iter().map(|id| point_id(id)).collect();
        c.with(|shard| {
            shard
                .retrieve(
                    &points,
                    Some(WithPayloadInterface::Bool(true)),
                    Some(with_vector(&c)),
                )
                .map_err(|e| engine("get", e))?
                .into_iter()
                .map(|r| record(&c, r))
                .collect()
        })
    }

    fn delete(&self, collection: &str, ids: &[String]) -> Result<u64> {
        let c = self.collection(collection)?;
        if ids.is_empty() {
            return Ok(0);
        }
        let mut points: Vec<PointId> = ids.iter().map(|id| point_id(id)).collect();
        points.sort_unstable();
        points.dedup();
        c.write(|shard| {
            let existing: Vec<PointId> = shard
                .retrieve(
                    &points,
                    Some(WithPayloadInterface::Bool(false)),
                    Some(WithVector::Bool(false)),
                )
                .map_err(|e| engine("delete", e))?
                .into_iter()
                .map(|r| r.id)
                .collect();
            let n = existing.len() as u64;
            if n > 0 {
                c.update(
                    shard,
                    "delete",
                    UpdateOperation::PointOperation(PointOperations::DeletePoints {
                        ids: existing,
                    }),
                )?;
            }
            Ok(n)
        })
    }

    fn delete_where(&self, collection: &str, filter: &Filter) -> Result<u64> {
        let c = self.collection(collection)?;
        c.write(|shard| {
            let ids = matching(&c, shard, filter)?;
            let n = ids.len() as u64;
            if n > 0 {
                c.update(
                    shard,
                    "delete_where",
                    UpdateOperation::PointOperation(PointOperations::DeletePoints { ids }),
                )?;
            }
            Ok(n)
        })
    }

    fn count(&self, collection: &str, filter: Option<&Filter>) -> Result<u64> {
        let c = self.collection(collection)?;
        c.with(|shard| {
            let native = match filter {
                None => None,
                Some(f) => {
                    let t = translate(f, c.shape());
                    if !t.exact {
                        return Ok(matching(&c, shard, f)?.len() as u64);
                    }
                    t.native
                }
            };
            shard
                .count(CountRequest {
                    filter: native,
                    exact: true,
                })
                .map(|n| n as u64)
                .map_err(|e| engine("count", e))
        })
    }

    fn search(&self, collection: &str, request: &SearchRequest) -> Result<Vec<SearchHit>> {
        let c = self.collection(collection)?;
        validate_vector(&request.vector, c.dimension, "the query vector")?;
        c.index_before_search()?;
        let t = request.filter.as_ref().map(|f| translate(f, c.shape()));
        c.with(|shard| search_one(&c, shard, request, t, self.tuning.ef))
    }

    fn search_batch(
        &self,
        collection: &str,
        requests: &[SearchRequest],
    ) -> Result<Vec<Vec<SearchHit>>> {
        let c = self.collection(collection)?;
        for (i, r) in requests.iter().enumerate() {
            validate_vector(&r.vector, c.dimension, &format!("query {i}'s vector"))?;
        }
        c.index_before_search()?;
        let shape = c.shape();
        c.with(|shard| {
            requests
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let t = r.filter.as_ref().map(|f| translate(f, shape));
                    search_one(&c, shard, r, t, self.tuning.ef)
                        .map_err(|e| e.context(format!("query {i}")))
                })
                .collect()
        })
    }

    fn scroll(&self, collection: &str, cursor: Option<&str>, limit: usize) -> Result<ScrollPage> {
        let page = scroll_page(limit)?;
        let c = self.collection(collection)?;
        let offset = cursor.map(parse_cursor).transpose()?;
        c.with(|shard| {
            let (records, next) = shard
                .scroll(ScrollRequest {
                    offset,
                    limit: Some(page),
                    filter: None,
                    with_payload: Some(WithPayloadInterface::Bool(true)),
                    with_vector: with_vector(&c),
                    order_by: None,
                })
                .map_err(|e| engine("scroll", e))?;
            Ok(ScrollPage {
                records: records
                    .into_iter()
                    .map(|r| record(&c, r))
                    .collect::<Result<_>>()?,
                next_cursor: next.as_ref().map(crate::point::cursor),
            })
        })
    }

    fn health(&self) -> Result<Health> {
        let probe = self.root.join(".health");
        std::fs::write(&probe, b"ok")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| {
                Error::unavailable(format!(
                    "the folder {} is not writable ({e}): check the disk and the folder's permissions",
                    self.root.display()
                ))
            })?;
        let (open, pending) = {
            let open = lock(&self.open);
            let mut pending: Vec<&str> = open
                .iter()
                .filter(|(_, c)| c.index_pending())
                .map(|(name, _)| name.as_str())
                .collect();
            pending.sort_unstable();
            (open.len(), pending.join(", "))
        };
        // Operators (and the benchmark) see a build in the background here.
        let building = if pending.is_empty() {
            String::new()
        } else {
            format!("; index build under way or due: {pending}")
        };
        Ok(Health::ok(format!(
            "qdrant-edge 0.7.2 (embedded) at {}, {open} collection(s) open{building}",
            self.root.display()
        )))
    }
}

/// `v` as a cosine collection stores it, when that is exactly as given
/// (so that it needs no `raw` copy); `None` when Qdrant would change it.
///
/// Qdrant normalises a cosine collection's vectors when it writes them,
/// but leaves one whose length is already 1 (within its own tolerance,
/// which most embedding models' output meets) unchanged. Asking Qdrant's
/// own function, which the write then calls on the same bits in the same
/// process, makes the answer exact rather than an estimate of Qdrant's
/// rounding: when this is `Some`, the vector the collection keeps is bit
/// for bit the one given.
pub(crate) fn kept_as_given(v: &[f32]) -> Option<Vec<f32>> {
    let stored = qdrant_edge::Distance::Cosine.preprocess_vector::<f32>(v.to_vec());
    let same = stored.len() == v.len()
        && stored
            .iter()
            .zip(v)
            .all(|(x, y)| x.to_bits() == y.to_bits());
    same.then_some(stored)
}
