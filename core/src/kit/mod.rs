//! The plugin kit: the helpers every backend needs besides its own storage
//! logic, written once so that every plugin behaves the same way.
//!
//! A plugin author reaches for these instead of writing them again:
//!
//! - [`redact`]: [`redact_url`](redact::redact_url) masks the password of
//!   any connection string a plugin is given (URLs, multi-host URLs,
//!   query parameters, PostgreSQL `key=value` strings);
//!   [`redact_options`](redact::redact_options) does the same to a JSON
//!   options object; [`Secret`](redact::Secret) keeps a config value out of
//!   `Debug` and `Display`.
//! - [`id`]: [`new_id`](id::new_id), unique ids that sort by creation time
//!   within a process.
//! - [`time`]: [`now_ms`](time::now_ms) and [`now_us`](time::now_us), the
//!   wall clock since the Unix epoch.
//! - [`page`]: cursor pages over collections ordered by key, for
//!   `export_nodes`, `export_edges` and `scroll`.
//! - [`graph`]: the breadth-first shortest-path search of graph stores.
//! - [`fs`]: replacing a file or creating a folder atomically (a failed
//!   write never leaves half a file under the final name).
//! - [`net`]: the settings of backends on a server (address, timeouts,
//!   secrets from the environment, collection prefixes), checked alike.
//! - [`pool`]: a blocking connection pool with a size limit, a bounded
//!   wait, broken-connection handling and gauges for `health`.
//! - [`sql`]: SQL text with PostgreSQL's lexical rules (which DuckDB
//!   shares): `?` / `?N` / `:name` placeholders rewritten to `$n` outside
//!   literals and comments, a statement's first keyword, an `INSERT`'s
//!   target table, quoting.
//! - [`text`]: [`snippet`](text::snippet), a statement shortened to one
//!   line for error messages; [`panic_text`](text::panic_text), what a
//!   caught panic said.
//! - [`workers`]: worker threads fed by one queue, which take queued jobs
//!   without parking and look again for 50 µs before they park.
//! - [`served`]: [`Served`](served::Served), an embedded backend's
//!   relational store whose `execute` and `query` the host's async API can
//!   start, served from the plugin's own worker threads.
//! - `runtime` (feature `runtime`): [`runtime`](runtime::runtime), a
//!   plugin's own tokio runtime, one worker thread named after it.
//!
//! The kit adds no dependency to `backplane-core` by default: everything
//! here is built on the standard library, `serde` and `serde_json`, except
//! `runtime`, which a plugin with an async driver turns on and which adds
//! tokio.

pub mod fs;
pub mod graph;
pub mod id;
pub mod net;
pub mod page;
pub mod pool;
pub mod redact;
#[cfg(feature = "runtime")]
pub mod runtime;
pub mod served;
pub mod sql;
pub mod text;
pub mod time;
pub mod workers;
