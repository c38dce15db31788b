//! Describing a table for export: its columns, primary key, indexes and
//! foreign keys, from SQLite's pragmas.

use crate::db::sql_error;
use backplane_core::{ColumnInfo, ColumnType, ForeignKey, IndexInfo, Result, TableSchema};

/// The schema of `table` (which exists), from SQLite's table, index and
/// foreign-key pragmas.
pub(crate) fn describe_table(conn: &rusqlite::Connection, name: String) -> Result<TableSchema> {
    const COLS: &str = "SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1) ORDER BY cid";
    const INDEXES: &str =
        "SELECT name, \"unique\", origin, partial FROM pragma_index_list(?1) ORDER BY seq";
    const INDEX_COLS: &str = "SELECT name FROM pragma_index_info(?1) ORDER BY seqno";
    const FKS: &str = "SELECT id, \"table\", \"from\", \"to\", on_delete FROM pragma_foreign_key_list(?1) ORDER BY id, seq";
    let query = |sql: &'static str| conn.prepare_cached(sql).map_err(|e| sql_error(e, sql));
    let mut keyed: Vec<(i64, String)> = Vec::new();
    let mut columns: Vec<ColumnInfo> = query(COLS)?
        .query_map([&name], |r| {
            let name: String = r.get(0)?;
            let data_type: String = r.get(1)?;
            let not_null: bool = r.get(2)?;
            let pk: i64 = r.get(3)?;
            Ok((name, data_type, not_null, pk))
        })
        .map_err(|e| sql_error(e, COLS))?
        .map(|c| {
            let (name, data_type, not_null, pk) = c.map_err(|e| sql_error(e, COLS))?;
            if pk > 0 {
                keyed.push((pk, name.clone()));
            }
            Ok(ColumnInfo {
                column_type: Some(ColumnType::from_sqlite(&data_type)),
                name,
                data_type,
                nullable: !not_null,
                primary_key: pk > 0,
                auto_increment: false,
            })
        })
        .collect::<Result<_>>()?;
    keyed.sort();
    let primary_key: Vec<String> = keyed.into_iter().map(|(_, n)| n).collect();
    if let [key] = primary_key.as_slice() {
        // An INTEGER PRIMARY KEY is the rowid: never NULL, numbered by
        // SQLite past the largest.
        if let Some(c) = columns
            .iter_mut()
            .find(|c| &c.name == key && c.data_type.eq_ignore_ascii_case("INTEGER"))
        {
            c.nullable = false;
            c.auto_increment = true;
        }
    }
    let listed: Vec<(String, bool, String, bool)> = query(INDEXES)?
        .query_map([&name], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .map_err(|e| sql_error(e, INDEXES))?
        .collect::<rusqlite::Result<_>>()
        .map_err(|e| sql_error(e, INDEXES))?;
    let mut indexes = Vec::new();
    for (index, unique, origin, partial) in listed {
        // The primary key is described already; a partial index's condition
        // does not carry over to another backend.
        if origin == "pk" || partial {
            continue;
        }
        let cols: Vec<Option<String>> = query(INDEX_COLS)?
            .query_map([&index], |r| r.get(0))
            .map_err(|e| sql_error(e, INDEX_COLS))?
            .collect::<rusqlite::Result<_>>()
            .map_err(|e| sql_error(e, INDEX_COLS))?;
        // An index on expressions has no column names.
        let Some(cols) = cols.into_iter().collect::<Option<Vec<String>>>() else {
            continue;
        };
        let index = if origin == "u" {
            format!("{name}_{}_key", cols.join("_"))
        } else {
            index
        };
        indexes.push(IndexInfo {
            name: index,
            columns: cols,
            unique,
        });
    }
    let mut foreign_keys: Vec<(i64, ForeignKey)> = Vec::new();
    let fk_rows: Vec<(i64, String, String, Option<String>, String)> = query(FKS)?
        .query_map([&name], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .map_err(|e| sql_error(e, FKS))?
        .collect::<rusqlite::Result<_>>()
        .map_err(|e| sql_error(e, FKS))?;
    for (id, ref_table, from, to, on_delete) in fk_rows {
        if foreign_keys.last().is_none_or(|(last, _)| *last != id) {
            foreign_keys.push((
                id,
                ForeignKey {
                    columns: Vec::new(),
                    ref_table: ref_table.clone(),
                    ref_columns: Vec::new(),
                    on_delete: (on_delete != "NO ACTION").then_some(on_delete),
                },
            ));
        }
        let fk = &mut foreign_keys.last_mut().expect("pushed above").1;
        fk.columns.push(from);
        fk.ref_columns.push(to.unwrap_or_default());
    }
    let mut foreign_keys: Vec<ForeignKey> = foreign_keys.into_iter().map(|(_, f)| f).collect();
    // `REFERENCES parent` without columns means the parent's primary key.
    for fk in &mut foreign_keys {
        if fk.ref_columns.iter().any(String::is_empty) {
            let parent = describe_table(conn, fk.ref_table.clone())?;
            fk.ref_columns = parent.primary_key;
        }
    }
    Ok(TableSchema {
        name,
        columns,
        primary_key,
        indexes,
        foreign_keys,
    })
}
