//! The relational store's started calls ([`AsyncRelational`]): `execute`
//! and `query` run on tokio-postgres from the store's own runtime, so the
//! host's async API awaits them without a thread of its own per call.
//!
//! The plugin's runtime (one worker thread, started on the first started
//! call, shared by every store) drives every call and every connection.
//! A store's connections are a pool of
//! their own, next to the blocking calls' [`crate::client::Pool`]: up to
//! `pool_size` more, opened on demand and kept, each taken by one call at
//! a time (so a long statement holds up no other call, as with the
//! blocking pool), waiting at most `timeout` for a free one. Statements
//! are kept per connection by the caller's SQL text and prepared with the
//! same [`Plan`] as the blocking calls; a schema change made through
//! either pool makes both forget theirs (the shared epoch). A
//! connection-level failure drops the connection and every one opened
//! before it, as they are next taken.
//!
//! Bounds: the server cancels a statement at `timeout`
//! (`statement_timeout`); the plugin gives up on a server that stays
//! silent one second after that (a frozen or unreachable server), and on
//! a connection attempt after `connect_timeout`.

use crate::client::{probe, Pool};
use crate::error::{breaks_connection, connect_error, map_error};
use crate::statement::{
    binds, check_readable, exec_result, generated_key, refs, stale_plan, write_rows, Fail, Plan,
    Prepared, Ran, GENERATED_KEY,
};
use backplane_core::{AsyncRelational, Done, Error, ExecResult, Params, Result, Rows, RowsBuilder};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Statements kept per connection; past that the cache starts afresh.
const MAX_STATEMENTS: usize = 512;

/// How long past `timeout` a silent server is waited for.
const GRACE: Duration = Duration::from_secs(1);

/// One connection of the started calls and its statements.
struct Link {
    client: tokio_postgres::Client,
    stmts: HashMap<String, Arc<Prepared>>,
    /// The schema epoch its statements were prepared in.
    epoch: u64,
    /// The failure generation it was opened in.
    generation: u64,
}

/// The connections of the started calls.
struct Links {
    pool: Arc<Pool>,
    free: Semaphore,
    /// Idle connections.
    idle: Mutex<Vec<Link>>,
    /// Bumped when a connection breaks: older ones are closed when taken.
    generation: std::sync::atomic::AtomicU64,
}

/// A connection taken for one call; given back when it goes out of
/// scope, unless it broke.
struct Taken<'a> {
    links: &'a Links,
    link: Option<Link>,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Taken<'_> {
    fn link(&mut self) -> &mut Link {
        self.link
            .as_mut()
            .expect("a taken connection until dropped")
    }

    /// Map a driver error met while running `sql`, dropping the
    /// connection (and, as they are taken, every older one) when the
    /// error leaves it unusable.
    fn error(&mut self, e: &tokio_postgres::Error, sql: &str) -> Error {
        let mapped = map_error(e, sql, self.links.pool.settings());
        if breaks_connection(e) || self.link().client.is_closed() {
            self.broken();
        }
        mapped
    }

    /// Drop the connection instead of giving it back.
    fn broken(&mut self) {
        use std::sync::atomic::Ordering;
        if let Some(l) = self.link.take() {
            self.links
                .generation
                .fetch_max(l.generation + 1, Ordering::SeqCst);
        }
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if let Some(link) = self.link.take() {
            self.links
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(link);
        }
    }
}

impl Links {
    /// A connection: an idle one of this failure generation, else a new
    /// one; waiting at most `timeout` for a free slot.
    async fn take(&self) -> Result<Taken<'_>> {
        use std::sync::atomic::Ordering;
        let settings = self.pool.settings();
        let permit = match tokio::time::timeout(settings.timeout, self.free.acquire()).await {
            Ok(Ok(p)) => p,
            _ => return Err(self.pool.busy()),
        };
        let generation = self.generation.load(Ordering::SeqCst);
        let idle = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            idle.retain(|l| l.generation == generation && !l.client.is_closed());
            idle.pop()
        };
        let mut link = match idle {
            Some(l) => l,
            None => self.connect(generation).await?,
        };
        let epoch = self.pool.epoch();
        if link.epoch != epoch {
            link.stmts.clear();
            link.epoch = epoch;
        }
        Ok(Taken {
            links: self,
            link: Some(link),
            _permit: permit,
        })
    }

    /// Open a connection, its driver task on the current runtime.
    async fn connect(&self, generation: u64) -> Result<Link> {
        let settings = self.pool.settings().clone();
        // The same check as the blocking pool's: a listener that accepts
        // and never answers fails within `connect_timeout`.
        let checked = settings.clone();
        tokio::task::spawn_blocking(move || probe(&checked))
            .await
            .map_err(|e| Error::backend(format!("postgres: the connection check failed: {e}")))??;
        let bound = settings.connect_timeout + GRACE;
        let (client, connection) = tokio::time::timeout(bound, settings.pg.connect(tokio_postgres::NoTls))
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
            stmts: HashMap::new(),
            epoch: self.pool.epoch(),
            generation,
        })
    }
}

