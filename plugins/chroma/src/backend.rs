//! The vector capability ([`ChromaVector`]) on a Chroma server.
//!
//! Collections are addressed by name for their own calls and by id for
//! record calls; the id of each collection is remembered, and a record
//! call that finds the id gone (the collection dropped and made again by
//! another process) looks the name up again and retries once.
//!
//! Chroma writes are applied before the server answers, so a read after a
//! write sees it. A request holds at most the server's `max_batch_size`
//! records (5,461 on a default server): a larger upsert or delete is
//! checked and converted whole, then sent in several requests, in order.

use crate::client::Client;
use crate::config::Settings;
use crate::filter::superset;
use crate::record::{self, backplane_name, chroma_name, decode, from_space, space};
use backplane_core::kit::page::check_limit;
use backplane_core::vector::{
    collection_exists, described, norm, unknown_collection as unknown, validate_collection_name,
    validate_records, validate_vector, TopK,
};
use backplane_core::{
    CollectionInfo, Distance, Error, ErrorKind, Filter, Health, Result, ScrollPage, SearchHit,
    SearchRequest, Vector, VectorRecord,
};
use serde_json::{json, Map, Value as Json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The largest dimension accepted.
const MAX_DIMENSION: u32 = 65_536;
/// The most records one scroll page returns, whatever the limit asked.
const MAX_PAGE: usize = 10_000;
/// Records read per request when the plugin scans (count and delete with
/// a filter).
const SCAN_PAGE: usize = 1_000;
/// Collections listed per request.
const LIST_PAGE: usize = 100;
/// The most candidates one query asks Chroma for. A filtered search asks
/// for 4×k, then 16×k, … up to this; beyond it (a filter that passes few
/// of the candidates, or a huge k) the search reads the candidates the
/// pushed-down filter lets through a page at a time and keeps the best k
/// itself, exact, in bounded memory.
const MAX_CANDIDATES: usize = 4_096;

/// What the plugin knows of a collection.
#[derive(Clone, Debug)]
pub(crate) struct Known {
    /// Chroma's id (a UUID).
    id: String,
    dimension: u32,
    distance: Distance,
    /// Made by Backplane (its metadata says the dimension and distance);
    /// otherwise a collection of another tool, read with its metadata as
    /// payloads and filtered in the plugin only.
    ours: bool,
}

/// A vector store on a Chroma server.
pub(crate) struct ChromaVector {
    client: Client,
    settings: Settings,
    /// The server's API version, as it said at open.
    version: String,
    /// Records per request.
    max_batch: usize,
    known: Mutex<HashMap<String, Arc<Known>>>,
}

impl std::fmt::Debug for ChromaVector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChromaVector")
            .field("url", &self.client.shown)
            .field("tenant", &self.settings.tenant)
            .field("database", &self.settings.database)
            .field("prefix", &self.settings.prefix)
            .finish_non_exhaustive()
    }
}

/// The records of a `get` answer (`ids`, `embeddings`, `documents`,
/// `metadatas`, each a list or null), or of one query of a `query` answer
/// when `row` is given (each a list of lists), with the query's distances.
fn records_of(answer: &Json, row: Option<usize>, what: &str) -> Result<Vec<VectorRecord>> {
    let list = |name: &str| -> Option<&Vec<Json>> {
        let v = answer.get(name)?;
        let v = match row {
            Some(r) => v.as_array()?.get(r)?,
            None => v,
        };
        v.as_array()
    };
    let ids = list("ids").ok_or_else(|| {
        Error::backend(format!(
            "{what}: Chroma's answer has no `ids`: is the server Chroma 1.x?"
        ))
    })?;
    let (embeddings, documents, metadatas) =
        (list("embeddings"), list("documents"), list("metadatas"));
    let mut out = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let id = id.as_str().unwrap_or_default().to_string();
        let embedding = embeddings
            .and_then(|e| e.get(i))
            .and_then(Json::as_array)
            .map(|v| {
                v.iter()
                    .map(|x| x.as_f64().unwrap_or(f64::NAN) as f32)
                    .collect()
            });
        let document = documents
            .and_then(|d| d.get(i))
            .and_then(Json::as_str)
            .map(str::to_string);
        let metadata = metadatas
            .and_then(|m| m.get(i))
            .and_then(Json::as_object)
            .cloned();
        out.push(decode(id, embedding, document, metadata)?);
    }
    Ok(out)
}

