//! The postgres backend's store section in plugins.toml.
//!
//! ```toml
//! [relational.user_data]
//! backend = "postgres"
//! url = "postgres://app@db1:5432,db2:5432/appdb?target_session_attrs=read-write"
//! password = "${POSTGRES_PASSWORD}"
//! schema = "user_data"
//! pool_size = 8
//! connect_timeout = "5s"
//! timeout = "30s"
//! ```
//!
//! `url` is required; every other key has a default. Unknown keys are
//! configuration errors, and so are settings the plugin cannot honour
//! (`sslmode=require` and stricter: TLS is not built in yet): a setting is
//! never silently ignored.

use backplane_core::kit::redact::{redact_url, Secret};
use backplane_core::{parse_duration, Capability, Error, Result, StoreConfig};
use postgres::config::{SslMode, TargetSessionAttrs};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// Default for [`PgConfig::schema`].
const DEFAULT_SCHEMA: &str = "public";
/// Default for [`PgConfig::pool_size`].
const DEFAULT_POOL_SIZE: usize = 8;
/// Default for [`PgConfig::connect_timeout`]: 5 s.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default for [`PgConfig::timeout`]: 30 s.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default for [`PgConfig::search_cache_mb`].
const DEFAULT_SEARCH_CACHE_MB: u64 = 512;

/// Options of a `backend = "postgres"` store.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgConfig {
    /// The server, as a libpq-style URL:
    /// `postgres://[user[:password]@]host[:port][,host2[:port2]...]/dbname[?param=value&...]`,
    /// or a key/value string (`host=h1,h2 user=app dbname=appdb`).
    /// Several hosts are tried in order; with
    /// `target_session_attrs=read-write` only a primary is accepted, so after
    /// a failover new connections go to the new primary. `sslmode` may be
    /// `disable` or `prefer` (both connect without TLS); `require` and
    /// stricter are refused, TLS is not built in yet. Required.
    pub url: String,
    /// The password; when given it replaces the one in `url`. Write
    /// `password = "${POSTGRES_PASSWORD}"` to keep it out of the file.
    /// Never logged, never shown by `Debug`.
    #[serde(default)]
    pub password: Option<Secret<String>>,
    /// The schema every table of the store lives in; created if missing.
    /// Two applications (or stores) with different schemas share a
    /// database without seeing each other's tables. 1-63 of lower-case
    /// ASCII letters, digits and `_`, not starting with a digit. Default:
    /// `public`.
    #[serde(default)]
    pub schema: Option<String>,
    /// The most connections the store keeps open. Default: 8.
    #[serde(default)]
    pub pool_size: Option<usize>,
    /// How long to wait for a server to accept a connection (per host), as
    /// a duration (`"5s"`, `"500ms"`). Default: `"5s"`.
    #[serde(default)]
    pub connect_timeout: Option<String>,
    /// The longest a statement may run on the server (`statement_timeout`),
    /// and the longest a call waits for a free connection. Default: `"30s"`.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Vector stores only: `"auto"` (default) uses the pgvector extension
    /// when the server has it and exact search otherwise; `"off"` always
    /// searches exactly; `"require"` fails at open without pgvector.
    #[serde(default)]
    pub pgvector: Option<String>,
    /// Vector stores only (exact search): memory, in MiB, for the in-memory
    /// copy of each searched collection's vectors. A collection larger than
    /// this is streamed from the server on every search. `0` turns the copy
    /// off. Default: 512.
    #[serde(default)]
    pub search_cache_mb: Option<u64>,
}

/// How the vector capability searches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PgvectorMode {
    /// pgvector when available, exact otherwise.
    Auto,
    /// Always exact.
    Off,
    /// pgvector or an error at open.
    Require,
}

/// Shows every setting, with passwords (the key's and the URL's) replaced
/// by `***`.
impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("url", &redact_url(&self.url))
            .field("password", &self.password)
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("pgvector", &self.pgvector)
            .field("search_cache_mb", &self.search_cache_mb)
            .finish()
    }
}

