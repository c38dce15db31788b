//! The relational store's started calls ([`AsyncRelational`]): `execute`
//! and `query` run on tokio-postgres from the plugin's own runtime, so the
//! host's async API awaits them without a thread of its own per call.
//!
//! The plugin's runtime (one worker thread, started on the first started
//! call, shared by every store) drives every call and every connection.
//! A store's started calls share a few connections of their own
//! ([`LINKS`], fewer when `pool_size` is smaller), next to the blocking
//! calls' [`crate::client::Pool`], opened on first use and kept. Calls
//! started together are pipelined on them: tokio-postgres sends each
//! call's messages as soon as it is made, without waiting for the replies
//! to the calls before it, and every statement ends with its own `Sync`,
//! so each runs in its own implicit transaction and fails alone. A call
//! goes to the connection with the fewest calls in flight. So many tasks
//! cost a few server processes and few system calls, instead of one
//! connection (and one server process) each; the price is that a long
//! statement delays the calls queued behind it on its connection.
//!
//! Statements are kept per connection by the caller's SQL text and
//! prepared with the same [`Plan`] as the blocking calls; a schema change
//! made through either pool makes both forget theirs (the shared epoch).
//! A connection-level failure drops the connection; the next call on its
//! slot connects afresh.
//!
//! Bounds: the server cancels a statement at `timeout`
//! (`statement_timeout`); a call whose connection stays silent one second
//! after that fails `Unavailable`, and a connection that answered no call
//! in that time is dropped (a frozen or unreachable server); a connection
//! attempt gives up after `connect_timeout` and a second.

use crate::client::{probe, Pool};
use crate::error::{breaks_connection, connect_error, map_error};
use crate::statement::{
    binds, check_readable, exec_result, generated_key, refs, stale_plan, write_rows, Fail, Plan,
    Prepared, Ran, GENERATED_KEY,
};
use backplane_core::{AsyncRelational, Done, Error, ExecResult, Params, Result, Rows, RowsBuilder};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Connections a store's started calls share at most.
const LINKS: usize = 2;

/// Statements kept per connection; past that the cache starts afresh.
const MAX_STATEMENTS: usize = 512;

/// How long past `timeout` a silent server is waited for.
const GRACE: Duration = Duration::from_secs(1);

/// One connection of the started calls and its statements.
struct Link {
    client: tokio_postgres::Client,
    /// Prepared statements by the caller's SQL text, and the schema epoch
    /// they were prepared in.
    stmts: Mutex<(HashMap<String, Arc<Prepared>>, u64)>,
    /// Calls in flight on it.
    in_flight: AtomicUsize,
    /// When it last answered a call, in ms since `born`.
    answered_ms: AtomicU64,
    born: Instant,
}

