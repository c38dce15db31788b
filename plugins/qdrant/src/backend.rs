//! The vector capability on a Qdrant server, through qdrant-client (gRPC).
//!
//! # Collections on the server
//!
//! A collection `name` is the server's collection `<collection_prefix><name>`
//! with two named vectors for cosine (`search`, the one searched, which
//! Qdrant normalises; `raw`, dot distance, on disk, never indexed, which
//! keeps the vector as given so `get`/`scroll` return it bit for bit) and
//! one (`search`) for dot and euclidean. Its metadata carries
//! `backplane_format = 1` (a collection without it was not made here and is
//! left alone) and `backplane_dotted_keys` (see below).
//!
//! # Calls
//!
//! Every call is one or a few gRPC requests run to completion on the
//! plugin's own tokio runtime (one worker thread; the calling thread
//! drives the request). Writes wait for the server to apply them
//! (`wait = true`), so a read after a write sees it. What the plugin knows
//! of a collection (dimension, distance, whether top-level payload keys
//! with a `.` were stored) is cached per store and refreshed from the
//! server when a call finds it stale.
//!
//! # Filters and the payload shape
//!
//! The translation is [`backplane_qdrant_common::filter`]'s, shared with
//! qdrant-edge. Its one collection-wide fact, whether some payload has a
//! top-level key containing `.`, is kept in the collection's metadata so
//! every process sharing the collection knows it: upsert sets it before
//! writing such a payload, and a filter with a dotted key re-reads it
//! while the cached value is still false. Empty arrays are always assumed
//! possible (one more clause in `exists`, nothing to keep in sync).

use crate::config::Settings;
use crate::filter::Grpc;
use crate::payload::{from_grpc, to_grpc};
use backplane_core::vector::{validate_collection_name, validate_records, validate_vector};
use backplane_core::{
    CollectionInfo, Distance, Error, ErrorKind, Filter, Health, Result, ScrollPage, SearchHit,
    SearchRequest, Vector, VectorRecord,
};
use backplane_qdrant_common::collection::{
    check_new, describe_all, scroll_page, unknown, RAW_VECTOR, SCAN_PAGE,
};
use backplane_qdrant_common::filter::{reads_dotted_keys, translate, Translation};
use backplane_qdrant_common::point::{
    self as common, check_payload, encode_payload, parse_cursor, point_id, PayloadShape, Uuid,
};
use backplane_qdrant_common::search::{hits, until_k};
use qdrant_client::qdrant::point_id::PointIdOptions;
use qdrant_client::qdrant::points_selector::PointsSelectorOneOf;
use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::vector_output::Vector as OutVector;
use qdrant_client::qdrant::vectors_config::Config as VConfig;
use qdrant_client::qdrant::vectors_output::VectorsOptions;
use qdrant_client::qdrant::{
    with_payload_selector, with_vectors_selector, CountPoints, CreateCollection, DeletePoints,
    Distance as QDistance, Filter as QFilter, GetPoints, HnswConfigDiff, NamedVectors, PointId,
    PointStruct, PointsIdsList, PointsSelector, Query, QueryBatchPoints, QueryPoints,
    RetrievedPoint, ScoredPoint, ScrollPoints, SearchParams, UpdateCollection, Value, VectorParams,
    VectorParamsMap, Vectors, VectorsConfig, VectorsSelector, WithPayloadSelector,
    WithVectorsSelector,
};
use qdrant_client::{Qdrant, QdrantError};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tonic::Code;

/// The searched vector.
const SEARCH_VECTOR: &str = "search";
/// Metadata key marking a collection made by this backend.
const META_FORMAT: &str = "backplane_format";
/// Metadata key: some payload has a top-level key containing `.`.
const META_DOTTED: &str = "backplane_dotted_keys";
/// Ids per delete request.
const DELETE_CHUNK: usize = 1_000;
/// Bytes of vectors and payload per upsert request (the server's gRPC
/// limit is 32 MiB by default; leave room).
const UPSERT_BYTES: usize = 8 << 20;

