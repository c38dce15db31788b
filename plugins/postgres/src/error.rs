//! The driver's errors mapped to Backplane's kinds: by SQLSTATE for the
//! server's errors, by what failed for the rest, and whether the failure
//! leaves the connection unusable.

use crate::config::Settings;
use backplane_core::kit::text::snippet;
use backplane_core::Error;
use postgres::error::SqlState;

/// Whether the error leaves the connection unusable, or points at a server
/// that should no longer be used (a standby after a failover).
pub(crate) fn breaks_connection(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            let c = code.code();
            c.starts_with("08")
                || c.starts_with("57P")
                || *code == SqlState::READ_ONLY_SQL_TRANSACTION
        }
        // No SQLSTATE: an I/O or protocol failure, unless it is a value
        // conversion on our side.
        None => !is_conversion(e),
    }
}

fn is_conversion(e: &postgres::Error) -> bool {
    let t = e.to_string();
    t.starts_with("error serializing") || t.starts_with("error deserializing")
}

/// The error for a failed connection attempt: a refused login is `Config`
/// (check url and password), an unreachable or starting server
/// `Unavailable`.
pub(crate) fn connect_error(e: &postgres::Error, s: &Settings) -> Error {
    let text = error_text(e);
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            return Error::config(format!(
                "the PostgreSQL server at {} refused the login ({text}): check the user in `url` and `password`",
                s.shown
            ));
        }
        if *code == SqlState::INVALID_CATALOG_NAME {
            return Error::config(format!(
                "the PostgreSQL server at {} has no such database ({text}): fix the database name at the end of `url`, or create it",
                s.shown
            ));
        }
        if code.code().starts_with("57P")
            || code.code().starts_with("53")
            || code.code().starts_with("08")
        {
            return Error::unavailable(format!(
                "the PostgreSQL server at {} cannot take connections now ({text}); the call can be retried",
                s.shown
            ));
        }
        return Error::config(format!(
            "the PostgreSQL server at {} refused the connection ({text}): check `url`",
            s.shown
        ));
    }
    if text.contains("password missing") {
        return Error::config(format!(
            "the PostgreSQL server at {} asks for a password and none was given: set `password` (e.g. password = \"${{POSTGRES_PASSWORD}}\")",
            s.shown
        ));
    }
    Error::unavailable(format!(
        "cannot reach the PostgreSQL server at {} ({text}; connect timeout {} ms): start it or check `url`; the call can be retried",
        s.shown,
        s.connect_timeout.as_millis()
    ))
}

/// The driver's message with its causes.
pub(crate) fn error_text(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut t = format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
        if let Some(d) = db.detail() {
            t.push_str(&format!("; {d}"));
        }
        if let Some(h) = db.hint() {
            t.push_str(&format!("; hint: {h}"));
        }
        return t;
    }
    let mut t = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        let st = s.to_string();
        if !t.contains(&st) {
            t.push_str(&format!(": {st}"));
        }
        src = s.source();
    }
    t
}

/// Map a driver error met while running `sql` to Backplane's kinds.
pub(crate) fn map_error(e: &postgres::Error, sql: &str, s: &Settings) -> Error {
    let text = error_text(e);
    let at = snippet(sql);
    let Some(code) = e.code() else {
        if is_conversion(e) {
            return Error::invalid(format!(
                "{text} (in `{at}`): fix the value or cast the placeholder"
            ));
        }
        if text.contains("timeout") || text.contains("timed out") {
            return Error::unavailable(format!(
                "the PostgreSQL server at {} did not answer in time ({text}); the call can be retried",
                s.shown
            ));
        }
        return Error::unavailable(format!(
            "lost the connection to the PostgreSQL server at {} ({text}) while running `{at}`; \
             the call can be retried (a write may or may not have been applied)",
            s.shown
        ));
    };
    let c = code.code();
    if *code == SqlState::QUERY_CANCELED {
        return Error::unavailable(format!(
            "`{at}` ran longer than `timeout` ({} ms) and was cancelled by the server ({text}): \
             raise `timeout`, or make the statement cheaper",
            s.timeout.as_millis()
        ));
    }
    if c.starts_with("08") || c.starts_with("57P") || c.starts_with("53") {
        return Error::unavailable(format!(
            "the PostgreSQL server at {} is unavailable ({text}) while running `{at}`; the call can be retried",
            s.shown
        ));
    }
    if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
        return Error::unavailable(format!(
            "the server at {} is read-only ({text}): it is a standby, likely after a failover; \
             the call can be retried (add target_session_attrs=read-write to `url` so new connections go to the primary)",
            s.shown
        ));
    }
    if *code == SqlState::LOCK_NOT_AVAILABLE {
        return Error::unavailable(format!(
            "{text} (in `{at}`): a lock is held elsewhere; retry"
        ));
    }
    if c.starts_with("23") {
        return Error::conflict(format!(
            "{text} (in `{at}`): the change breaks a constraint of the table; this statement wrote nothing"
        ));
    }
    if c.starts_with("40") {
        return Error::conflict(format!(
            "{text} (in `{at}`): a concurrent transaction got in the way; retry"
        ));
    }
    if matches!(c, "42P07" | "42710" | "42P06" | "42701" | "42723" | "42P04") {
        return Error::already_exists(format!("{text} (in `{at}`)"));
    }
    if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        return Error::config(format!(
            "{text} (in `{at}`): the user in `url` lacks a privilege; grant it, or use another user"
        ));
    }
    if *code == SqlState::SYNTAX_ERROR && text.contains("multiple commands") {
        return Error::invalid(format!(
            "`{at}` holds more than one statement: run one at a time, or use transaction() / migrate() for several"
        ));
    }
    if c.starts_with("42")
        || c.starts_with("22")
        || c.starts_with("2B")
        || c.starts_with("0A")
        || c == "3F000"
    {
        return Error::invalid(format!(
            "{text} (in `{at}`): fix the statement or its values"
        ));
    }
    if c.starts_with("25") {
        return Error::invalid(format!(
            "{text} (in `{at}`): transaction control belongs to transaction()"
        ));
    }
    Error::backend(format!("postgres: {text} (in `{at}`)"))
}