impl ChromaVector {
    /// Connect to the server `settings` names and check it: its version,
    /// its batch limit, and that the tenant and database exist (the token
    /// is checked here too). Creates the default collection if configured.
    pub(crate) fn open(settings: Settings) -> Result<Self> {
        let client = Client::new(&settings);
        let (status, text) = client.raw("GET", &client.api("/version"), None, "connecting")?;
        let version = match serde_json::from_str::<Json>(&text) {
            Ok(Json::String(v)) if status == 200 => v,
            _ => {
                return Err(Error::config(format!(
                    "the server at {} answers HTTP but not as a Chroma 1.x server (GET /api/v2/version gave HTTP {status}): check `url` names a Chroma server, e.g. http://127.0.0.1:8000",
                    client.shown
                )))
            }
        };
        let checks = client.call("GET", &client.api("/pre-flight-checks"), None, "connecting")?;
        let max_batch = checks
            .get("max_batch_size")
            .and_then(Json::as_u64)
            .filter(|n| *n > 0)
            .map_or(1_000, |n| n as usize);
        let db = client.api(&format!(
            "/tenants/{}/databases/{}",
            settings.tenant, settings.database
        ));
        if let Err(e) = client.call("GET", &db, None, "connecting") {
            return Err(match e.kind() {
                ErrorKind::NotFound => Error::config(format!(
                    "database '{}' of tenant '{}' does not exist on Chroma at {}: create it (Chroma's client: create_database), or fix `tenant` / `database`",
                    settings.database, settings.tenant, client.shown
                )),
                _ => e,
            });
        }
        let store = ChromaVector {
            client,
            settings,
            version,
            max_batch,
            known: Mutex::new(HashMap::new()),
        };
        if let Some(d) = store.settings.default.clone() {
            d.ensure(&store, "chroma")?;
        }
        Ok(store)
    }

    /// The server's API version.
    pub(crate) fn server_version(&self) -> &str {
        &self.version
    }

    /// The server's name of collection `name`.
    fn full(&self, name: &str) -> String {
        chroma_name(&self.settings.prefix, name)
    }

    /// What a collection entry of Chroma's answer says, `None` when its
    /// dimension is unknown (a collection of another tool, still empty).
    fn describe(entry: &Json) -> Option<Known> {
        let id = entry.get("id")?.as_str()?.to_string();
        let meta = entry.get("metadata").and_then(Json::as_object);
        let ours = meta.and_then(|m| {
            let d = m.get(record::DIMENSION)?.as_u64()?;
            let dist = Distance::parse(m.get(record::DISTANCE)?.as_str()?).ok()?;
            Some((u32::try_from(d).ok()?, dist))
        });
        if let Some((dimension, distance)) = ours {
            return Some(Known {
                id,
                dimension,
                distance,
                ours: true,
            });
        }
        let dimension = u32::try_from(entry.get("dimension")?.as_u64()?).ok()?;
        let config = entry.get("configuration_json");
        let space = ["hnsw", "spann"]
            .iter()
            .find_map(|k| config?.get(k)?.get("space")?.as_str())
            .unwrap_or("l2");
        Some(Known {
            id,
            dimension,
            distance: from_space(space)?,
            ours: false,
        })
    }

    /// Look collection `name` up on the server and remember it.
    fn fetch(&self, name: &str) -> Result<Arc<Known>> {
        if validate_collection_name(name).is_err() {
            return Err(unknown(name));
        }
        let what = format!("reading collection '{name}'");
        let entry = self
            .client
            .call(
                "GET",
                &self.client.collections(&format!("/{}", self.full(name))),
                None,
                &what,
            )
            .map_err(|e| match e.kind() {
                ErrorKind::NotFound => unknown(name),
                _ => e,
            })?;
        let k = Arc::new(Self::describe(&entry).ok_or_else(|| {
            Error::incompatible(format!(
                "collection '{name}' on Chroma was not made by Backplane and holds no records yet, so its dimension is unknown: add a record with Chroma's client, or drop it"
            ))
        })?);
        self.known
            .lock()
            .unwrap()
            .insert(name.to_string(), k.clone());
        Ok(k)
    }

    /// What is remembered of `name`, or [`fetch`](Self::fetch).
    fn known(&self, name: &str) -> Result<Arc<Known>> {
        if let Some(k) = self.known.lock().unwrap().get(name) {
            return Ok(k.clone());
        }
        self.fetch(name)
    }

    fn forget(&self, name: &str) {
        self.known.lock().unwrap().remove(name);
    }

