//! The vector capability ([`QdrantVector`]) on a Qdrant server.
//!
//! Writes wait for the server to apply them (`wait = true`), so a read
//! after a write sees it. An upsert is checked and converted whole before
//! its first request, then sent in requests of about [`UPSERT_BYTES`].

use crate::client::Client;
use crate::collections::{create_request, Known};
use crate::config::Settings;
use crate::point::{no_vectors, payload_selector, point_id, record, shown, to_point, uuid_point};
use backplane_core::vector::validate_vector;
use backplane_core::{
    CollectionInfo, Distance, ErrorKind, Filter, Health, Result, ScrollPage, SearchHit,
    SearchRequest, Vector, VectorRecord,
};
use backplane_qdrant_common::collection::{
    check_new, describe_all, described, exists, keeps_raw, scroll_page, unknown,
};
use backplane_qdrant_common::point::{encode_batch, parse_cursor};
use qdrant_client::qdrant::points_selector::PointsSelectorOneOf;
use qdrant_client::qdrant::{
    CountPoints, DeletePoints, GetPoints, PointId, PointsIdsList, PointsSelector, ScrollPoints,
    UpsertPoints,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Ids per delete request.
const DELETE_CHUNK: usize = 1_000;
/// Bytes of vectors and payload per upsert request (the server's gRPC
/// limit is 32 MiB by default; leave room).
const UPSERT_BYTES: usize = 8 << 20;

/// A vector store on a Qdrant server.
pub(crate) struct QdrantVector {
    pub(crate) client: Client,
    pub(crate) settings: Settings,
    /// The server's version, as its health check said at open.
    version: String,
    /// What the plugin knows of each collection (see [`Known`]).
    pub(crate) known: Mutex<HashMap<String, Arc<Known>>>,
}

impl std::fmt::Debug for QdrantVector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QdrantVector")
            .field(
                "url",
                &backplane_core::kit::redact::redact_url(&self.settings.url),
            )
            .field("prefix", &self.settings.prefix)
            .finish_non_exhaustive()
    }
}

impl QdrantVector {
    /// Connect to the server `settings` names (see [`Client::connect`])
    /// and create the default collection if configured.
    pub(crate) fn open(settings: Settings) -> Result<Self> {
        let (client, version) = Client::connect(&settings)?;
        let store = QdrantVector {
            client,
            settings,
            version,
            known: Mutex::new(HashMap::new()),
        };
        if let Some(d) = store.settings.default.clone() {
            d.ensure(&store, "qdrant")?;
        }
        Ok(store)
    }

    /// The server's version.
    pub(crate) fn server_version(&self) -> &str {
        &self.version
    }

    fn delete_ids(&self, name: &str, ids: Vec<PointId>) -> Result<()> {
        for chunk in ids.chunks(DELETE_CHUNK) {
            self.client
                .call(|q| {
                    q.delete_points(DeletePoints {
                        collection_name: self.full(name),
                        wait: Some(true),
                        points: Some(PointsSelector {
                            points_selector_one_of: Some(PointsSelectorOneOf::Points(
                                PointsIdsList {
                                    ids: chunk.to_vec(),
                                },
                            )),
                        }),
                        ..DeletePoints::default()
                    })
                })
                .map_err(self.on(name, "delete"))?;
        }
        Ok(())
    }
}

impl Vector for QdrantVector {
    fn create_collection(&self, name: &str, dimension: u32, distance: Distance) -> Result<()> {
        check_new(name, dimension)?;
        let request = create_request(&self.settings, self.full(name), dimension, distance);
        match self.client.call(|q| q.create_collection(request)) {
            Ok(_) => {
                self.forget(name);
                Ok(())
            }
            Err(e) => {
                let e = self
                    .client
                    .error(e, &format!("creating collection '{name}'"));
                if e.kind() == ErrorKind::AlreadyExists || e.message().contains("already exists") {
                    let what = match self.fetch(name) {
                        Ok(k) => described(k.dimension, k.distance),
                        Err(_) => "not made by Backplane".to_string(),
                    };
                    Err(exists(name, &what))
                } else {
                    Err(e)
                }
            }
        }
    }

