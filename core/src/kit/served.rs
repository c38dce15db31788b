//! An embedded backend's store served from threads the plugin owns:
//! [`Served`] wraps any [`Relational`], [`Vector`](crate::Vector),
//! [`Cache`](crate::Cache) or [`Graph`](crate::Graph) store and starts its
//! hot calls (a relational store's `execute` and `query`, a vector store's
//! `upsert` and `search`, a cache's `get` and `set`, a graph store's
//! `get_node` and `neighbors`: the list lines marked `start` or
//! `fast_start`) on its own worker threads, so the host's async
//! API awaits them without a thread of tokio's blocking pool, and answers
//! through the started call's callback.
//!
//! Every other call, and every blocking call, goes straight to the wrapped
//! store on the caller's thread, as without the wrapper. For vector, cache
//! and graph stores the passing-on is generated from the capability's method
//! list, so it covers every method; the relational trait has methods
//! beyond its list (the hot path's borrowed forms), written out below and
//! checked by a test. The worker
//! ([`crate::kit::workers`]) takes queued calls one after another without
//! parking and looks again for 50 µs before it parks. One thread suits a
//! store that serialises its calls on one connection (SQLite's); `n`
//! threads serve `n` calls at once. The threads hold the store: it closes
//! when the wrapper is dropped and the calls already queued have run. A
//! call that panics is that call's `Panicked` error.

use crate::kit::workers::Workers;
use crate::rows::{ParamsRef, RowSink};
use crate::{
    AsyncRelational, Done, Error, ErrorKind, ExecResult, Health, Migration, MigrationReport, Page,
    Params, Relational, Result, Rows, Statement, TableSchema, Value,
};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

/// Worker threads for a store that serves calls in parallel: one per core
/// the process may use, at most four.
pub fn parallel_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(4)
}

/// A store whose hot calls can be started.
pub struct Served<R> {
    store: Arc<R>,
    workers: Workers,
}

impl<R: Send + Sync + 'static> Served<R> {
    /// Serve `store` from `n` threads named `name` (at least one).
    pub fn new(store: R, name: &str, n: usize) -> Result<Served<R>> {
        Ok(Served {
            store: Arc::new(store),
            workers: Workers::start(
                name,
                n,
                "the store's started calls",
                "raise the process's thread limit",
            )?,
        })
    }

    /// Run `call` on a worker and answer `done` with its result.
    fn start<T: 'static>(
        &self,
        call: impl FnOnce(&R) -> Result<T> + Send + 'static,
        done: Done<T>,
    ) {
        let store = self.store.clone();
        let job = Box::new(move || {
            let r = catch_unwind(AssertUnwindSafe(|| call(&store))).unwrap_or_else(|p| {
                Err(Error::new(
                    ErrorKind::Panicked,
                    format!(
                        "a started call panicked in the plugin: {}",
                        crate::kit::text::panic_text(&*p)
                    ),
                ))
            });
            done(r);
        });
        if self.workers.send(job).is_err() {
            // Unreachable while `self` lives: its threads end only when
            // `workers` is dropped. The callback is dropped with the job,
            // which the host reports as a call that ended unanswered.
            log::error!("a started call found the store's worker threads stopped");
        }
    }
}

impl<R: Relational + 'static> AsyncRelational for Served<R> {
    fn execute(&self, sql: &str, params: &Params, done: Done<ExecResult>) {
        let (sql, params) = (sql.to_string(), params.clone());
        self.start(move |s| s.execute(&sql, &params), done)
    }

    fn query(&self, sql: &str, params: &Params, done: Done<Rows>) {
        let (sql, params) = (sql.to_string(), params.clone());
        self.start(move |s| s.query(&sql, &params), done)
    }

    /// The arguments move to the worker; the call takes the store's fast
    /// path (borrowed parameters).
    fn execute_wire(&self, sql: String, params: Params, done: crate::boundary::Answer) {
        self.start(
            move |s| {
                s.execute_ref(&sql, (&params).into())
                    .map(|r| crate::boundary::encode(&r))
            },
            done,
        )
    }

    /// As `execute_wire`, and the rows are written straight into the
    /// reply's wire form ([`RowsWriter`](crate::rows::RowsWriter)), never
    /// built as [`Rows`].
    fn query_wire(&self, sql: String, params: Params, done: crate::boundary::Answer) {
        self.start(
            move |s| {
                let mut w = crate::rows::RowsWriter::new();
                s.query_into(&sql, (&params).into(), &mut w)?;
                Ok(w.finish())
            },
            done,
        )
    }
}

