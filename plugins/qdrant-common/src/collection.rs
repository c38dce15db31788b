//! What both backends check and say about collections.

use backplane_core::kit::page::check_limit;
use backplane_core::vector::validate_collection_name;
use backplane_core::{CollectionInfo, Distance, Error, ErrorKind, Result, StoreConfig, Vector};

/// The named vector holding a cosine collection's vectors as given
/// (Qdrant normalises the searched copy).
pub const RAW_VECTOR: &str = "raw";
/// The largest dimension accepted (Qdrant's own limit).
pub const MAX_DIMENSION: u32 = 65_536;
/// The most records one scroll page returns, whatever the limit asked.
pub const MAX_PAGE: usize = 10_000;
/// Points read per page when a backend scans (count, delete_where with a
/// filter it evaluates itself).
pub const SCAN_PAGE: usize = 1_000;

pub use backplane_core::vector::unknown_collection as unknown;

/// Check `name` as the name of a collection to use: a name no collection
/// can have is an unknown collection.
pub fn check_name(name: &str) -> Result<()> {
    validate_collection_name(name).map_err(|_| unknown(name))
}

pub use backplane_core::vector::{collection_exists as exists, described};

/// Whether a collection of `distance` keeps each vector a second time as
/// [`RAW_VECTOR`], the copy `get` and `scroll` return: cosine only, whose
/// searched copy Qdrant normalises.
pub fn keeps_raw(distance: Distance) -> bool {
    distance == Distance::Cosine
}

/// Check the name and dimension of a collection to create.
pub fn check_new(name: &str, dimension: u32) -> Result<()> {
    validate_collection_name(name)?;
    if dimension == 0 || dimension > MAX_DIMENSION {
        return Err(Error::invalid(format!(
            "dimension {dimension} is out of range: give the embedding size, 1 to {MAX_DIMENSION}"
        )));
    }
    Ok(())
}

/// The page size of a scroll asking for `limit` records.
pub fn scroll_page(limit: usize) -> Result<usize> {
    check_limit(limit, "scroll", "record")?;
    Ok(limit.min(MAX_PAGE))
}

/// The descriptions of the collections `names` (candidates: the invalid
/// are left out), sorted by name, leaving out those gone by now or not
/// made by a Backplane backend.
pub fn describe_all(
    store: &dyn Vector,
    names: impl IntoIterator<Item = String>,
) -> Result<Vec<CollectionInfo>> {
    let mut names: Vec<String> = names
        .into_iter()
        .filter(|n| validate_collection_name(n).is_ok())
        .collect();
    names.sort();
    let mut out = Vec::with_capacity(names.len());
    for n in names {
        match store.collection_info(&n) {
            Ok(i) => out.push(i),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Incompatible) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Check the HNSW settings of a store section (each as given, `None`
/// when left out): `hnsw_m` 2–512, `hnsw_ef_construct` 4–4096, `hnsw_ef`
/// 1–65536, each mistake one `Config` error naming the key and its range.
pub fn check_hnsw(
    store: &StoreConfig,
    m: Option<u64>,
    ef_construct: Option<u64>,
    ef: Option<u64>,
) -> Result<()> {
    for (key, value, range, hint) in [
        (
            "hnsw_m",
            m,
            2..=512,
            "16 is a good start; 32 or 64 for higher recall",
        ),
        (
            "hnsw_ef_construct",
            ef_construct,
            4..=4096,
            "128 is a good start",
        ),
        ("hnsw_ef", ef, 1..=65_536, "128 is a good start"),
    ] {
        if let Some(v) = value.filter(|v| !range.contains(v)) {
            return Err(store.error(format!(
                "`{key}` is {v}: give {} to {} ({hint})",
                range.start(),
                range.end()
            )));
        }
    }
    Ok(())
}
