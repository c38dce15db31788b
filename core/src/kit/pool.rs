//! A blocking connection pool for plugins whose driver gives one
//! connection per socket (redis, postgres).
//!
//! - Connections are opened on demand, up to [`PoolOptions::max_size`],
//!   by the pool's [`Connect`] implementation, and kept when given back.
//! - [`Pool::get`] hands out an idle connection, opens a new one while
//!   fewer than the maximum are open, or waits for one to be given back,
//!   at most [`PoolOptions::timeout`]; then it fails with `Unavailable`,
//!   saying how many connections to which server stayed busy for how long.
//! - A [`Pooled`] guard gives its connection back when dropped. A call
//!   that finds the connection broken says so with
//!   [`Pooled::mark_broken`]: the connection is closed instead of kept, and
//!   so is every connection opened before it (they reach the same server,
//!   which went away or changed role), at once or when next taken
//!   ([`OnBreak`]). Connections that [`Connect::is_usable`] rejects are
//!   closed too.
//! - [`Pool::usage`]: open and idle connections, for `health` lines.
//!
//! Connections are closed outside the pool's lock, so closing one that
//! talks to a dead server never holds up other calls.

use crate::error::{Error, Result};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How a pool opens and checks its connections.
pub trait Connect: Send + Sync {
    /// A connection.
    type Conn: Send;

    /// Open a connection. Its error is what the caller of [`Pool::get`]
    /// sees.
    fn connect(&self) -> Result<Self::Conn>;

    /// Whether `conn` may be handed out or kept idle; checked when a
    /// connection is given back and when an idle one is taken. Default:
    /// always.
    fn is_usable(&self, conn: &Self::Conn) -> bool {
        let _ = conn;
        true
    }
}

/// What happens to idle connections when one breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnBreak {
    /// Close them at once.
    CloseIdle,
    /// Close each when it is next taken (the gauges count them until then).
    CloseIdleWhenTaken,
}

/// A pool's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolOptions {
    /// The most connections open at once (at least 1).
    pub max_size: usize,
    /// The longest [`Pool::get`] waits for a connection to be given back.
    pub timeout: Duration,
    /// The server, as messages name it after "connections to"
    /// (`the redis server at 127.0.0.1:6379`, `db1:5432/app`). Never a URL
    /// with a password.
    pub server: String,
    /// What the user can do when every connection stayed busy, ending the
    /// `Unavailable` message (`raise pool_size or timeout_ms; the call can
    /// be retried`).
    pub busy_hint: String,
    /// What happens to idle connections when one breaks.
    pub on_break: OnBreak,
}

impl PoolOptions {
    /// Options with a generic hint, closing idle connections at once when
    /// one breaks.
    pub fn new(max_size: usize, timeout: Duration, server: impl Into<String>) -> PoolOptions {
        PoolOptions {
            max_size: max_size.max(1),
            timeout,
            server: server.into(),
            busy_hint: "raise the pool size or the timeout; the call can be retried".into(),
            on_break: OnBreak::CloseIdle,
        }
    }

    /// The error of a call that found every connection busy for
    /// `timeout`: how many, to which server, for how long, and the hint.
    pub fn busy(&self) -> Error {
        Error::unavailable(format!(
            "all {} connections to {} stayed busy for {} ms: {}",
            self.max_size,
            self.server,
            self.timeout.as_millis(),
            self.busy_hint
        ))
    }

    /// Replace [`busy_hint`](Self::busy_hint).
    pub fn busy_hint(mut self, hint: impl Into<String>) -> PoolOptions {
        self.busy_hint = hint.into();
        self
    }

    /// Replace [`on_break`](Self::on_break).
    pub fn on_break(mut self, on_break: OnBreak) -> PoolOptions {
        self.on_break = on_break;
        self
    }
}

/// Connections open and idle, for `health` lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Open: idle plus in use.
    pub open: usize,
    /// Open and not in use.
    pub idle: usize,
    /// The most that may be open.
    pub max: usize,
}

struct State<C> {
    /// Idle connections, each with the generation it was opened in.
    idle: Vec<(u64, C)>,
    /// Connections open: idle, in use, and being opened.
    open: usize,
    /// Bumped when a connection breaks: connections of older generations
    /// are closed instead of reused.
    generation: u64,
}

