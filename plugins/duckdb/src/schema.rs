//! Tables as DuckDB's catalog describes them, and tables created from a
//! portable schema (an import from another backend).
//!
//! Types of imported columns: `BIGINT`, `DOUBLE`, `VARCHAR`, `BLOB`,
//! `BOOLEAN`, `JSON`, `TIMESTAMP`; a decimal column keeps its declared
//! `DECIMAL(w,s)` when it came from DuckDB, else becomes `DOUBLE` (the
//! values other backends hand out for their numerics are integers and
//! doubles). An auto-numbered key becomes `BIGINT PRIMARY KEY DEFAULT
//! nextval('<table>_<column>_seq')`, and after the rows are in, the
//! sequence is moved past the largest key.
//!
//! DuckDB's foreign keys take no `ON DELETE` action: a table whose foreign
//! key cascades (or sets null) is refused with a message saying so rather
//! than created with a key that behaves differently.

use crate::relational::Inner;
use backplane_core::kit::sql::{quote_ident, quote_literal};
use backplane_core::{
    ColumnInfo, ColumnType, Error, ForeignKey, IndexInfo, Result, TableSchema, Value,
};

/// The store's tables (the migrations table included; internal ones not).
pub(crate) fn tables(inner: &mut Inner) -> Result<Vec<String>> {
    const SQL: &str = "SELECT table_name FROM duckdb_tables() \
         WHERE database_name = current_database() AND schema_name = current_schema() \
           AND NOT internal AND NOT starts_with(table_name, '_bp_') \
         ORDER BY table_name";
    Ok(inner
        .rows(SQL, &[])?
        .into_iter()
        .filter_map(|r| r[0].as_str().map(str::to_string))
        .collect())
}

/// The neutral type of a DuckDB column type.
pub(crate) fn column_type(data_type: &str) -> Option<ColumnType> {
    let d = data_type.to_ascii_uppercase();
    if d.ends_with(']') || d.starts_with("STRUCT") || d.starts_with("MAP") || d.starts_with("UNION")
    {
        return Some(ColumnType::Json);
    }
    let word = d.split(['(', ' ']).next().unwrap_or("");
    Some(match word {
        "TINYINT" | "SMALLINT" | "INTEGER" | "BIGINT" | "UTINYINT" | "USMALLINT" | "UINTEGER"
        | "INT" | "INT2" | "INT4" | "INT8" => ColumnType::Integer,
        // Values past i64 come back as text: a decimal column keeps them.
        "UBIGINT" | "HUGEINT" | "UHUGEINT" | "DECIMAL" | "NUMERIC" => ColumnType::Decimal,
        "FLOAT" | "DOUBLE" | "REAL" => ColumnType::Real,
        "VARCHAR" | "TEXT" | "DATE" | "TIME" | "UUID" | "INTERVAL" | "ENUM" | "BIT" => {
            ColumnType::Text
        }
        "BLOB" => ColumnType::Blob,
        "BOOLEAN" => ColumnType::Bool,
        "JSON" => ColumnType::Json,
        "TIMESTAMP" | "TIMESTAMP_S" | "TIMESTAMP_MS" | "TIMESTAMP_NS" | "TIMESTAMPTZ" => {
            ColumnType::Timestamp
        }
        _ => return None,
    })
}