/// A vector, cache or graph store's trait on [`Served`], from the capability's
/// method list: every method passes to the wrapped store, and the `start`
/// lines also run on the workers.
macro_rules! serve {
    (
        ()
        trait $Trait:ident;
        async $Async:ident . $as_async:ident;
        $($tag:literal $mode:ident fn $m:ident($($a:ident: $t:ty $(=> $into:ty)? $(as $owned:ty)?),*) -> $r:ty;)*
    ) => {
        impl<S: crate::$Trait + 'static> crate::$Trait for Served<S> {
            fn $as_async(&self) -> Option<&dyn crate::$Async> {
                Some(self)
            }
            $(
                fn $m(&self, $($a: $t),*) -> Result<$r> {
                    self.store.$m($($a),*)
                }
            )*
            fn health(&self) -> Result<Health> {
                self.store.health()
            }
        }

        impl<S: crate::$Trait + 'static> crate::$Async for Served<S> {
            $(serve!(@start $mode fn $m($($a: $t),*) -> $r);)*
        }
    };
    (@start start fn $m:ident($($a:ident: $t:ty),*) -> $r:ty) => {
        fn $m(&self, $($a: $t,)* done: Done<$r>) {
            $(let $a = <$t as crate::boundary::Arg<'_>>::owned($a);)*
            self.start(
                move |s: &S| s.$m($(<$t as crate::boundary::Arg<'_>>::lend(&$a)),*),
                done,
            )
        }
    };
    (@start $mode:ident $($rest:tt)*) => {};
}

crate::vector_methods!(serve!());
crate::cache_methods!(serve!());
crate::graph_methods!(serve!());

/// Every other method: the wrapped store's, on the caller's thread.
impl<R: Relational + 'static> Relational for Served<R> {
    fn as_async(&self) -> Option<&dyn AsyncRelational> {
        Some(self)
    }
    fn execute(&self, sql: &str, params: &Params) -> Result<ExecResult> {
        self.store.execute(sql, params)
    }
    fn execute_many(&self, sql: &str, params: &[Params]) -> Result<ExecResult> {
        self.store.execute_many(sql, params)
    }
    fn query(&self, sql: &str, params: &Params) -> Result<Rows> {
        self.store.query(sql, params)
    }
    fn transaction(&self, statements: &[Statement]) -> Result<Vec<ExecResult>> {
        self.store.transaction(statements)
    }
    fn migrate(&self, migrations: &[Migration]) -> Result<MigrationReport> {
        self.store.migrate(migrations)
    }
    fn tables(&self) -> Result<Vec<String>> {
        self.store.tables()
    }
    fn describe(&self, table: &str) -> Result<TableSchema> {
        self.store.describe(table)
    }
    fn backup(&self, path: &str) -> Result<()> {
        self.store.backup(path)
    }
    fn restore(&self, path: &str) -> Result<()> {
        self.store.restore(path)
    }
    fn health(&self) -> Result<Health> {
        self.store.health()
    }
    fn export_snapshot(&self) -> Result<Option<String>> {
        self.store.export_snapshot()
    }
    fn release_snapshot(&self, snapshot: &str) -> Result<()> {
        self.store.release_snapshot(snapshot)
    }
    fn export_rows(
        &self,
        snapshot: Option<&str>,
        table: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Vec<Value>>> {
        self.store.export_rows(snapshot, table, cursor, limit)
    }
    fn import_begin(&self, tables: &[TableSchema]) -> Result<()> {
        self.store.import_begin(tables)
    }
    fn import_rows(
        &self,
        table: &str,
        columns: &[String],
        rows: &[Vec<Value>],
        overwrite: bool,
    ) -> Result<u64> {
        self.store.import_rows(table, columns, rows, overwrite)
    }
    fn import_end(&self, tables: &[TableSchema]) -> Result<()> {
        self.store.import_end(tables)
    }
    fn export_rows_into(
        &self,
        snapshot: Option<&str>,
        table: &str,
        cursor: Option<&str>,
        limit: usize,
        sink: &mut dyn RowSink,
    ) -> Result<Option<String>> {
        self.store
            .export_rows_into(snapshot, table, cursor, limit, sink)
    }
    fn import_rows_ref(
        &self,
        table: &str,
        columns: &[String],
        rows: &[ParamsRef<'_>],
        overwrite: bool,
    ) -> Result<u64> {
        self.store.import_rows_ref(table, columns, rows, overwrite)
    }
    fn execute_ref(&self, sql: &str, params: ParamsRef<'_>) -> Result<ExecResult> {
        self.store.execute_ref(sql, params)
    }
    fn execute_many_ref(&self, sql: &str, sets: &[ParamsRef<'_>]) -> Result<ExecResult> {
        self.store.execute_many_ref(sql, sets)
    }
    fn query_into(&self, sql: &str, params: ParamsRef<'_>, sink: &mut dyn RowSink) -> Result<()> {
        self.store.query_into(sql, params, sink)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// A store whose `query` panics and whose `execute` answers; it says
    /// when it is dropped.
    struct Panics(mpsc::Sender<&'static str>);

    impl Drop for Panics {
        fn drop(&mut self) {
            let _ = self.0.send("dropped");
        }
    }

    impl Relational for Panics {
        fn execute(&self, sql: &str, _: &Params) -> Result<ExecResult> {
            Ok(ExecResult {
                rows_affected: sql.len() as u64,
                last_insert_id: None,
            })
        }
        fn execute_many(&self, _: &str, _: &[Params]) -> Result<ExecResult> {
            unreachable!()
        }
        fn query(&self, sql: &str, _: &Params) -> Result<Rows> {
            panic!("boom in {sql}")
        }
        fn transaction(&self, _: &[Statement]) -> Result<Vec<ExecResult>> {
            unreachable!()
        }
        fn migrate(&self, _: &[Migration]) -> Result<MigrationReport> {
            unreachable!()
        }
        fn tables(&self) -> Result<Vec<String>> {
            unreachable!()
        }
        fn describe(&self, _: &str) -> Result<TableSchema> {
            unreachable!()
        }
        fn backup(&self, _: &str) -> Result<()> {
            unreachable!()
        }
        fn restore(&self, _: &str) -> Result<()> {
            unreachable!()
        }
        fn health(&self) -> Result<Health> {
            Ok(Health::ok("panics"))
        }
    }

    /// A started call that panics is that call's `Panicked` error, the
    /// worker goes on with the next, and the store closes with the
    /// wrapper.
    #[test]
    fn a_panic_is_the_calls_error_and_the_store_closes_with_the_wrapper() {
        let (closed, closing) = mpsc::channel();
        let served = Served::new(Panics(closed), "served-panics", 1).unwrap();
        let a = served.as_async().expect("started calls");
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        a.query(
            "SELECT 1",
            &Params::None,
            Box::new(move |r| tx.send(r.map(|_| 0)).unwrap()),
        );
        a.execute(
            "four",
            &Params::None,
            Box::new(move |r| tx2.send(r.map(|e| e.rows_affected)).unwrap()),
        );
        let e = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Panicked, "{e}");
        assert!(e.message().contains("boom in SELECT 1"), "{e}");
        let n = rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
        assert_eq!(n, 4, "the worker answered the next call");
        drop(served);
        assert_eq!(
            closing.recv_timeout(Duration::from_secs(10)),
            Ok("dropped"),
            "the store closed with its wrapper"
        );
    }

    /// Every method of the trait, defaulted ones included, passes to the
    /// wrapped store: a method added to `Relational` and not here would
    /// silently take the default instead of the store's own.
    #[test]
    fn every_relational_method_is_passed_on() {
        let trait_text = include_str!("../relational.rs");
        let start = trait_text.find("pub trait Relational").expect("the trait");
        let body = &trait_text[start..];
        let body = &body[..body.find("\n}\n").expect("the trait's end")];
        let here = include_str!("served.rs");
        let mut checked = 0;
        for line in body.lines() {
            let Some(rest) = line.trim().strip_prefix("fn ") else {
                continue;
            };
            let name = &rest[..rest.find(['(', '<']).expect("a method")];
            assert!(
                here.contains(&format!("fn {name}(")),
                "Served does not pass `{name}` on: add it to core/src/kit/served.rs"
            );
            checked += 1;
        }
        assert!(checked >= 20, "read {checked} methods of the trait");
    }
}