/// The oldest server release served: collection metadata came in 1.16.
const MIN_SERVER: (u32, u32) = (1, 16);

/// `major.minor` of a version string such as `1.18.3`.
fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim_start_matches('v').split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn qdistance(d: Distance) -> QDistance {
    match d {
        Distance::Cosine => QDistance::Cosine,
        Distance::Dot => QDistance::Dot,
        Distance::Euclidean => QDistance::Euclid,
    }
}

fn uuid_point(u: Uuid) -> PointId {
    PointId {
        point_id_options: Some(PointIdOptions::Uuid(u.to_string())),
    }
}

/// A point id as a scroll cursor and in messages.
fn shown(id: &Option<PointId>) -> String {
    match id.as_ref().and_then(|p| p.point_id_options.as_ref()) {
        Some(PointIdOptions::Uuid(u)) => u.clone(),
        Some(PointIdOptions::Num(n)) => n.to_string(),
        None => "(without id)".to_string(),
    }
}

fn decode(payload: HashMap<String, Value>, id: &Option<PointId>) -> Result<common::Decoded> {
    let uuid = match id.as_ref().and_then(|p| p.point_id_options.as_ref()) {
        Some(PointIdOptions::Uuid(u)) => Uuid::parse_str(u).ok(),
        _ => None,
    };
    common::decode_payload(from_grpc(payload), uuid, &shown(id))
}

fn payload_selector(on: bool) -> Option<WithPayloadSelector> {
    Some(WithPayloadSelector {
        selector_options: Some(with_payload_selector::SelectorOptions::Enable(on)),
    })
}

fn no_vectors() -> Option<WithVectorsSelector> {
    Some(WithVectorsSelector {
        selector_options: Some(with_vectors_selector::SelectorOptions::Enable(false)),
    })
}

/// What the plugin knows of one collection.
#[derive(Debug)]
struct Known {
    dimension: u32,
    distance: Distance,
    /// See the module docs; only ever turns on.
    dotted: AtomicBool,
}

impl Known {
    fn shape(&self) -> PayloadShape {
        PayloadShape {
            dotted_keys: self.dotted.load(Ordering::Acquire),
            empty_arrays: true,
        }
    }

    /// The vector `get` and `scroll` return.
    fn stored_vector(&self) -> &'static str {
        if self.distance == Distance::Cosine {
            RAW_VECTOR
        } else {
            SEARCH_VECTOR
        }
    }

    fn with_vector(&self) -> Option<WithVectorsSelector> {
        Some(WithVectorsSelector {
            selector_options: Some(with_vectors_selector::SelectorOptions::Include(
                VectorsSelector {
                    names: vec![self.stored_vector().to_string()],
                },
            )),
        })
    }
}

/// A vector store on a Qdrant server.
pub struct QdrantVector {
    // Declared before the runtime: dropped first.
    client: Qdrant,
    rt: tokio::runtime::Runtime,
    settings: Settings,
    /// The server's version, as its health check said at open.
    version: String,
    known: Mutex<HashMap<String, Arc<Known>>>,
}

impl std::fmt::Debug for QdrantVector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QdrantVector")
            .field("url", &self.settings.url)
            .field("prefix", &self.settings.prefix)
            .finish_non_exhaustive()
    }
}

