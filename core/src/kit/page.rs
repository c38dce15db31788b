//! Cursor pages over collections ordered by a string key: graph exports
//! (`export_nodes`, `export_edges`) and vector `scroll`.
//!
//! A page holds up to `limit` items after the cursor, in key order; its
//! `next_cursor` is the key of its last item when more follow, and `None`
//! on the last page. Two forms, for the two ways a backend finds items:
//!
//! - [`page_after`]: an in-memory [`BTreeMap`] keyed by id.
//! - [`page_of`]: rows a database returned for `WHERE key > cursor ORDER BY
//!   key LIMIT n`, where `n` is [`fetch_count`]`(limit)`: one more row than
//!   the page holds, which tells whether another page follows.
//!
//! [`collect_pages`] reads a whole listing, page after page.

use crate::error::{Error, Result};
use crate::graph::Page;
use std::collections::BTreeMap;
use std::ops::Bound;

/// Check the page size a caller asked for: `Err(InvalidInput)` for 0.
/// `call` names the call (`"scroll"`, `"export"`), `item` what a page
/// holds (`"record"`, `"item"`).
pub fn check_limit(limit: usize, call: &str, item: &str) -> Result<()> {
    if limit == 0 {
        return Err(Error::invalid(format!(
            "{call} limit is 0: ask for at least one {item} per page"
        )));
    }
    Ok(())
}

/// Every item of a paged listing, in order: `page` is called with no
/// cursor, then with each page's `next_cursor`, until a page has none (or
/// gives back the cursor it was called with, which would never end).
pub fn collect_pages<T>(mut page: impl FnMut(Option<&str>) -> Result<Page<T>>) -> Result<Vec<T>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let p = page(cursor.as_deref())?;
        out.extend(p.items);
        match p.next_cursor {
            Some(c) if Some(&c) != cursor.as_ref() => cursor = Some(c),
            _ => return Ok(out),
        }
    }
}

/// How many rows to ask a database for, for a page of `limit` items: one
/// more, to learn whether another page follows (as an SQL `LIMIT`).
pub fn fetch_count(limit: usize) -> i64 {
    limit.saturating_add(1).min(i64::MAX as usize) as i64
}

/// A page from `items`, up to [`fetch_count`]`(limit)` of them in key order:
/// the first `limit`, and as cursor the key of the last of those when
/// there were more.
pub fn page_of<T>(mut items: Vec<T>, limit: usize, key: impl Fn(&T) -> &str) -> Page<T> {
    let more = items.len() > limit;
    items.truncate(limit);
    let next_cursor = if more {
        items.last().map(|x| key(x).to_string())
    } else {
        None
    };
    Page { items, next_cursor }
}

/// The page of keys after `cursor`, from keys in no particular order (a
/// hash map's): those past the cursor, sorted, the first `limit`; and the
/// next page's cursor when there are more. The caller builds the page's
/// items from its keys, so only those are copied.
pub fn keys_after<'a>(
    keys: impl IntoIterator<Item = &'a str>,
    cursor: Option<&str>,
    limit: usize,
) -> (Vec<&'a str>, Option<String>) {
    let mut page: Vec<&str> = keys
        .into_iter()
        .filter(|k| cursor.is_none_or(|c| *k > c))
        .collect();
    page.sort_unstable();
    let more = page.len() > limit;
    page.truncate(limit);
    let next = if more {
        page.last().map(|k| k.to_string())
    } else {
        None
    };
    (page, next)
}

/// The page after `cursor` of the entries of a map in no particular order
/// (a hash map's) that `keep` keeps, in key order, each turned into an item
/// by `item`: [`keys_after`] over the map, so only the page's entries are
/// turned into items.
pub fn page_of_map<V, T>(
    map: &std::collections::HashMap<String, V>,
    keep: impl Fn(&V) -> bool,
    cursor: Option<&str>,
    limit: usize,
    item: impl Fn(&str, &V) -> T,
) -> Page<T> {
    let kept = map.iter().filter(|(_, v)| keep(v)).map(|(k, _)| k.as_str());
    let (keys, next_cursor) = keys_after(kept, cursor, limit);
    Page {
        items: keys.into_iter().map(|k| item(k, &map[k])).collect(),
        next_cursor,
    }
}