impl Link {
    /// Note an answer, as of now.
    fn answered(&self) {
        let ms = self.born.elapsed().as_millis() as u64;
        self.answered_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// Whether it answered any call since `since`.
    fn answered_since(&self, since: Instant) -> bool {
        let at = self.born + Duration::from_millis(self.answered_ms.load(Ordering::Relaxed));
        at >= since
    }

    /// The statement kept for `sql`, as of schema epoch `epoch`.
    fn kept(&self, sql: &str, epoch: u64) -> Option<Arc<Prepared>> {
        let mut kept = self.stmts.lock().unwrap_or_else(|p| p.into_inner());
        if kept.1 != epoch {
            kept.0.clear();
            kept.1 = epoch;
        }
        kept.0.get(sql).cloned()
    }

    /// Keep `p` for `sql` (prepared in schema epoch `epoch`).
    fn keep(&self, sql: &str, p: &Arc<Prepared>, epoch: u64) {
        let mut kept = self.stmts.lock().unwrap_or_else(|p| p.into_inner());
        if kept.1 != epoch {
            return;
        }
        if kept.0.len() >= MAX_STATEMENTS {
            kept.0.clear();
        }
        kept.0.insert(sql.to_string(), p.clone());
    }

    /// Forget the statement kept for `sql`.
    fn forget(&self, sql: &str) {
        self.stmts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .remove(sql);
    }
}

/// A call's hold on a connection: counted in flight until dropped.
struct InFlight(Arc<Link>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The connections of one store's started calls.
struct Links {
    pool: Arc<Pool>,
    /// Each slot's connection, once opened. A slot's lock is held while it
    /// connects, so calls arriving meanwhile wait for that connection
    /// instead of opening more.
    slots: Box<[tokio::sync::Mutex<Option<Arc<Link>>>]>,
}

impl Links {
    /// The connection with the fewest calls in flight (an empty slot
    /// first, opening its connection), counted in flight until dropped.
    async fn take(&self) -> Result<InFlight> {
        let mut best: Option<(usize, usize)> = None;
        for (i, slot) in self.slots.iter().enumerate() {
            let load = match slot.try_lock() {
                Ok(s) => match &*s {
                    Some(l) if !l.client.is_closed() => l.in_flight.load(Ordering::SeqCst),
                    _ => 0,
                },
                // Connecting: its callers are waiting already.
                Err(_) => usize::MAX - 1,
            };
            if best.is_none_or(|(_, b)| load < b) {
                best = Some((i, load));
            }
        }
        let (i, _) = best.expect("at least one slot");
        let mut slot = self.slots[i].lock().await;
        let link = match &*slot {
            Some(l) if !l.client.is_closed() => l.clone(),
            _ => {
                let l = Arc::new(self.connect().await?);
                *slot = Some(l.clone());
                l
            }
        };
        link.in_flight.fetch_add(1, Ordering::SeqCst);
        Ok(InFlight(link))
    }

    /// Drop `link` from its slot (the next call there connects afresh).
    async fn drop_link(&self, link: &Arc<Link>) {
        for slot in self.slots.iter() {
            let mut s = slot.lock().await;
            if s.as_ref().is_some_and(|l| Arc::ptr_eq(l, link)) {
                *s = None;
            }
        }
    }

    /// Open a connection, its driver task on the current runtime.
    async fn connect(&self) -> Result<Link> {
        let settings = self.pool.settings().clone();
        // The same check as the blocking pool's: a listener that accepts
        // and never answers fails within `connect_timeout`.
        let checked = settings.clone();
        tokio::task::spawn_blocking(move || probe(&checked))
            .await
            .map_err(|e| Error::backend(format!("postgres: the connection check failed: {e}")))??;
        let bound = settings.connect_timeout + GRACE;
        let (client, connection) =
            tokio::time::timeout(bound, settings.pg.connect(tokio_postgres::NoTls))
                .await
                .map_err(|_| {
                    Error::unavailable(format!(
                        "the PostgreSQL server at {} did not finish the login within {} ms: check the server, or raise `connect_timeout`",
                        settings.shown,
                        bound.as_millis()
                    ))
                })?
                .map_err(|e| connect_error(&e, &settings))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                log::debug!("postgres: a connection of the started calls ended: {e}");
            }
        });
        Ok(Link {
            client,
            stmts: Mutex::new((HashMap::new(), self.pool.epoch())),
            in_flight: AtomicUsize::new(0),
            answered_ms: AtomicU64::new(0),
            born: Instant::now(),
        })
    }
}

/// The statement prepared on `link` for `sql`, preparing it if needed.
async fn prepared(link: &Link, sql: &str, epoch: u64) -> Result<Arc<Prepared>, Fail> {
    if let Some(p) = link.kept(sql, epoch) {
        return Ok(p);
    }
    let plan = Plan::new(sql)?;
    let key = match plan.insert_table() {
        Some(table) => generated_key(&link.client.query(GENERATED_KEY, &[&table]).await?),
        None => None,
    };
    let stmt = link.client.prepare(&plan.text(key.as_deref())).await?;
    let p = plan.prepared(sql, stmt, key.is_some());
    link.keep(sql, &p, epoch);
    Ok(p)
}

/// What a started call gave.
enum Out {
    Exec(ExecResult),
    Rows(Rows),
}

impl Out {
    fn exec(self) -> Result<ExecResult> {
        match self {
            Out::Exec(e) => Ok(e),
            Out::Rows(_) => Err(Error::backend(
                "postgres: a started execute answered with rows",
            )),
        }
    }
    fn rows(self) -> Result<Rows> {
        match self {
            Out::Rows(r) => Ok(r),
            Out::Exec(_) => Err(Error::backend(
                "postgres: a started query answered without rows",
            )),
        }
    }
}