impl QdrantVector {
    /// Connect to the server `settings` names (a health check and a
    /// collection listing: an absent server or a refused API key is an
    /// error here, not at the first call), and create the default
    /// collection if configured.
    pub fn open(settings: Settings) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("backplane-qdrant")
            .enable_all()
            .build()
            .map_err(|e| {
                Error::backend(format!("cannot start the qdrant plugin's runtime: {e}"))
            })?;
        let client = Qdrant::from_url(&settings.url)
            .api_key(settings.api_key.as_ref().map(|k| k.expose().clone()))
            .timeout(settings.timeout)
            .connect_timeout(settings.connect_timeout)
            .skip_compatibility_check()
            .build()
            .map_err(|e| {
                Error::config(format!(
                    "`url` \"{}\" is not a usable gRPC endpoint ({e}): give e.g. url = \"http://127.0.0.1:6334\"",
                    settings.url
                ))
            })?;
        let mut store = QdrantVector {
            client,
            rt,
            settings,
            version: String::new(),
            known: Mutex::new(HashMap::new()),
        };
        let reply = store
            .block(store.client.health_check())
            .map_err(|e| store.error(e, "connecting"))?;
        match major_minor(&reply.version) {
            Some(v) if v < MIN_SERVER => {
                return Err(Error::incompatible(format!(
                    "the Qdrant server at {} is version {}, but the qdrant backend needs {}.{} or later (it keeps what it knows of a collection in the collection's metadata, which Qdrant has since {}.{}): upgrade the server",
                    store.settings.url, reply.version, MIN_SERVER.0, MIN_SERVER.1, MIN_SERVER.0, MIN_SERVER.1
                )))
            }
            Some((1, _)) => {}
            _ => log::warn!(
                "qdrant: the server at {} is version {}; this plugin's client (qdrant-client 1.20) speaks Qdrant 1.x",
                store.settings.url,
                reply.version
            ),
        }
        store.version = reply.version;
        // The health check needs no API key: an authenticated call checks it.
        store
            .block(store.client.list_collections())
            .map_err(|e| store.error(e, "connecting"))?;
        if let Some(d) = store.settings.default.clone() {
            d.ensure(&store, "qdrant")?;
        }
        Ok(store)
    }

    /// The server's version.
    pub fn server_version(&self) -> &str {
        &self.version
    }

    fn block<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The server's name of a collection.
    fn full(&self, name: &str) -> String {
        format!("{}{name}", self.settings.prefix)
    }

    /// A client error as one of ours; `what` says what was being done.
    fn error(&self, e: QdrantError, what: &str) -> Error {
        let url = &self.settings.url;
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

    /// [`Self::error`] for a call on collection `name`: a missing
    /// collection is forgotten and reported as such.
    fn on(&self, name: &str, what: &str) -> impl Fn(QdrantError) -> Error + '_ {
        let (name, what) = (name.to_string(), what.to_string());
        move |e| {
            let e = self.error(e, &format!("{what} in collection '{name}'"));
            if e.kind() == ErrorKind::NotFound && e.message().contains("ollection") {
                lock(&self.known).remove(&name);
                unknown(&name)
            } else {
                e
            }
        }
    }

    /// What the plugin knows of `name`, from the cache or the server.
    fn known(&self, name: &str) -> Result<Arc<Known>> {
        if validate_collection_name(name).is_err() {
            return Err(unknown(name));
        }
        if let Some(k) = lock(&self.known).get(name) {
            return Ok(k.clone());
        }
        self.fetch(name)
    }

    /// Read `name`'s description from the server into the cache.
    fn fetch(&self, name: &str) -> Result<Arc<Known>> {
        let full = self.full(name);
        let info = self
            .block(self.client.collection_info(full.as_str()))
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
                self.settings.url
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

    fn translate(&self, name: &str, k: &Known, filter: &Filter) -> Result<Translation<QFilter>> {
        Ok(translate::<Grpc>(filter, self.shape_for(name, k, filter)?))
    }

    fn record(&self, k: &Known, name: &str, p: RetrievedPoint) -> Result<VectorRecord> {
        let d = decode(p.payload, &p.id)?;
        let want = k.stored_vector();
        let vector = match p.vectors.and_then(|v| v.vectors_options) {
            Some(VectorsOptions::Vectors(mut m)) => m.vectors.remove(want).map(|v| v.into_vector()),
            Some(VectorsOptions::Vector(v)) => Some(v.into_vector()),
            None => None,
        };
        match vector {
            Some(OutVector::Dense(v)) => Ok(VectorRecord {
                id: d.id,
                vector: v.data,
                document: d.document,
                payload: d.payload,
            }),
            _ => Err(Error::backend(format!(
                "record '{}' in collection '{name}' came back without its dense vector '{want}'",
                d.id
            ))),
        }
    }

    /// The ids of the points passing `filter`, scanning where Qdrant
    /// cannot evaluate all of it.
    fn matching(&self, name: &str, k: &Known, filter: &Filter) -> Result<Vec<PointId>> {
        let t = self.translate(name, k, filter)?;
        let mut out = Vec::new();
        let mut offset = None;
        loop {
            let page = self
                .block(self.client.scroll(ScrollPoints {
                    collection_name: self.full(name),
                    filter: t.native.clone(),
                    offset,
                    limit: Some(SCAN_PAGE as u32),
                    with_payload: payload_selector(!t.exact),
                    with_vectors: no_vectors(),
                    ..ScrollPoints::default()
                }))
                .map_err(self.on(name, "scanning"))?;
            for p in page.result {
                if !t.exact && !filter.matches(&decode(p.payload, &p.id)?.payload) {
                    continue;
                }
                out.extend(p.id);
            }
            match page.next_page_offset {
                Some(n) => offset = Some(n),
                None => return Ok(out),
            }
        }
    }

    fn delete_ids(&self, name: &str, ids: Vec<PointId>) -> Result<()> {
        for chunk in ids.chunks(DELETE_CHUNK) {
            self.block(self.client.delete_points(DeletePoints {
                collection_name: self.full(name),
                wait: Some(true),
                points: Some(PointsSelector {
                    points_selector_one_of: Some(PointsSelectorOneOf::Points(PointsIdsList {
                        ids: chunk.to_vec(),
                    })),
                }),
                ..DeletePoints::default()
            }))
            .map_err(self.on(name, "delete"))?;
        }
        Ok(())
    }

    fn query(
        &self,
        name: &str,
        req: &SearchRequest,
        filter: Option<QFilter>,
        limit: usize,
        exact: bool,
    ) -> QueryPoints {
        QueryPoints {
            collection_name: self.full(name),
            query: Some(Query::new_nearest(req.vector.clone())),
            using: Some(SEARCH_VECTOR.to_string()),
            filter,
            params: Some(SearchParams {
                hnsw_ef: Some(self.settings.hnsw_ef.max(limit as u64)),
                exact: Some(exact),
                ..SearchParams::default()
            }),
            limit: Some(limit as u64),
            with_payload: payload_selector(true),
            with_vectors: no_vectors(),
            ..QueryPoints::default()
        }
    }

    fn to_hits(
        &self,
        k: &Known,
        points: Vec<ScoredPoint>,
        n: usize,
        post: Option<&Filter>,
    ) -> Result<Vec<SearchHit>> {
        hits(points, n, post, k.distance, |p| {
            Ok((p.score, decode(p.payload, &p.id)?))
        })
    }

    fn search_one(
        &self,
        name: &str,
        k: &Known,
        req: &SearchRequest,
        t: Option<Translation<QFilter>>,
    ) -> Result<Vec<SearchHit>> {
        let (native, post) = match t {
            None => (None, None),
            Some(t) if t.exact => (t.native, None),
            Some(t) => (t.native, req.filter.as_ref()),
        };
        until_k(req.k, post.is_some(), |limit, exact| {
            let points = self
                .block(
                    self.client
                        .query(self.query(name, req, native.clone(), limit, exact)),
                )
                .map_err(self.on(name, "search"))?
                .result;
            let returned = points.len();
            Ok((returned, self.to_hits(k, points, req.k, post)?))
        })
    }
}

