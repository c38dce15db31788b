//! DuckDB's errors as Backplane's: DuckDB says what went wrong in the
//! first words of its message (`Parser Error:`, `Constraint Error:`, …),
//! which decide the kind.

use backplane_core::kit::text::snippet;
use backplane_core::{Error, ErrorKind};

/// The Backplane error for a failure of `sql`.
pub(crate) fn sql_error(e: duckdb::Error, sql: &str) -> Error {
    use duckdb::Error as E;
    let msg = match &e {
        E::DuckDBFailure(_, Some(m)) => m.clone(),
        E::InvalidParameterCount(given, expected) => {
            return Error::invalid(format!(
                "`{}` has {expected} parameter(s) but {given} value(s) were given: pass one value per placeholder",
                snippet(sql)
            ))
        }
        E::NulError(_) => {
            return Error::invalid(format!(
                "`{}` contains a NUL character: remove it",
                snippet(sql)
            ))
        }
        other => other.to_string(),
    };
    // DuckDB's messages run over several lines (a caret under the error):
    // the first line says it.
    let first = msg.lines().next().unwrap_or("").trim().to_string();
    let kind = kind_of(&first);
    let text = format!("{first} (in `{}`)", snippet(sql));
    Error::new(kind, text)
}

/// The kind of a DuckDB message.
pub(crate) fn kind_of(msg: &str) -> ErrorKind {
    let class = msg.split(':').next().unwrap_or("");
    match class {
        "Constraint Error" => ErrorKind::Conflict,
        // Two transactions wrote the same rows.
        "TransactionContext Error" | "Transaction Error" if msg.contains("onflict") => {
            ErrorKind::Conflict
        }
        "Parser Error"
        | "Binder Error"
        | "Catalog Error"
        | "Conversion Error"
        | "Invalid Input Error"
        | "Not implemented Error"
        | "Syntax Error"
        | "Out of Range Error"
        | "Invalid Error"
        | "Dependency Error"
        | "Permission Error"
        | "Serialization Error"
        | "Mismatch Type Error"
        | "Sequence Error"
        | "Parameter Not Allowed Error"
        | "Parameter Not Resolved Error" => ErrorKind::InvalidInput,
        "IO Error" | "Interrupt Error" | "Out of Memory Error" => ErrorKind::Unavailable,
        // The appender says "Failed to append: …" with the cause after it.
        _ if msg.contains("Duplicate key") || msg.contains("violates") => ErrorKind::Conflict,
        _ if msg.contains("Could not convert") || msg.contains("Conversion Error") => {
            ErrorKind::InvalidInput
        }
        _ => ErrorKind::Backend,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_map_to_kinds() {
        assert_eq!(
            kind_of("Constraint Error: Duplicate key"),
            ErrorKind::Conflict
        );
        assert_eq!(
            kind_of("Parser Error: syntax error at or near \"SELEC\""),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            kind_of("Catalog Error: Table with name x does not exist!"),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            kind_of("IO Error: Could not set lock on file"),
            ErrorKind::Unavailable
        );
        assert_eq!(kind_of("INTERNAL Error: boom"), ErrorKind::Backend);
        assert_eq!(
            kind_of("Failed to append: Duplicate key \"id: 5\" violates primary key constraint."),
            ErrorKind::Conflict
        );
        assert_eq!(
            kind_of("Failed to append: Could not convert string 'x' to INT64"),
            ErrorKind::InvalidInput
        );
    }
}