/// The statement prepared on `link` for `sql`, preparing it if needed.
async fn prepared(link: &mut Link, sql: &str) -> Result<Arc<Prepared>, Fail> {
    if let Some(p) = link.stmts.get(sql) {
        return Ok(p.clone());
    }
    let plan = Plan::new(sql)?;
    let key = match plan.insert_table() {
        Some(table) => generated_key(&link.client.query(GENERATED_KEY, &[&table]).await?),
        None => None,
    };
    let stmt = link.client.prepare(&plan.text(key.as_deref())).await?;
    let p = plan.prepared(sql, stmt, key.is_some());
    if link.stmts.len() >= MAX_STATEMENTS {
        link.stmts.clear();
    }
    link.stmts.insert(sql.to_string(), p.clone());
    Ok(p)
}

/// One started call: `execute` or `query`.
enum Call {
    Execute(Done<ExecResult>),
    Query(Done<Rows>),
}

/// Run `sql` once on `link`, as `call` asks.
async fn run_once(link: &mut Link, sql: &str, params: &Params, query: bool) -> Result<Out, Fail> {
    let p = prepared(link, sql).await?;
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
    if p.ddl {
        link.stmts.clear();
    }
    Ok(Out::Exec(exec_result(&p, ran)?))
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

/// The started calls of one relational store.
pub(crate) struct Started {
    links: Arc<Links>,
}

/// The runtime of every store's started calls, started on first use: one
/// worker thread drives every call and connection. It is the plugin's, not
/// a store's: a host with many stores (a schema per tenant) runs one more
/// thread, not one per store; calls in flight when their store closes run
/// to their end and answer, and the store's connections close after them.
fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| backplane_core::kit::runtime::runtime("postgres"))
        .as_ref()
        .map_err(Clone::clone)
}

impl Started {
    /// Started calls on `pool`'s server and settings; nothing runs or
    /// connects until the first call.
    pub(crate) fn new(pool: Arc<Pool>) -> Started {
        let size = pool.settings().pool_size;
        Started {
            links: Arc::new(Links {
                pool,
                free: Semaphore::new(size),
                idle: Mutex::new(Vec::new()),
                generation: Default::default(),
            }),
        }
    }

    /// Start `sql`; `call` says which and is answered once.
    fn start(&self, sql: &str, params: &Params, call: Call) {
        let rt = match runtime() {
            Ok(rt) => rt,
            Err(e) => return answer(call, Err(e)),
        };
        let links = self.links.clone();
        let (sql, params) = (sql.to_string(), params.clone());
        rt.spawn(async move {
            let query = matches!(call, Call::Query(_));
            let r = run(&links, &sql, &params, query).await;
            answer(call, r);
        });
    }
}

/// Answer `call` with `r`.
fn answer(call: Call, r: Result<Out>) {
    match call {
        Call::Execute(done) => done(r.and_then(Out::exec)),
        Call::Query(done) => done(r.and_then(Out::rows)),
    }
}

/// Take a connection and run `sql` on it; a statement whose kept plan went
/// stale (the table changed under it) is prepared again and run once more.
async fn run(links: &Links, sql: &str, params: &Params, query: bool) -> Result<Out> {
    let mut taken = links.take().await?;
    let settings = links.pool.settings();
    let bound = settings.timeout + GRACE;
    let mut attempt = 0;
    let r = loop {
        let ran = tokio::time::timeout(bound, run_once(taken.link(), sql, params, query)).await;
        match ran {
            Err(_) => {
                // Nobody knows where the connection's protocol stands.
                taken.broken();
                return Err(Error::unavailable(format!(
                    "the PostgreSQL server at {} did not answer within {} ms (timeout, plus a second) while running `{}`; the call can be retried (a write may or may not have been applied)",
                    settings.shown,
                    bound.as_millis(),
                    backplane_core::kit::text::snippet(sql)
                )));
            }
            Ok(Err(fail)) if attempt == 0 && stale_plan(&fail) => {
                taken.link().stmts.remove(sql);
                attempt += 1;
            }
            Ok(r) => break r,
        }
    };
    let r = r.map_err(|fail| match fail {
        Fail::Pg(e) => taken.error(&e, sql),
        Fail::Done(e) => e,
    });
    if r.is_ok() && backplane_core::kit::sql::is_ddl(sql) {
        links.pool.schema_changed();
    }
    r
}

impl AsyncRelational for Started {
    fn execute(&self, sql: &str, params: &Params, done: Done<ExecResult>) {
        self.start(sql, params, Call::Execute(done));
    }
    fn query(&self, sql: &str, params: &Params, done: Done<Rows>) {
        self.start(sql, params, Call::Query(done));
    }
}