impl Vector for QdrantVector {
    // `on_disk` and `on_disk_payload` are deprecated in the 1.20 client
    // for `memory` settings that servers before 1.20 do not know; servers
    // since then still honour them.
    #[allow(deprecated)]
    fn create_collection(&self, name: &str, dimension: u32, distance: Distance) -> Result<()> {
        check_new(name, dimension)?;
        let s = &self.settings;
        let params =
            |d: QDistance, on_disk: Option<bool>, hnsw: Option<HnswConfigDiff>| VectorParams {
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
        if distance == Distance::Cosine {
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
            (
                META_DOTTED.to_string(),
                Value {
                    kind: Some(Kind::BoolValue(false)),
                },
            ),
        ]);
        let full = self.full(name);
        let created = self.block(self.client.create_collection(CreateCollection {
            collection_name: full.clone(),
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
        }));
        match created {
            Ok(_) => {
                lock(&self.known).remove(name);
                Ok(())
            }
            Err(e) => {
                let e = self.error(e, &format!("creating collection '{name}'"));
                if e.kind() == ErrorKind::AlreadyExists || e.message().contains("already exists") {
                    let what = match self.fetch(name) {
                        Ok(k) => format!("{} dims, {}", k.dimension, k.distance.as_str()),
                        Err(_) => "not made by Backplane".to_string(),
                    };
                    Err(Error::already_exists(format!(
                        "collection '{name}' exists already ({what}): use it, or drop it first"
                    )))
                } else {
                    Err(e)
                }
            }
        }
    }