/// The checked settings a store runs with.
#[derive(Clone)]
pub(crate) struct Settings {
    /// The driver's connection settings (password, timeouts, schema and
    /// statement timeout applied), in tokio-postgres's form: the blocking
    /// pool's `postgres::Config` is made from it, and the started calls
    /// connect with it directly.
    pub(crate) pg: tokio_postgres::Config,
    /// The hosts, for messages (`127.0.0.1:5432/test`): never the password.
    pub(crate) shown: String,
    /// The schema.
    pub(crate) schema: String,
    /// Connections kept at most.
    pub(crate) pool_size: usize,
    /// Connect timeout.
    pub(crate) connect_timeout: Duration,
    /// Statement timeout and connection wait.
    pub(crate) timeout: Duration,
    /// Vector search mode.
    pub(crate) pgvector: PgvectorMode,
    /// Bytes the exact search's in-memory copies may take.
    pub(crate) search_cache_bytes: u64,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("server", &self.shown)
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .field("pgvector", &self.pgvector)
            .finish_non_exhaustive()
    }
}

impl PgConfig {
    /// Parse and check a store section; the result is ready to connect.
    pub(crate) fn settings(store: &StoreConfig) -> Result<Settings> {
        let cfg: PgConfig = store.parse()?;
        cfg.check(store)
    }

    fn check(&self, store: &StoreConfig) -> Result<Settings> {
        let url = self.url.trim();
        if url.is_empty() {
            return Err(store.error(
                "`url` is empty: give the server, e.g. url = \"postgres://app@127.0.0.1:5432/appdb\"",
            ));
        }
        let shown_url = redact_url(url);
        // sslmode values the driver does not parse get a clear message here.
        if let Some(mode) = url_param(url, "sslmode") {
            match mode.as_str() {
                "disable" | "prefer" | "allow" => {}
                "require" | "verify-ca" | "verify-full" => {
                    return Err(store.error(format!(
                        "`url` asks for sslmode={mode}, but the postgres backend has no TLS support yet: \
                         use sslmode=disable (or prefer, which connects without TLS), or reach the server \
                         through a TLS tunnel such as stunnel or a sidecar proxy"
                    )))
                }
                other => {
                    return Err(store.error(format!(
                        "`url` has sslmode={other}, which is not a PostgreSQL sslmode: use disable or prefer"
                    )))
                }
            }
        }
        // A password holding `@` is cut at its first `@` by the driver's
        // parser (which then shows the rest as a host name): encoded, it
        // is read whole.
        let url = &*backplane_core::kit::redact::encode_userinfo(url);
        let cleaned = strip_url_param(url, "sslmode", "allow", "prefer");
        let mut pg: tokio_postgres::Config = cleaned.parse().map_err(|e| {
            store.error(format!(
                "`url` '{shown_url}' is not a usable PostgreSQL connection string ({e}): write \
                 postgres://user@host:5432/dbname, with more hosts as host1:5432,host2:5432"
            ))
        })?;
        if matches!(pg.get_ssl_mode(), SslMode::Require) {
            return Err(store.error(
                "`url` asks for sslmode=require, but the postgres backend has no TLS support yet: use sslmode=disable or prefer",
            ));
        }
        if pg.get_hosts().is_empty() {
            return Err(store.error(format!(
                "`url` '{shown_url}' names no host: write postgres://user@host:5432/dbname"
            )));
        }
        if pg.get_user().is_none() {
            return Err(store.error(format!(
                "`url` '{shown_url}' names no user: write postgres://user@host:5432/dbname"
            )));
        }
        if let Some(pw) = &self.password {
            pg.password(pw.expose().as_bytes());
        }
        let schema = self
            .schema
            .clone()
            .unwrap_or_else(|| DEFAULT_SCHEMA.to_string());
        check_schema(&schema).map_err(|e| store.error(e.message()))?;
        let pool_size = self.pool_size.unwrap_or(DEFAULT_POOL_SIZE);
        if pool_size == 0 || pool_size > 1000 {
            return Err(store.error(format!(
                "`pool_size` is {pool_size}: give 1 to 1000 (the server's max_connections bounds it too)"
            )));
        }
        let duration = |key: &str, v: &Option<String>, default: Duration| -> Result<Duration> {
            match v {
                None => Ok(default),
                Some(s) => {
                    parse_duration(s).map_err(|e| store.error(format!("`{key}`: {}", e.message())))
                }
            }
        };
        let connect_timeout = duration(
            "connect_timeout",
            &self.connect_timeout,
            DEFAULT_CONNECT_TIMEOUT,
        )?;
        let timeout = duration("timeout", &self.timeout, DEFAULT_TIMEOUT)?;
        let vector_only = |key: &str| {
            store.error(format!(
                "`{key}` applies only to vector stores with backend \"postgres\": remove it from this section"
            ))
        };
        if store.capability != Capability::Vector {
            if self.pgvector.is_some() {
                return Err(vector_only("pgvector"));
            }
            if self.search_cache_mb.is_some() {
                return Err(vector_only("search_cache_mb"));
            }
        }
        let pgvector = match self.pgvector.as_deref() {
            None | Some("auto") => PgvectorMode::Auto,
            Some("off") => PgvectorMode::Off,
            Some("require") => PgvectorMode::Require,
            Some(other) => {
                return Err(store.error(format!(
                    "`pgvector` is \"{other}\": use \"auto\", \"off\" or \"require\""
                )))
            }
        };
        pg.connect_timeout(connect_timeout);
        // Dead hosts are noticed when sent data stays unacknowledged.
        pg.tcp_user_timeout(timeout.max(Duration::from_secs(10)));
        pg.keepalives(true);
        pg.keepalives_idle(Duration::from_secs(30));
        if pg.get_application_name().is_none() {
            pg.application_name("backplane");
        }
        // Every connection starts with the schema first on its search path
        // and the statement timeout set: no round trip after connecting.
        let path = if schema == "public" {
            "public".to_string()
        } else {
            format!("{schema},public")
        };
        let mut options = pg.get_options().unwrap_or_default().to_string();
        if !options.is_empty() {
            options.push(' ');
        }
        options.push_str(&format!(
            "-c search_path={path} -c statement_timeout={}",
            timeout.as_millis()
        ));
        pg.options(&options);
        let shown = shown_hosts(&pg);
        Ok(Settings {
            pg,
            shown,
            schema,
            pool_size,
            connect_timeout,
            timeout,
            pgvector,
            search_cache_bytes: self
                .search_cache_mb
                .unwrap_or(DEFAULT_SEARCH_CACHE_MB)
                .saturating_mul(1 << 20),
        })
    }
}