    /// Run `call` on collection `name`; when its id is gone, look the name
    /// up again and run it once more.
    fn on<T>(&self, name: &str, call: impl Fn(&Known) -> Result<T>) -> Result<T> {
        let k = self.known(name)?;
        match call(&k) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.forget(name);
                let k = self.fetch(name)?;
                call(&k)
            }
            r => r,
        }
    }

    /// POST `body` to the record endpoint `op` of collection `k`.
    fn post(&self, k: &Known, op: &str, body: &Json, what: &str) -> Result<Json> {
        self.client.call(
            "POST",
            &self.client.collections(&format!("/{}/{op}", k.id)),
            Some(body),
            what,
        )
    }

    /// The stored records `ids` (at most a batch), with what `include`
    /// names.
    fn get_batch(
        &self,
        k: &Known,
        ids: &[String],
        include: &[&str],
        what: &str,
    ) -> Result<Vec<VectorRecord>> {
        let answer = self.post(k, "get", &json!({"ids": ids, "include": include}), what)?;
        records_of(&answer, None, what)
    }

    /// The ids and payloads of every record of `k` that `filter` passes,
    /// in Chroma's order, read a page at a time with the pushed-down part
    /// of the filter.
    fn matching(&self, k: &Known, filter: &Filter, what: &str) -> Result<Vec<String>> {
        let pushed = if k.ours { superset(filter) } else { None };
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let mut body = json!({"limit": SCAN_PAGE, "offset": offset, "include": ["metadatas"]});
            if let Some(w) = &pushed {
                body["where"] = w.clone();
            }
            let page = records_of(&self.post(k, "get", &body, what)?, None, what)?;
            let n = page.len();
            out.extend(
                page.into_iter()
                    .filter(|r| filter.matches(&r.payload))
                    .map(|r| r.id),
            );
            if n < SCAN_PAGE {
                return Ok(out);
            }
            offset += n;
        }
    }

    /// Delete `ids` (all existing) in batches.
    fn delete_existing(&self, k: &Known, ids: &[String], what: &str) -> Result<()> {
        for chunk in ids.chunks(self.max_batch) {
            self.post(k, "delete", &json!({"ids": chunk}), what)?;
        }
        Ok(())
    }

    /// The number of records of `k`.
    fn total(&self, k: &Known, what: &str) -> Result<u64> {
        let n = self.client.call(
            "GET",
            &self.client.collections(&format!("/{}/count", k.id)),
            None,
            what,
        )?;
        n.as_u64()
            .ok_or_else(|| Error::backend(format!("{what}: Chroma's count is not a number: {n}")))
    }

    /// One query: the `k` best hits passing `filter`, scored exactly on the
    /// vectors as stored.
    fn search_one(&self, c: &Known, request: &SearchRequest, what: &str) -> Result<Vec<SearchHit>> {
        if request.k == 0 {
            return Ok(Vec::new());
        }
        let filter = request.filter.as_ref();
        let pushed = filter.filter(|_| c.ours).and_then(superset);
        let mut n = if filter.is_some() {
            request.k.saturating_mul(4)
        } else {
            request.k
        };
        let found = loop {
            if n > MAX_CANDIDATES {
                return self.scan_search(c, request, pushed.as_ref(), what);
            }
            let mut body = json!({
                "query_embeddings": [request.vector],
                "n_results": n,
                "include": ["embeddings", "documents", "metadatas"],
            });
            if let Some(w) = &pushed {
                body["where"] = w.clone();
            }
            let answer = self.post(c, "query", &body, what)?;
            let got = records_of(&answer, Some(0), what)?;
            let returned = got.len();
            let passing: Vec<VectorRecord> = got
                .into_iter()
                .filter(|r| filter.is_none_or(|f| f.matches(&r.payload)))
                .collect();
            // Chroma answers fewer than asked when fewer match: then every
            // candidate has been seen.
            if passing.len() >= request.k || returned < n {
                break passing;
            }
            n = n.saturating_mul(4);
        };
        let q_norm = norm(&request.vector);
        let mut hits: Vec<SearchHit> = found
            .into_iter()
            .map(|r| {
                let score = c
                    .distance
                    .score(&request.vector, &r.vector, q_norm, norm(&r.vector));
                SearchHit::of(r, score)
            })
            .collect();
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
        hits.truncate(request.k);
        Ok(hits)
    }
}