fn text_list(v: &Value) -> Vec<String> {
    match v {
        Value::Json(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        // `duckdb_indexes().expressions` is text: `[a, "b c"]`.
        Value::Text(t) => t
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .map(|c| c.trim().trim_matches('\'').trim_matches('"').to_string())
            .filter(|c| !c.is_empty())
            .collect(),
        _ => Vec::new(),
    }
}

/// The schema of `table`; `NotFound` if there is none.
pub(crate) fn describe(inner: &mut Inner, table: &str) -> Result<TableSchema> {
    const COLUMNS: &str = "SELECT column_name, data_type, is_nullable, column_default FROM duckdb_columns() \
         WHERE database_name = current_database() AND schema_name = current_schema() AND table_name = $1 \
         ORDER BY column_index";
    const CONSTRAINTS: &str = "SELECT constraint_type, constraint_column_names, referenced_table, referenced_column_names, constraint_text \
         FROM duckdb_constraints() \
         WHERE database_name = current_database() AND schema_name = current_schema() AND table_name = $1 \
         ORDER BY constraint_index";
    const INDEXES: &str = "SELECT index_name, is_unique, expressions FROM duckdb_indexes() \
         WHERE database_name = current_database() AND schema_name = current_schema() AND table_name = $1 \
         ORDER BY index_name";
    let cols = inner.rows(COLUMNS, &[table])?;
    if cols.is_empty() {
        return Err(Error::not_found(format!(
            "table '{table}' does not exist: tables() lists the tables there are"
        )));
    }
    let mut schema = TableSchema {
        name: table.to_string(),
        ..TableSchema::default()
    };
    for c in &cols {
        let data_type = c[1].as_str().unwrap_or("").to_string();
        let default = c[3].as_str().unwrap_or("");
        schema.columns.push(ColumnInfo {
            name: c[0].as_str().unwrap_or("").to_string(),
            column_type: column_type(&data_type),
            data_type,
            nullable: c[2].as_bool() != Some(false),
            primary_key: false,
            auto_increment: default.starts_with("nextval("),
        });
    }
    for c in inner.rows(CONSTRAINTS, &[table])? {
        let columns = text_list(&c[1]);
        match c[0].as_str().unwrap_or("") {
            "PRIMARY KEY" => schema.primary_key = columns,
            "UNIQUE" => schema.indexes.push(IndexInfo {
                name: format!("{table}_{}_key", columns.join("_")),
                columns,
                unique: true,
            }),
            "FOREIGN KEY" => schema.foreign_keys.push(ForeignKey {
                columns,
                ref_table: c[2].as_str().unwrap_or("").to_string(),
                ref_columns: text_list(&c[3]),
                on_delete: None,
            }),
            _ => {}
        }
    }
    for ix in inner.rows(INDEXES, &[table])? {
        schema.indexes.push(IndexInfo {
            name: ix[0].as_str().unwrap_or("").to_string(),
            unique: ix[1].as_bool() == Some(true),
            columns: text_list(&ix[2]),
        });
    }
    let key = schema.primary_key.clone();
    for c in &mut schema.columns {
        c.primary_key = key.contains(&c.name);
        // Only a generated single-column key counts as auto-numbered.
        c.auto_increment &= key.len() == 1 && c.primary_key;
    }
    Ok(schema)
}

/// The DuckDB type an imported column is created with.
fn duck_type(c: &ColumnInfo) -> String {
    match c.column_type {
        Some(ColumnType::Integer) => "BIGINT".into(),
        Some(ColumnType::Real) => "DOUBLE".into(),
        Some(ColumnType::Decimal) => {
            let d = c.data_type.to_ascii_uppercase();
            if d.starts_with("DECIMAL(") || d == "HUGEINT" || d == "UBIGINT" || d == "UHUGEINT" {
                c.data_type.clone()
            } else {
                "DOUBLE".into()
            }
        }
        Some(ColumnType::Text) => "VARCHAR".into(),
        Some(ColumnType::Blob) => "BLOB".into(),
        Some(ColumnType::Bool) => "BOOLEAN".into(),
        Some(ColumnType::Json) => "JSON".into(),
        Some(ColumnType::Timestamp) => "TIMESTAMP".into(),
        None => c.data_type.clone(),
    }
}

/// The sequence that numbers an imported auto-numbered key.
fn sequence_name(table: &str, column: &str) -> String {
    format!("{table}_{column}_seq")
}

/// The statements that create `schema` (if absent) in DuckDB.
pub(crate) fn create_statements(schema: &TableSchema) -> Result<Vec<String>> {
    let t = quote_ident(&schema.name);
    let auto_key = (schema.primary_key.len() == 1)
        .then(|| schema.column(&schema.primary_key[0]))
        .flatten()
        .filter(|c| c.auto_increment);
    let mut out = Vec::new();
    let mut parts = Vec::new();
    for c in &schema.columns {
        let mut d = format!("{} {}", quote_ident(&c.name), duck_type(c));
        if auto_key.is_some_and(|k| k.name == c.name) {
            let seq = sequence_name(&schema.name, &c.name);
            out.push(format!(
                "CREATE SEQUENCE IF NOT EXISTS {}",
                quote_ident(&seq)
            ));
            d.push_str(&format!(" DEFAULT nextval({})", quote_literal(&seq)));
        }
        if !c.nullable {
            d.push_str(" NOT NULL");
        }
        parts.push(d);
    }
    if !schema.primary_key.is_empty() {
        let k: Vec<String> = schema.primary_key.iter().map(|c| quote_ident(c)).collect();
        parts.push(format!("PRIMARY KEY ({})", k.join(", ")));
    }
    for fk in &schema.foreign_keys {
        if let Some(action) = &fk.on_delete {
            return Err(Error::unsupported(format!(
                "table '{}': its foreign key ({}) → {} has ON DELETE {action}, which DuckDB cannot do \
                 (its foreign keys take no actions): drop the action at the source, or move this table to another backend",
                schema.name,
                fk.columns.join(", "),
                fk.ref_table
            )));
        }
        let cols: Vec<String> = fk.columns.iter().map(|c| quote_ident(c)).collect();
        let refs: Vec<String> = fk.ref_columns.iter().map(|c| quote_ident(c)).collect();
        parts.push(format!(
            "FOREIGN KEY ({}) REFERENCES {} ({})",
            cols.join(", "),
            quote_ident(&fk.ref_table),
            refs.join(", ")
        ));
    }
    out.push(format!(
        "CREATE TABLE IF NOT EXISTS {t} ({})",
        parts.join(", ")
    ));
    out.extend(backplane_core::port::create_index_statements(schema));
    Ok(out)
}

/// After an import: move the sequence of `schema`'s auto-numbered key past
/// the largest key, so new rows do not collide with imported ones.
pub(crate) fn advance_sequence(inner: &mut Inner, schema: &TableSchema) -> Result<()> {
    let Some(key) = (schema.primary_key.len() == 1)
        .then(|| schema.column(&schema.primary_key[0]))
        .flatten()
        .filter(|c| c.auto_increment)
    else {
        return Ok(());
    };
    const DEFAULT: &str = "SELECT column_default FROM duckdb_columns() \
         WHERE database_name = current_database() AND schema_name = current_schema() \
           AND table_name = $1 AND column_name = $2";
    let default = inner.rows(DEFAULT, &[&schema.name, &key.name])?;
    let Some(seq) = default
        .first()
        .and_then(|r| r[0].as_str())
        .and_then(|d| d.strip_prefix("nextval('"))
        .and_then(|d| d.split('\'').next())
        .map(str::to_string)
    else {
        return Ok(());
    };
    let max = format!(
        "SELECT CAST(coalesce(max({}), 0) AS BIGINT) FROM {}",
        quote_ident(&key.name),
        quote_ident(&schema.name)
    );
    let max = inner.rows(&max, &[])?[0][0].as_i64().unwrap_or(0);
    const LAST: &str = "SELECT CAST(coalesce(last_value, start_value - increment_by) AS BIGINT) \
         FROM duckdb_sequences() WHERE database_name = current_database() \
           AND schema_name = current_schema() AND sequence_name = $1";
    let last = inner
        .rows(LAST, &[&seq])?
        .first()
        .and_then(|r| r[0].as_i64())
        .unwrap_or(0);
    if max > last {
        let sql = format!(
            "SELECT max(nextval({})) FROM range({})",
            quote_literal(&seq),
            max - last
        );
        inner.rows(&sql, &[])?;
    }
    Ok(())
}