/// Check a schema name: 1-63 of `[a-z0-9_]`, not starting with a digit.
fn check_schema(schema: &str) -> Result<()> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !schema.as_bytes()[0].is_ascii_digit()
        && !schema.starts_with("pg_");
    if ok {
        Ok(())
    } else {
        Err(Error::config(format!(
            "`schema` '{schema}' is not allowed: use 1-63 lower-case ASCII letters, digits and '_', \
             not starting with a digit or 'pg_'"
        )))
    }
}

/// `host:port[,host:port]/dbname`, for messages and health.
fn shown_hosts(pg: &tokio_postgres::Config) -> String {
    use postgres::config::Host;
    let ports = pg.get_ports();
    let hosts: Vec<String> = pg
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = ports
                .get(i)
                .or_else(|| ports.first())
                .copied()
                .unwrap_or(5432);
            match h {
                Host::Tcp(name) => format!("{name}:{port}"),
                #[cfg(unix)]
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    let mut s = hosts.join(",");
    if let Some(db) = pg.get_dbname() {
        s.push('/');
        s.push_str(db);
    }
    if matches!(pg.get_target_session_attrs(), TargetSessionAttrs::ReadWrite) {
        s.push_str(" (read-write)");
    }
    s
}

/// The value of query parameter `key` in a URL (or key/value string).
fn url_param(url: &str, key: &str) -> Option<String> {
    if url.contains("://") {
        let query = url.split_once('?')?.1;
        query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == key).then(|| v.to_ascii_lowercase())
        })
    } else {
        url.split_whitespace().find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('\'').to_ascii_lowercase())
        })
    }
}