impl ChromaVector {
    /// A search that reads every candidate the pushed-down filter lets
    /// through, a page at a time, and keeps the best `k` passing the whole
    /// filter: exact, in memory bounded by `k` and a page.
    fn scan_search(
        &self,
        c: &Known,
        request: &SearchRequest,
        pushed: Option<&Json>,
        what: &str,
    ) -> Result<Vec<SearchHit>> {
        // The count bounds what a huge k would make the top-k set aside.
        let total = self.total(c, what)? as usize;
        let q_norm = norm(&request.vector);
        let mut best = TopK::new(request.k.min(total));
        let mut offset = 0;
        loop {
            let mut body = json!({
                "limit": SCAN_PAGE,
                "offset": offset,
                "include": ["embeddings", "documents", "metadatas"],
            });
            if let Some(w) = pushed {
                body["where"] = w.clone();
            }
            let page = records_of(&self.post(c, "get", &body, what)?, None, what)?;
            let n = page.len();
            for r in page {
                if request
                    .filter
                    .as_ref()
                    .is_none_or(|f| f.matches(&r.payload))
                {
                    let score =
                        c.distance
                            .score(&request.vector, &r.vector, q_norm, norm(&r.vector));
                    if score > best.threshold() {
                        best.push(score, r);
                    }
                }
            }
            if n < SCAN_PAGE {
                break;
            }
            offset += n;
        }
        Ok(best
            .into_sorted()
            .into_iter()
            .map(|(score, r)| SearchHit::of(r, score))
            .collect())
    }

    /// Run `call` on collection `name` after `check` (a vector's or a
    /// batch's dimension) holds against it; when it fails against what is
    /// remembered, the collection is looked up again first (another process
    /// may have made it again with another dimension).
    fn on_checked<T>(
        &self,
        name: &str,
        check: impl Fn(&Known) -> Result<()>,
        call: impl Fn(&Known) -> Result<T>,
    ) -> Result<T> {
        if check(&*self.known(name)?).is_err() {
            self.forget(name);
            check(&*self.fetch(name)?)?;
        }
        self.on(name, |k| {
            check(k)?;
            call(k)
        })
    }
}