/// A blocking connection pool; see the [module](self).
pub struct Pool<M: Connect> {
    connector: M,
    options: PoolOptions,
    state: Mutex<State<M::Conn>>,
    freed: Condvar,
}

impl<M: Connect> Pool<M> {
    /// A pool that opens connections with `connector`; connects nothing yet.
    pub fn new(connector: M, options: PoolOptions) -> Pool<M> {
        Pool {
            connector,
            options: PoolOptions {
                max_size: options.max_size.max(1),
                ..options
            },
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
                generation: 0,
            }),
            freed: Condvar::new(),
        }
    }

    /// The connector.
    pub fn connector(&self) -> &M {
        &self.connector
    }

    /// The settings.
    pub fn options(&self) -> &PoolOptions {
        &self.options
    }

    /// Connections open and idle.
    pub fn usage(&self) -> Usage {
        let st = self.lock();
        Usage {
            open: st.open,
            idle: st.idle.len(),
            max: self.options.max_size,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<M::Conn>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection: an idle one, a new one while fewer than `max_size`
    /// are open, or the first one given back within `timeout`. A failed
    /// connect returns the connector's error and frees its slot.
    pub fn get(&self) -> Result<Pooled<'_, M>> {
        let deadline = Instant::now() + self.options.timeout;
        let mut stale: Vec<M::Conn> = Vec::new();
        let mut st = self.lock();
        loop {
            while let Some((generation, conn)) = st.idle.pop() {
                if generation != st.generation || !self.connector.is_usable(&conn) {
                    st.open -= 1;
                    stale.push(conn);
                    continue;
                }
                drop(st);
                self.close(stale);
                return Ok(Pooled::new(self, conn, generation));
            }
            if st.open < self.options.max_size {
                st.open += 1;
                let generation = st.generation;
                drop(st);
                self.close(stale);
                return match self.connector.connect() {
                    Ok(conn) => Ok(Pooled::new(self, conn, generation)),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            if !stale.is_empty() {
                drop(st);
                self.close(std::mem::take(&mut stale));
                st = self.lock();
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.options.busy());
            }
            st = self
                .freed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Close every idle connection (a plugin shutting down, a server known
    /// to have gone).
    pub fn close_idle(&self) {
        let mut st = self.lock();
        let idle = std::mem::take(&mut st.idle);
        st.open -= idle.len();
        drop(st);
        self.close(idle.into_iter().map(|(_, c)| c).collect());
    }

    /// Drop connections taken out of the state (outside its lock), and
    /// wake the calls waiting for the slots they held.
    fn close(&self, conns: Vec<M::Conn>) {
        if !conns.is_empty() {
            drop(conns);
            self.freed.notify_all();
        }
    }
}

/// A connection taken from a [`Pool`]; given back when dropped, or closed
/// when broken or no longer usable.
pub struct Pooled<'a, M: Connect> {
    pool: &'a Pool<M>,
    conn: Option<M::Conn>,
    generation: u64,
    broken: bool,
}

impl<'a, M: Connect> Pooled<'a, M> {
    fn new(pool: &'a Pool<M>, conn: M::Conn, generation: u64) -> Self {
        Pooled {
            pool,
            conn: Some(conn),
            generation,
            broken: false,
        }
    }

    /// The pool the connection belongs to.
    pub fn pool(&self) -> &'a Pool<M> {
        self.pool
    }

    /// The connection is unusable (I/O error, timeout, a server that
    /// changed role): it is closed when the guard drops, and so is every
    /// connection opened before it ([`OnBreak`] says when idle ones are).
    pub fn mark_broken(&mut self) {
        if self.broken {
            return;
        }
        self.broken = true;
        let mut st = self.pool.lock();
        st.generation = st.generation.wrapping_add(1);
        match self.pool.options.on_break {
            OnBreak::CloseIdle => {
                let idle = std::mem::take(&mut st.idle);
                st.open -= idle.len();
                drop(st);
                self.pool.close(idle.into_iter().map(|(_, c)| c).collect());
            }
            OnBreak::CloseIdleWhenTaken => {}
        }
    }

    /// Whether [`mark_broken`](Self::mark_broken) was called.
    pub fn is_broken(&self) -> bool {
        self.broken
    }
}

impl<M: Connect> std::ops::Deref for Pooled<'_, M> {
    type Target = M::Conn;
    fn deref(&self) -> &M::Conn {
        self.conn.as_ref().expect("present until dropped")
    }
}

impl<M: Connect> std::ops::DerefMut for Pooled<'_, M> {
    fn deref_mut(&mut self) -> &mut M::Conn {
        self.conn.as_mut().expect("present until dropped")
    }
}