/// `url` with `key=from` replaced by `key=to` (libpq's `allow` is what the
/// driver calls `prefer` when no TLS connector is present).
fn strip_url_param(url: &str, key: &str, from: &str, to: &str) -> String {
    let needle = format!("{key}={from}");
    if url.contains(&needle) {
        url.replace(&needle, &format!("{key}={to}"))
    } else {
        url.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use backplane_core::ErrorKind;
    use serde_json::json;

    fn cfg(cap: Capability, options: serde_json::Value) -> Result<Settings> {
        PgConfig::settings(&StoreConfig::new("s", "postgres", cap, options))
    }

    #[test]
    fn defaults_and_options() {
        let s = cfg(
            Capability::Relational,
            json!({"url": "postgres://app@h1:5433/db"}),
        )
        .unwrap();
        assert_eq!(s.schema, "public");
        assert_eq!(s.pool_size, DEFAULT_POOL_SIZE);
        assert_eq!(s.timeout, DEFAULT_TIMEOUT);
        assert_eq!(s.shown, "h1:5433/db");
        assert!(s
            .pg
            .get_options()
            .unwrap()
            .contains("statement_timeout=30000"));
        let s = cfg(
            Capability::Vector,
            json!({"url": "postgres://app@a:1,b:2/db?target_session_attrs=read-write",
                   "schema": "app_1", "pool_size": 3, "timeout": "2s", "connect_timeout": "250ms",
                   "pgvector": "off", "password": "pw"}),
        )
        .unwrap();
        assert_eq!(s.shown, "a:1,b:2/db (read-write)");
        assert_eq!(s.pgvector, PgvectorMode::Off);
        assert_eq!(s.connect_timeout, Duration::from_millis(250));
        assert!(s
            .pg
            .get_options()
            .unwrap()
            .contains("search_path=app_1,public"));
        assert_eq!(s.pg.get_password(), Some(&b"pw"[..]));
    }

    #[test]
    fn rejects_bad_config() {
        for (cap, opts, needle) in [
            (Capability::Relational, json!({}), "url"),
            (Capability::Relational, json!({"url": ""}), "url"),
            (
                Capability::Relational,
                json!({"url": "postgres://u@h/db", "urll": 1}),
                "urll",
            ),
            (
                Capability::Relational,
                json!({"url": "postgres://u@h/db?sslmode=require"}),
                "TLS",
            ),
            (
                Capability::Relational,
                json!({"url": "postgres://u@h/db?sslmode=verify-full"}),
                "TLS",
            ),
            (
                Capability::Relational,
                json!({"url": "postgres://u@h/db", "schema": "Bad-Name"}),
                "schema",
            ),
            (
                Capability::Relational,
                json!({"url": "postgres://u@h/db", "pool_size": 0}),
                "pool_size",
            ),
            (
                Capability::Relational,
                json!({"url": "postgres://u@h/db", "timeout": "5 parsecs"}),
                "timeout",
            ),
            (
                Capability::Relational,
                json!({"url": "postgres://u@h/db", "pgvector": "auto"}),
                "vector stores",
            ),
            (
                Capability::Vector,
                json!({"url": "postgres://u@h/db", "pgvector": "maybe"}),
                "pgvector",
            ),
            (
                Capability::Relational,
                json!({"url": "postgres://u@h:notaport/db"}),
                "url",
            ),
        ] {
            let e = match cfg(cap, opts.clone()) {
                Ok(_) => panic!("{opts} was accepted"),
                Err(e) => e,
            };
            assert_eq!(e.kind(), ErrorKind::Config, "{opts}: {e}");
            assert!(e.message().contains(needle), "{opts}: {e}");
        }
    }

    #[test]
    fn secrets_stay_hidden() {
        assert_eq!(
            redact_url("postgres://app:hunter2@h:5432/db?password=x&a=b"),
            "postgres://app:***@h:5432/db?password=***&a=b"
        );
        assert_eq!(
            redact_url("host=h password=hunter2 user=u"),
            "host=h password=*** user=u"
        );
        let c: PgConfig = serde_json::from_value(
            json!({"url": "postgres://app:hunter2@h/db", "password": "swordfish"}),
        )
        .unwrap();
        let d = format!("{c:?}");
        assert!(!d.contains("hunter2") && !d.contains("swordfish"), "{d}");
        let e = cfg(
            Capability::Relational,
            json!({"url": "postgres://app:hunter2@h:bad/db"}),
        )
        .err()
        .unwrap();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