impl Vector for ChromaVector {
    fn create_collection(&self, name: &str, dimension: u32, distance: Distance) -> Result<()> {
        validate_collection_name(name)?;
        if dimension == 0 || dimension > MAX_DIMENSION {
            return Err(Error::invalid(format!(
                "dimension {dimension} is out of range: give the embedding size, 1 to {MAX_DIMENSION}"
            )));
        }
        let body = json!({
            "name": self.full(name),
            "metadata": {
                record::DIMENSION: dimension,
                record::DISTANCE: distance.as_str(),
            },
            "configuration": {"hnsw": {"space": space(distance)}},
        });
        let what = format!("creating collection '{name}'");
        self.forget(name);
        match self
            .client
            .call("POST", &self.client.collections(""), Some(&body), &what)
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let it = match self.fetch(name) {
                    Ok(k) if k.ours => described(k.dimension, k.distance),
                    Ok(_) => "not made by Backplane".to_string(),
                    Err(e) => e.message().to_string(),
                };
                Err(collection_exists(name, &it))
            }
            Err(e) => Err(e),
        }
    }

    fn drop_collection(&self, name: &str) -> Result<()> {
        if validate_collection_name(name).is_err() {
            return Err(unknown(name));
        }
        self.forget(name);
        self.client
            .call(
                "DELETE",
                &self.client.collections(&format!("/{}", self.full(name))),
                None,
                &format!("dropping collection '{name}'"),
            )
            .map_err(|e| match e.kind() {
                ErrorKind::NotFound => unknown(name),
                _ => e,
            })?;
        Ok(())
    }

    fn list_collections(&self) -> Result<Vec<CollectionInfo>> {
        let what = "listing collections";
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let page = self.client.call(
                "GET",
                &self
                    .client
                    .collections(&format!("?limit={LIST_PAGE}&offset={offset}")),
                None,
                what,
            )?;
            let entries = page.as_array().cloned().unwrap_or_default();
            for entry in &entries {
                let Some(name) = entry
                    .get("name")
                    .and_then(Json::as_str)
                    .and_then(|n| backplane_name(&self.settings.prefix, n))
                else {
                    continue;
                };
                let Some(k) = Self::describe(entry) else {
                    continue;
                };
                let count = match self.total(&k, what) {
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                out.push(CollectionInfo {
                    name,
                    dimension: k.dimension,
                    distance: k.distance,
                    count,
                });
            }
            if entries.len() < LIST_PAGE {
                break;
            }
            offset += entries.len();
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn collection_info(&self, name: &str) -> Result<CollectionInfo> {
        let k = self.fetch(name)?;
        let count = self.on(name, |k| self.total(k, &format!("counting '{name}'")))?;
        Ok(CollectionInfo {
            name: name.to_string(),
            dimension: k.dimension,
            distance: k.distance,
            count,
        })
    }

    fn upsert(&self, collection: &str, records: &[VectorRecord]) -> Result<()> {
        let what = format!("upserting into '{collection}'");
        self.on_checked(collection, |k| validate_records(records, k.dimension), |k| {
            for chunk in records.chunks(self.max_batch) {
                let ids: Vec<String> = chunk.iter().map(|r| r.id.clone()).collect();
                let answer =
                    self.post(k, "get", &json!({"ids": ids, "include": ["metadatas"]}), &what)?;
                let list = |name: &str| answer.get(name).and_then(Json::as_array);
                let old: HashMap<&str, &Map<String, Json>> = list("ids")
                    .into_iter()
                    .flatten()
                    .zip(list("metadatas").into_iter().flatten())
                    .filter_map(|(id, m)| Some((id.as_str()?, m.as_object()?)))
                    .collect();
                let body = json!({
                    "ids": ids,
                    "embeddings": chunk.iter().map(|r| &r.vector).collect::<Vec<_>>(),
                    "documents": chunk.iter().map(|r| r.document.as_deref().unwrap_or("")).collect::<Vec<_>>(),
                    "metadatas": chunk.iter().map(|r| record::metadata(r, k.distance, old.get(r.id.as_str()).copied())).collect::<Vec<_>>(),
                });
                self.post(k, "upsert", &body, &what)?;
            }
            Ok(())
        })
    }

    fn get(&self, collection: &str, ids: &[String]) -> Result<Vec<VectorRecord>> {
        let what = format!("reading from '{collection}'");
        self.on(collection, |k| {
            let mut found: HashMap<String, VectorRecord> = HashMap::new();
            for chunk in ids.chunks(self.max_batch) {
                for r in
                    self.get_batch(k, chunk, &["embeddings", "documents", "metadatas"], &what)?
                {
                    found.insert(r.id.clone(), r);
                }
            }
            Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
        })
    }

    fn delete(&self, collection: &str, ids: &[String]) -> Result<u64> {
        let what = format!("deleting from '{collection}'");
        self.on(collection, |k| {
            let mut existing = Vec::new();
            for chunk in ids.chunks(self.max_batch) {
                existing.extend(
                    self.get_batch(k, chunk, &[], &what)?
                        .into_iter()
                        .map(|r| r.id),
                );
            }
            self.delete_existing(k, &existing, &what)?;
            Ok(existing.len() as u64)
        })
    }

    fn delete_where(&self, collection: &str, filter: &Filter) -> Result<u64> {
        let what = format!("deleting from '{collection}'");
        self.on(collection, |k| {
            let ids = self.matching(k, filter, &what)?;
            self.delete_existing(k, &ids, &what)?;
            Ok(ids.len() as u64)
        })
    }

    fn count(&self, collection: &str, filter: Option<&Filter>) -> Result<u64> {
        let what = format!("counting '{collection}'");
        self.on(collection, |k| match filter {
            None => self.total(k, &what),
            Some(f) => Ok(self.matching(k, f, &what)?.len() as u64),
        })
    }

    fn search(&self, collection: &str, request: &SearchRequest) -> Result<Vec<SearchHit>> {
        let what = format!("searching '{collection}'");
        self.on_checked(
            collection,
            |k| validate_vector(&request.vector, k.dimension, "the query"),
            |k| self.search_one(k, request, &what),
        )
    }

    fn scroll(&self, collection: &str, cursor: Option<&str>, limit: usize) -> Result<ScrollPage> {
        check_limit(limit, "scroll", "record")?;
        let page = limit.min(MAX_PAGE);
        let offset: usize = match cursor {
            None => 0,
            Some(c) => c.parse().map_err(|_| {
                Error::invalid(format!(
                    "scroll cursor '{c}' was not given by this store: pass the next_cursor of the previous page, or none to start"
                ))
            })?,
        };
        let what = format!("scrolling '{collection}'");
        self.on(collection, |k| {
            let body = json!({
                "limit": page,
                "offset": offset,
                "include": ["embeddings", "documents", "metadatas"],
            });
            let records = records_of(&self.post(k, "get", &body, &what)?, None, &what)?;
            let next_cursor = (records.len() == page).then(|| (offset + page).to_string());
            Ok(ScrollPage {
                records,
                next_cursor,
            })
        })
    }

    fn health(&self) -> Result<Health> {
        let what = "health check";
        self.client
            .call("GET", &self.client.api("/heartbeat"), None, what)?;
        let collections = self.list_collections()?.len();
        Ok(Health::ok(format!(
            "Chroma (API {}) at {}, {}/{}, {collections} collections{}",
            self.version,
            self.client.shown,
            self.settings.tenant,
            self.settings.database,
            if self.settings.prefix.is_empty() {
                String::new()
            } else {
                format!(" under '{}'", self.settings.prefix)
            }
        )))
    }
}
