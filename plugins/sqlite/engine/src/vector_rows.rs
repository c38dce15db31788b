//! Vector records as SQLite rows, shared by the plugins that keep them in
//! SQLite (the sqlite plugin's vector tables, the faiss plugin's
//! `records.db`): vectors as little-endian `f32` BLOBs, payloads as JSON
//! text (both readable from the `sqlite3` shell), records read back from
//! rows of `id, vector, document, payload` (one by one, and by id), the scan that selects records
//! by payload filter, and a scroll page in id order.

use crate::db::sql_error;
use backplane_core::kit::page::{check_limit, fetch_count, page_of};
use backplane_core::{Error, Filter, Result, ScrollPage, VectorRecord};
use rusqlite::{params, Connection};

/// `v` as a vector BLOB, into `out` (replacing what it held).
pub fn encode(v: &[f32], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
}

/// `bytes` (a vector BLOB) decoded into `out`, replacing what it held.
#[inline]
pub fn decode_into(bytes: &[u8], out: &mut Vec<f32>) {
    out.clear();
    extend_decoded(bytes, out);
}

/// `bytes` (a vector BLOB) decoded onto the end of `out`.
#[inline]
pub fn extend_decoded(bytes: &[u8], out: &mut Vec<f32>) {
    out.extend(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
    );
}

/// A stored payload (JSON text, or NULL) parsed.
pub fn parse_payload(text: Option<&str>) -> Result<serde_json::Value> {
    match text {
        None => Ok(serde_json::Value::Null),
        Some(t) => serde_json::from_str(t).map_err(|e| {
            Error::backend(format!("a stored payload is not valid JSON ({e}): {t:.80}"))
        }),
    }
}

/// A payload as stored: JSON text, or NULL for none.
pub fn payload_text(p: &serde_json::Value) -> Option<String> {
    (!p.is_null()).then(|| p.to_string())
}

/// The vector BLOB in column 1 of a row, checked against the collection's
/// dimension.
pub fn vector_blob<'r>(
    row: &'r rusqlite::Row<'_>,
    collection: &str,
    dimension: u32,
    sql: &str,
) -> Result<&'r [u8]> {
    let blob = row
        .get_ref(1)
        .and_then(|v| v.as_blob().map_err(Into::into))
        .map_err(|e| sql_error(e, sql))?;
    if blob.len() != dimension as usize * 4 {
        return Err(Error::backend(format!(
            "a vector in collection '{collection}' is {} bytes but the collection has {dimension} dimensions ({} bytes): \
             the row was written by something other than this plugin",
            blob.len(),
            dimension * 4
        )));
    }
    Ok(blob)
}

/// A record from a row of `id, vector, document, payload`.
pub fn read_record(
    row: &rusqlite::Row<'_>,
    collection: &str,
    dimension: u32,
    sql: &str,
) -> Result<VectorRecord> {
    let err = |e| sql_error(e, sql);
    let mut vector = Vec::with_capacity(dimension as usize);
    decode_into(vector_blob(row, collection, dimension, sql)?, &mut vector);
    let payload: Option<String> = row.get(3).map_err(err)?;
    Ok(VectorRecord {
        id: row.get(0).map_err(err)?,
        vector,
        document: row.get(2).map_err(err)?,
        payload: parse_payload(payload.as_deref())?,
    })
}

/// The records of `ids` that exist, in the order asked: `sql` selects
/// `id, vector, document, payload` for `?1` collection and `?2` id.
pub fn get(
    conn: &Connection,
    sql: &str,
    collection: &str,
    dimension: u32,
    ids: &[String],
) -> Result<Vec<VectorRecord>> {
    let mut stmt = conn.prepare_cached(sql).map_err(|e| sql_error(e, sql))?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let mut rows = stmt
            .query([collection, id])
            .map_err(|e| sql_error(e, sql))?;
        if let Some(row) = rows.next().map_err(|e| sql_error(e, sql))? {
            out.push(read_record(row, collection, dimension, sql)?);
        }
    }
    Ok(out)
}

/// The keys (column 0) of the rows `sql` selects for `collection` (its
/// `?1`) whose payload (column 1) passes `filter`.
pub fn matching_keys(
    conn: &Connection,
    sql: &str,
    collection: &str,
    filter: &Filter,
) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(sql).map_err(|e| sql_error(e, sql))?;
    let mut rows = stmt.query([collection]).map_err(|e| sql_error(e, sql))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| sql_error(e, sql))? {
        let payload = parse_payload(
            row.get_ref(1)
                .and_then(|v| v.as_str_or_null().map_err(Into::into))
                .map_err(|e| sql_error(e, sql))?,
        )?;
        if filter.matches(&payload) {
            out.push(row.get(0).map_err(|e| sql_error(e, sql))?);
        }
    }
    Ok(out)
}

/// One scroll page: `sql` selects `id, vector, document, payload` for
/// `?1` collection, `?2` cursor (ids after it, or all when NULL) and `?3`
/// rows, in id order.
pub fn scroll(
    conn: &Connection,
    sql: &str,
    collection: &str,
    dimension: u32,
    cursor: Option<&str>,
    limit: usize,
) -> Result<ScrollPage> {
    check_limit(limit, "scroll", "record")?;
    let mut stmt = conn.prepare_cached(sql).map_err(|e| sql_error(e, sql))?;
    let mut rows = stmt
        .query(params![collection, cursor, fetch_count(limit)])
        .map_err(|e| sql_error(e, sql))?;
    let mut records = Vec::with_capacity(limit.min(1024));
    while let Some(row) = rows.next().map_err(|e| sql_error(e, sql))? {
        records.push(read_record(row, collection, dimension, sql)?);
    }
    let page = page_of(records, limit, |r: &VectorRecord| &r.id);
    Ok(ScrollPage {
        records: page.items,
        next_cursor: page.next_cursor,
    })
}