    fn drop_collection(&self, name: &str) -> Result<()> {
        self.known(name)?;
        lock(&self.known).remove(name);
        let r = self
            .block(self.client.delete_collection(self.full(name)))
            .map_err(self.on(name, "drop"))?;
        if !r.result {
            return Err(unknown(name));
        }
        Ok(())
    }

    fn list_collections(&self) -> Result<Vec<CollectionInfo>> {
        let all = self
            .block(self.client.list_collections())
            .map_err(|e| self.error(e, "listing collections"))?;
        let prefix = &self.settings.prefix;
        describe_all(
            self,
            all.collections
                .into_iter()
                .filter_map(|c| c.name.strip_prefix(prefix.as_str()).map(str::to_string)),
        )
    }

    fn collection_info(&self, name: &str) -> Result<CollectionInfo> {
        let k = self.fetch_if_valid(name)?;
        let count = self.count(name, None)?;
        Ok(CollectionInfo {
            name: name.to_string(),
            dimension: k.dimension,
            distance: k.distance,
            count,
        })
    }

    fn upsert(&self, collection: &str, records: &[VectorRecord]) -> Result<()> {
        let k = self.known(collection)?;
        validate_records(records, k.dimension)?;
        records.iter().try_for_each(check_payload)?;
        if records.is_empty() {
            return Ok(());
        }
        // Everything is checked and converted before the first request.
        let mut dotted = false;
        let points = records
            .iter()
            .map(|r| {
                let (payload, shape) = encode_payload(r);
                dotted |= shape.dotted_keys;
                let Json::Object(map) = payload else {
                    unreachable!("encode_payload returns an object")
                };
                let mut vectors = vec![(SEARCH_VECTOR, r.vector.clone())];
                if k.distance == Distance::Cosine {
                    vectors.push((RAW_VECTOR, r.vector.clone()));
                }
                Ok(PointStruct {
                    id: Some(uuid_point(point_id(&r.id))),
                    payload: to_grpc(map, &r.id)?,
                    vectors: Some(Vectors::from(NamedVectors::from(vectors))),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if dotted && !k.dotted.load(Ordering::Acquire) {
            // Before the points: a reader must never see such a payload
            // while the collection says there is none.
            self.block(self.client.update_collection(UpdateCollection {
                collection_name: self.full(collection),
                metadata: HashMap::from([(
                    META_DOTTED.to_string(),
                    Value {
                        kind: Some(Kind::BoolValue(true)),
                    },
                )]),
                ..UpdateCollection::default()
            }))
            .map_err(self.on(collection, "recording the payload shape"))?;
            k.dotted.store(true, Ordering::Release);
        }
        // Requests of at most UPSERT_BYTES each (estimated), in order.
        let per_point =
            k.dimension as usize * 4 * if k.distance == Distance::Cosine { 2 } else { 1 };
        let mut batch = Vec::new();
        let mut bytes = 0;
        let mut points = points.into_iter().zip(records).peekable();
        while let Some((p, r)) = points.next() {
            bytes += per_point
                + r.document.as_ref().map_or(0, String::len)
                + 64
                + r.payload.to_string().len();
            batch.push(p);
            if bytes >= UPSERT_BYTES || points.peek().is_none() {
                self.block(
                    self.client
                        .upsert_points(qdrant_client::qdrant::UpsertPoints {
                            collection_name: self.full(collection),
                            wait: Some(true),
                            points: std::mem::take(&mut batch),
                            ..Default::default()
                        }),
                )
                .map_err(self.on(collection, "upsert"))?;
                bytes = 0;
            }
        }
        Ok(())
    }

    fn get(&self, collection: &str, ids: &[String]) -> Result<Vec<VectorRecord>> {
        let k = self.known(collection)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let points = self
            .block(self.client.get_points(GetPoints {
                collection_name: self.full(collection),
                ids: ids.iter().map(|id| uuid_point(point_id(id))).collect(),
                with_payload: payload_selector(true),
                with_vectors: k.with_vector(),
                ..GetPoints::default()
            }))
            .map_err(self.on(collection, "get"))?
            .result;
        let mut found: HashMap<String, VectorRecord> = points
            .into_iter()
            .map(|p| self.record(&k, collection, p).map(|r| (r.id.clone(), r)))
            .collect::<Result<_>>()?;
        // In the order asked, each once.
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    fn delete(&self, collection: &str, ids: &[String]) -> Result<u64> {
        self.known(collection)?;
        if ids.is_empty() {
            return Ok(0);
        }
        let existing: Vec<PointId> = self
            .block(self.client.get_points(GetPoints {
                collection_name: self.full(collection),
                ids: ids.iter().map(|id| uuid_point(point_id(id))).collect(),
                with_payload: payload_selector(false),
                with_vectors: no_vectors(),
                ..GetPoints::default()
            }))
            .map_err(self.on(collection, "delete"))?
            .result
            .into_iter()
            .filter_map(|p| p.id)
            .collect();
        let n = existing.len() as u64;
        if n > 0 {
            self.delete_ids(collection, existing)?;
        }
        Ok(n)
    }

    fn delete_where(&self, collection: &str, filter: &Filter) -> Result<u64> {
        let k = self.known(collection)?;
        let ids = self.matching(collection, &k, filter)?;
        let n = ids.len() as u64;
        if n > 0 {
            self.delete_ids(collection, ids)?;
        }
        Ok(n)
    }

    fn count(&self, collection: &str, filter: Option<&Filter>) -> Result<u64> {
        let k = self.known(collection)?;
        let native = match filter {
            None => None,
            Some(f) => {
                let t = self.translate(collection, &k, f)?;
                if !t.exact {
                    return Ok(self.matching(collection, &k, f)?.len() as u64);
                }
                t.native
            }
        };
        Ok(self
            .block(self.client.count(CountPoints {
                collection_name: self.full(collection),
                filter: native,
                exact: Some(true),
                ..CountPoints::default()
            }))
            .map_err(self.on(collection, "count"))?
            .result
            .map_or(0, |r| r.count))
    }

    fn search(&self, collection: &str, request: &SearchRequest) -> Result<Vec<SearchHit>> {
        let k = self.known(collection)?;
        validate_vector(&request.vector, k.dimension, "the query vector")?;
        let t = match &request.filter {
            Some(f) => Some(self.translate(collection, &k, f)?),
            None => None,
        };
        self.search_one(collection, &k, request, t)
    }

    fn search_batch(
        &self,
        collection: &str,
        requests: &[SearchRequest],
    ) -> Result<Vec<Vec<SearchHit>>> {
        let k = self.known(collection)?;
        let mut translations = Vec::with_capacity(requests.len());
        for (i, r) in requests.iter().enumerate() {
            validate_vector(&r.vector, k.dimension, &format!("query {i}'s vector"))?;
            translations.push(match &r.filter {
                Some(f) => Some(self.translate(collection, &k, f)?),
                None => None,
            });
        }
        let one_trip = requests.iter().all(|r| r.k > 0)
            && translations
                .iter()
                .all(|t| t.as_ref().is_none_or(|t| t.exact));
        if !one_trip || requests.is_empty() {
            return requests
                .iter()
                .zip(translations)
                .enumerate()
                .map(|(i, (r, t))| {
                    self.search_one(collection, &k, r, t)
                        .map_err(|e| e.context(format!("query {i}")))
                })
                .collect();
        }
        // Every filter runs on the server: one request for the batch.
        let queries = requests
            .iter()
            .zip(translations)
            .map(|(r, t)| self.query(collection, r, t.and_then(|t| t.native), r.k, false))
            .collect();
        let results = self
            .block(self.client.query_batch(QueryBatchPoints {
                collection_name: self.full(collection),
                query_points: queries,
                ..QueryBatchPoints::default()
            }))
            .map_err(self.on(collection, "search_batch"))?
            .result;
        if results.len() != requests.len() {
            return Err(Error::backend(format!(
                "the server answered {} of {} queries of the batch",
                results.len(),
                requests.len()
            )));
        }
        results
            .into_iter()
            .zip(requests)
            .map(|(b, r)| self.to_hits(&k, b.result, r.k, None))
            .collect()
    }

    fn scroll(&self, collection: &str, cursor: Option<&str>, limit: usize) -> Result<ScrollPage> {
        let page = scroll_page(limit)?;
        let k = self.known(collection)?;
        let offset = cursor.map(parse_cursor).transpose()?.map(uuid_point);
        let page = self
            .block(self.client.scroll(ScrollPoints {
                collection_name: self.full(collection),
                offset,
                limit: Some(page as u32),
                with_payload: payload_selector(true),
                with_vectors: k.with_vector(),
                ..ScrollPoints::default()
            }))
            .map_err(self.on(collection, "scroll"))?;
        Ok(ScrollPage {
            records: page
                .result
                .into_iter()
                .map(|p| self.record(&k, collection, p))
                .collect::<Result<_>>()?,
            next_cursor: page.next_page_offset.map(|p| shown(&Some(p))),
        })
    }

    fn health(&self) -> Result<Health> {
        let reply = self
            .block(self.client.health_check())
            .map_err(|e| self.error(e, "health check"))?;
        let prefix = &self.settings.prefix;
        let collections = self
            .block(self.client.list_collections())
            .map_err(|e| self.error(e, "health check"))?
            .collections
            .iter()
            .filter(|c| c.name.starts_with(prefix.as_str()))
            .count();
        let under = if prefix.is_empty() {
            String::new()
        } else {
            format!(" under prefix '{prefix}'")
        };
        Ok(Health::ok(format!(
            "qdrant {} at {}, {collections} collection(s){under}",
            reply.version, self.settings.url
        )))
    }
}

impl QdrantVector {
    /// [`Self::fetch`], after checking the name.
    fn fetch_if_valid(&self, name: &str) -> Result<Arc<Known>> {
        if validate_collection_name(name).is_err() {
            return Err(unknown(name));
        }
        self.fetch(name)
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