impl<M: Connect> Drop for Pooled<'_, M> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let pool = self.pool;
        let mut st = pool.lock();
        let keep =
            !self.broken && self.generation == st.generation && pool.connector.is_usable(&conn);
        if keep {
            st.idle.push((self.generation, conn));
            drop(st);
        } else {
            st.open -= 1;
            drop(st);
            drop(conn);
        }
        pool.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Connections are TCP sockets to a listener of the test's own.
    struct Tcp {
        addr: SocketAddr,
        connects: AtomicUsize,
        usable: AtomicBool,
    }

    struct Conn {
        number: usize,
        _socket: TcpStream,
    }

    impl Connect for Tcp {
        type Conn = Conn;
        fn connect(&self) -> Result<Conn> {
            let socket = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
                .map_err(|e| Error::unavailable(format!("cannot reach {}: {e}", self.addr)))?;
            Ok(Conn {
                number: self.connects.fetch_add(1, Ordering::SeqCst),
                _socket: socket,
            })
        }
        fn is_usable(&self, _: &Conn) -> bool {
            self.usable.load(Ordering::SeqCst)
        }
    }

    /// A listening socket that accepts (and closes) every connection, so
    /// its queue never fills however many connections the pool opens.
    fn server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                drop(conn);
            }
        });
        a
    }

    /// An address nothing listens on.
    fn closed_port() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }

    fn pool(addr: SocketAddr, max: usize, timeout_ms: u64, on_break: OnBreak) -> Pool<Tcp> {
        Pool::new(
            Tcp {
                addr,
                connects: AtomicUsize::new(0),
                usable: AtomicBool::new(true),
            },
            PoolOptions::new(
                max,
                Duration::from_millis(timeout_ms),
                format!("the test server at {addr}"),
            )
            .busy_hint("raise max_size")
            .on_break(on_break),
        )
    }

    fn usage(open: usize, idle: usize, max: usize) -> Usage {
        Usage { open, idle, max }
    }

    fn connects(p: &Pool<Tcp>) -> usize {
        p.connector().connects.load(Ordering::SeqCst)
    }

    #[test]
    fn connects_on_demand_and_reuses() {
        let addr = server();
        let p = pool(addr, 2, 1000, OnBreak::CloseIdle);
        assert_eq!(p.usage(), usage(0, 0, 2));
        let a = p.get().unwrap();
        assert_eq!(a.number, 0);
        assert_eq!(p.usage(), usage(1, 0, 2));
        drop(a);
        assert_eq!(p.usage(), usage(1, 1, 2));
        let a = p.get().unwrap();
        assert_eq!(a.number, 0, "the idle connection is reused");
        let b = p.get().unwrap();
        assert_eq!(b.number, 1);
        drop((a, b));
        assert_eq!(p.usage().idle, 2);
        assert_eq!(connects(&p), 2);
        p.close_idle();
        assert_eq!(p.usage(), usage(0, 0, 2));
    }

    #[test]
    fn a_full_pool_waits_then_says_what_it_waited_for() {
        let addr = server();
        let p = pool(addr, 1, 100, OnBreak::CloseIdle);
        let held = p.get().unwrap();
        let t = Instant::now();
        let e = p.get().err().unwrap();
        assert!(t.elapsed() >= Duration::from_millis(100));
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert_eq!(
            e.message(),
            format!("all 1 connections to the test server at {addr} stayed busy for 100 ms: raise max_size")
        );
        drop(held);
        assert!(p.get().is_ok());
    }

    #[test]
    fn a_waiting_call_gets_the_connection_given_back() {
        let addr = server();
        let p = pool(addr, 1, 5000, OnBreak::CloseIdle);
        std::thread::scope(|s| {
            let held = p.get().unwrap();
            s.spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                drop(held);
            });
            let t = Instant::now();
            let c = p.get().unwrap();
            assert_eq!(c.number, 0);
            assert!(t.elapsed() < Duration::from_secs(4));
        });
        assert_eq!(connects(&p), 1);
    }

    #[test]
    fn never_more_than_max_size_at_once() {
        let addr = server();
        let p = pool(addr, 3, 10_000, OnBreak::CloseIdle);
        let in_use = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..12 {
                s.spawn(|| {
                    for _ in 0..40 {
                        let c = p.get().unwrap();
                        let n = in_use.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(n, Ordering::SeqCst);
                        std::thread::yield_now();
                        assert!(c.number < 3);
                        in_use.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
        });
        assert!(most.load(Ordering::SeqCst) <= 3);
        assert!(connects(&p) <= 3);
        let u = p.usage();
        assert_eq!(u.open, u.idle);
        assert!(u.open <= 3);
    }

    #[test]
    fn breaks_under_load_keep_the_count_right() {
        let addr = server();
        for on_break in [OnBreak::CloseIdle, OnBreak::CloseIdleWhenTaken] {
            let p = pool(addr, 4, 10_000, on_break);
            std::thread::scope(|s| {
                for t in 0..8 {
                    let p = &p;
                    s.spawn(move || {
                        for i in 0..30 {
                            let mut c = p.get().unwrap();
                            if (t + i) % 7 == 0 {
                                c.mark_broken();
                            }
                        }
                    });
                }
            });
            let u = p.usage();
            assert!(u.open <= 4 && u.idle <= u.open, "{on_break:?}: {u:?}");
            // Every slot can still be taken at once.
            let all: Vec<_> = (0..4).map(|_| p.get().unwrap()).collect();
            assert_eq!(p.usage().open, 4);
            drop(all);
        }
    }

    #[test]
    fn a_failed_connect_frees_its_slot() {
        let addr = closed_port();
        let p = pool(addr, 1, 1000, OnBreak::CloseIdle);
        for _ in 0..3 {
            let e = p.get().err().unwrap();
            assert_eq!(e.kind(), ErrorKind::Unavailable);
            assert!(e.message().contains("cannot reach"), "{e}");
            assert_eq!(p.usage().open, 0);
        }
    }

    #[test]
    fn a_break_closes_the_connections_opened_before_it() {
        // (mode, usage right after the break, usage once all are given back)
        for (on_break, after_break, after_return) in [
            // Idle ones at once.
            (OnBreak::CloseIdle, usage(2, 0, 3), usage(0, 0, 3)),
            // Idle ones when next taken: counted until then.
            (OnBreak::CloseIdleWhenTaken, usage(3, 1, 3), usage(1, 1, 3)),
        ] {
            let addr = server();
            let p = pool(addr, 3, 1000, on_break);
            let mut a = p.get().unwrap();
            let b = p.get().unwrap();
            let c = p.get().unwrap();
            drop(b);
            a.mark_broken();
            assert!(a.is_broken());
            assert_eq!(p.usage(), after_break, "{on_break:?}");
            drop(a);
            // `c` was opened before the break: closed when given back.
            drop(c);
            assert_eq!(p.usage(), after_return, "{on_break:?}");
            // Whatever is idle is stale: a new connection is opened.
            let d = p.get().unwrap();
            assert_eq!(d.number, 3, "{on_break:?}");
            assert_eq!(p.usage(), usage(1, 0, 3), "{on_break:?}");
        }
    }

    #[test]
    fn unusable_connections_are_not_kept() {
        let addr = server();
        let p = pool(addr, 2, 1000, OnBreak::CloseIdle);
        drop(p.get().unwrap());
        assert_eq!(p.usage().idle, 1);
        p.connector().usable.store(false, Ordering::SeqCst);
        let c = p.get().unwrap();
        assert_eq!(c.number, 1, "the idle one was rejected when taken");
        drop(c);
        assert_eq!(p.usage(), usage(0, 0, 2));
    }

    #[test]
    fn pools_and_guards_cross_threads() {
        let addr = server();
        let p = Arc::new(pool(addr, 1, 1000, OnBreak::CloseIdle));
        let p2 = p.clone();
        std::thread::spawn(move || drop(p2.get().unwrap()))
            .join()
            .unwrap();
        assert_eq!(p.usage().idle, 1);
        let guard = p.get().unwrap();
        std::thread::scope(|s| {
            s.spawn(move || drop(guard));
        });
        assert_eq!(p.usage().idle, 1);
    }
}