/// The page of `map` after key `cursor` (from the start for `None`), each
/// value turned into an item by `item`. Only the page's values are visited.
pub fn page_after<'a, V, T>(
    map: &'a BTreeMap<String, V>,
    cursor: Option<&str>,
    limit: usize,
    mut item: impl FnMut(&'a V) -> T,
) -> Page<T> {
    let start = cursor.map_or(Bound::Unbounded, Bound::Excluded);
    let mut it = map.range::<str, _>((start, Bound::Unbounded));
    let mut items = Vec::with_capacity(limit.min(map.len()));
    let mut last: Option<&String> = None;
    for (k, v) in it.by_ref().take(limit) {
        items.push(item(v));
        last = Some(k);
    }
    let next_cursor = match it.next() {
        Some(_) => last.cloned(),
        None => None,
    };
    Page { items, next_cursor }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_after_pages_unordered_keys() {
        let keys = ["d", "a", "c", "b", "e"];
        let (p, next) = keys_after(keys, None, 2);
        assert_eq!((p, next.as_deref()), (vec!["a", "b"], Some("b")));
        let (p, next) = keys_after(keys, Some("b"), 2);
        assert_eq!((p, next.as_deref()), (vec!["c", "d"], Some("d")));
        let (p, next) = keys_after(keys, Some("d"), 2);
        assert_eq!((p, next), (vec!["e"], None));
        let (p, next) = keys_after(keys, Some("d"), 1);
        assert_eq!((p, next), (vec!["e"], None));
    }
    use crate::ErrorKind;

    fn map(n: usize) -> BTreeMap<String, usize> {
        (0..n).map(|i| (format!("k{i:03}"), i)).collect()
    }

    /// Every page of `map` with `limit`, following the cursors.
    fn walk(map: &BTreeMap<String, usize>, limit: usize) -> Vec<Vec<usize>> {
        let mut pages = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let p = page_after(map, cursor.as_deref(), limit, |v| *v);
            pages.push(p.items);
            match p.next_cursor {
                Some(c) => cursor = Some(c),
                None => return pages,
            }
        }
    }

    #[test]
    fn limits() {
        let e = check_limit(0, "scroll", "record").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert_eq!(
            e.message(),
            "scroll limit is 0: ask for at least one record per page"
        );
        assert!(check_limit(1, "export", "item").is_ok());
        assert_eq!(fetch_count(10), 11);
        assert_eq!(fetch_count(usize::MAX), i64::MAX);
    }

    #[test]
    fn map_pages_cover_everything_once() {
        for (n, limit) in [(0, 3), (1, 1), (5, 5), (6, 5), (10, 3), (10, 100)] {
            let pages = walk(&map(n), limit);
            let all: Vec<usize> = pages.iter().flatten().copied().collect();
            assert_eq!(all, (0..n).collect::<Vec<_>>(), "n {n} limit {limit}");
            // No empty page after a full one: the cursor says when to stop.
            assert_eq!(pages.len(), n.div_ceil(limit).max(1), "n {n} limit {limit}");
        }
        let m = map(10);
        let p = page_after(&m, Some("k004"), 2, |v| *v);
        assert_eq!(p.items, vec![5, 6]);
        assert_eq!(p.next_cursor.as_deref(), Some("k006"));
        // A cursor between keys, or past the end.
        assert_eq!(page_after(&m, Some("k0045"), 1, |v| *v).items, vec![5]);
        let end = page_after(&m, Some("zzz"), 4, |v| *v);
        assert!(end.items.is_empty() && end.next_cursor.is_none());
    }

    #[test]
    fn fetched_rows_become_pages() {
        let rows = |r: std::ops::Range<usize>| r.map(|i| format!("k{i}")).collect::<Vec<_>>();
        // The database returned limit + 1 rows: another page follows.
        let p = page_of(rows(0..4), 3, |s| s);
        assert_eq!(p.items, rows(0..3));
        assert_eq!(p.next_cursor.as_deref(), Some("k2"));
        // Exactly limit rows: the last page.
        let p = page_of(rows(0..3), 3, |s| s);
        assert_eq!(p.items.len(), 3);
        assert_eq!(p.next_cursor, None);
        let p = page_of(Vec::<String>::new(), 3, |s| s);
        assert!(p.items.is_empty() && p.next_cursor.is_none());
    }
}