    fn drop_collection(&self, name: &str) -> Result<()> {
        self.known(name)?;
        self.forget(name);
        let r = self
            .client
            .call(|q| q.delete_collection(self.full(name)))
            .map_err(self.on(name, "drop"))?;
        if !r.result {
            return Err(unknown(name));
        }
        Ok(())
    }

    fn list_collections(&self) -> Result<Vec<CollectionInfo>> {
        let all = self
            .client
            .call(|q| q.list_collections())
            .map_err(|e| self.client.error(e, "listing collections"))?;
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
        let (payloads, shape) = encode_batch(records, k.dimension)?;
        if records.is_empty() {
            return Ok(());
        }
        // Everything is checked and converted before the first request.
        let points = records
            .iter()
            .zip(payloads)
            .map(|(r, payload)| to_point(&k, r, payload))
            .collect::<Result<Vec<_>>>()?;
        if shape.dotted_keys {
            self.note_dotted(collection, &k)?;
        }
        // Requests of at most UPSERT_BYTES each (estimated), in order.
        let per_point = k.dimension as usize * 4 * if keeps_raw(k.distance) { 2 } else { 1 };
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
                let batch = std::mem::take(&mut batch);
                self.client
                    .call(|q| {
                        q.upsert_points(UpsertPoints {
                            collection_name: self.full(collection),
                            wait: Some(true),
                            points: batch,
                            ..Default::default()
                        })
                    })
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
            .client
            .call(|q| {
                q.get_points(GetPoints {
                    collection_name: self.full(collection),
                    ids: ids.iter().map(|id| point_id(id)).collect(),
                    with_payload: payload_selector(true),
                    with_vectors: k.with_vector(),
                    ..GetPoints::default()
                })
            })
            .map_err(self.on(collection, "get"))?
            .result;
        let mut found: HashMap<String, VectorRecord> = points
            .into_iter()
            .map(|p| record(&k, collection, p).map(|r| (r.id.clone(), r)))
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
            .client
            .call(|q| {
                q.get_points(GetPoints {
                    collection_name: self.full(collection),
                    ids: ids.iter().map(|id| point_id(id)).collect(),
                    with_payload: payload_selector(false),
                    with_vectors: no_vectors(),
                    ..GetPoints::default()
                })
            })
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
            .client
            .call(|q| {
                q.count(CountPoints {
                    collection_name: self.full(collection),
                    filter: native,
                    exact: Some(true),
                    ..CountPoints::default()
                })
            })
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
        self.search_all(collection, &k, requests, translations)
    }

    fn scroll(&self, collection: &str, cursor: Option<&str>, limit: usize) -> Result<ScrollPage> {
        let page = scroll_page(limit)?;
        let k = self.known(collection)?;
        let offset = cursor.map(parse_cursor).transpose()?.map(uuid_point);
        let page = self
            .client
            .call(|q| {
                q.scroll(ScrollPoints {
                    collection_name: self.full(collection),
                    offset,
                    limit: Some(page as u32),
                    with_payload: payload_selector(true),
                    with_vectors: k.with_vector(),
                    ..ScrollPoints::default()
                })
            })
            .map_err(self.on(collection, "scroll"))?;
        Ok(ScrollPage {
            records: page
                .result
                .into_iter()
                .map(|p| record(&k, collection, p))
                .collect::<Result<_>>()?,
            next_cursor: page.next_page_offset.map(|p| shown(&Some(p))),
        })
    }

    fn health(&self) -> Result<Health> {
        let reply = self
            .client
            .call(|q| q.health_check())
            .map_err(|e| self.client.error(e, "health check"))?;
        let prefix = &self.settings.prefix;
        let collections = self
            .client
            .call(|q| q.list_collections())
            .map_err(|e| self.client.error(e, "health check"))?
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
            reply.version,
            backplane_core::kit::redact::redact_url(&self.settings.url)
        )))
    }
}