/// Run `sql` once on `link`: a query (rows) or an execute.
async fn run_once(
    link: &Link,
    sql: &str,
    params: &Params,
    query: bool,
    epoch: u64,
) -> Result<Out, Fail> {
    let p = prepared(link, sql, epoch).await?;
    if query {
        check_readable(&p, sql)?;
    }
    let binds = binds(&p, params.into(), sql)?;
    let refs = refs(&binds);
    if query {
        let rows = link.client.query(&p.stmt, &refs).await?;
        let mut out = RowsBuilder::new();
        write_rows(&p, &rows, sql, &mut out)?;
        return Ok(Out::Rows(out.finish()));
    }
    let ran = if p.returning_id {
        Ran::Rows(link.client.query(&p.stmt, &refs).await?)
    } else {
        Ran::Count(link.client.execute(&p.stmt, &refs).await?)
    };
    Ok(Out::Exec(exec_result(&p, ran)?))
}

/// Take a connection and run `sql` on it; a statement whose kept plan went
/// stale (the table changed under it) is prepared again and run once more.
async fn run(links: &Links, sql: &str, params: &Params, query: bool) -> Result<Out> {
    let began = Instant::now();
    let held = links.take().await?;
    let link = &held.0;
    let settings = links.pool.settings();
    let bound = settings.timeout + GRACE;
    let mut retried = false;
    let r = loop {
        let epoch = links.pool.epoch();
        let ran = tokio::time::timeout(bound, run_once(link, sql, params, query, epoch)).await;
        match ran {
            Err(_) => {
                // A connection that answered nothing meanwhile is taken
                // for dead (a frozen server); one that answered others is
                // only busy, and kept for the calls in flight on it.
                if !link.answered_since(began) {
                    links.drop_link(link).await;
                }
                return Err(Error::unavailable(format!(
                    "the PostgreSQL server at {} did not answer within {} ms (timeout, plus a second) while running `{}`; the call can be retried (a write may or may not have been applied)",
                    settings.shown,
                    bound.as_millis(),
                    backplane_core::kit::text::snippet(sql)
                )));
            }
            Ok(Err(fail)) if !retried && stale_plan(&fail) => {
                link.forget(sql);
                retried = true;
            }
            Ok(r) => break r,
        }
    };
    link.answered();
    match r {
        Ok(out) => {
            if backplane_core::kit::sql::is_ddl(sql) {
                links.pool.schema_changed();
            }
            Ok(out)
        }
        Err(Fail::Done(e)) => Err(e),
        Err(Fail::Pg(e)) => {
            let mapped = map_error(&e, sql, settings);
            if breaks_connection(&e) || link.client.is_closed() {
                links.drop_link(link).await;
            }
            Err(mapped)
        }
    }
}

/// The runtime of every store's started calls, started on first use. It
/// is the plugin's, not a store's: a host with many stores (a schema per
/// tenant) runs one more thread, not one per store; calls in flight when
/// their store closes run to their end and answer, and the store's
/// connections close after them.
fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| backplane_core::kit::runtime::runtime("postgres"))
        .as_ref()
        .map_err(Clone::clone)
}

/// The started calls of one relational store.
pub(crate) struct Started {
    links: Arc<Links>,
}

impl Started {
    /// Started calls on `pool`'s server and settings; nothing runs or
    /// connects until the first call.
    pub(crate) fn new(pool: Arc<Pool>) -> Started {
        let n = pool.settings().pool_size.min(LINKS);
        Started {
            links: Arc::new(Links {
                pool,
                slots: (0..n).map(|_| tokio::sync::Mutex::new(None)).collect(),
            }),
        }
    }

    /// Start `sql` as a query (`done` gets rows) or an execute.
    fn start<T: 'static>(
        &self,
        sql: &str,
        params: &Params,
        query: bool,
        out: fn(Out) -> Result<T>,
        done: Done<T>,
    ) {
        let rt = match runtime() {
            Ok(rt) => rt,
            Err(e) => return done(Err(e)),
        };
        let links = self.links.clone();
        let (sql, params) = (sql.to_string(), params.clone());
        rt.spawn(async move {
            done(run(&links, &sql, &params, query).await.and_then(out));
        });
    }
}

impl AsyncRelational for Started {
    fn execute(&self, sql: &str, params: &Params, done: Done<ExecResult>) {
        self.start(sql, params, false, Out::exec, done);
    }
    fn query(&self, sql: &str, params: &Params, done: Done<Rows>) {
        self.start(sql, params, true, Out::rows, done);
    }
}
