//! Mirroring with failover: one store made of several stores of the same
//! capability, any backends, in order of preference.
//!
//! ```toml
//! [relational.user_data]
//! mirror = ["user_data_pg", "user_data_local"]   # the primary first
//! journal = "data/journal"                        # default: .backplane/journal beside plugins.toml
//!
//! [relational.user_data_pg]
//! backend = "postgres"
//! url = "postgres://app@db/app"
//!
//! [relational.user_data_local]
//! backend = "sqlite"
//! path = "data/users.db"
//! ```
//!
//! - **Reads** go to the first member that is in sync and answering: the
//!   primary, or, while it answers `Unavailable`, the next one. A member
//!   that failed is tried again at most every [`PROBE_INTERVAL`].
//! - **Writes** go to every member. The first member in sync and answering
//!   runs the call and its answer is the caller's; the others then get the
//!   same call. A write whose answer carries ids the backend chose
//!   (`add_message`, `add_messages`, `create_nodes`, `create_edges`) reaches
//!   the others as the import of what the first one created, ids included,
//!   so every member holds the same records.
//! - **A member that is down** gets its writes in a **journal**, a file per
//!   member, appended and flushed to disk before the call returns. While its
//!   journal is not empty the member is behind: reads skip it, and new
//!   writes queue behind the old ones. A background thread asks it every
//!   [`PROBE_INTERVAL`] whether it answers, and when it does replays the
//!   journal in order, then puts it back in sync. A write that a member
//!   refuses for any other reason (a constraint that only it has) marks it
//!   **diverged**: it is left out from then on and `health` says why, never
//!   a silent gap.
//! - `health` is healthy only when every member is healthy and in sync; its
//!   detail names each member and how far behind it is.
//!
//! What a journal cannot cover: a process that dies after the first
//! member's write and before the journal's append leaves that one write
//! on the first member only (the caller never got an answer for it), and
//! a replay interrupted by a crash may apply its last record twice when it
//! resumes. Writes should be deterministic (`now()` or `random()` in a
//! statement differ between members). A `restore` on a mirror is refused:
//! a backup file is one backend's format; restore each member.
//!
//! The same machinery serves a cache's `fallback = "memory"`: a mirror of
//! the primary and the fallback with a journal in memory (a cache may lose
//! entries on a restart, never availability), so a cache that fell back
//! and came back has the entries written meanwhile.

use crate::layer::{ops, replay, Op, Owned};
use backplane_core::boundary::{decode, request, split_tag};
use backplane_core::{
    Cache, Capability, Edge, Error, ErrorKind, Graph, Health, Message, Node, Relational, Result,
    Vector,
};
use std::any::Any;
use std::collections::VecDeque;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// The keys of a cache section that every cache backend understands, and
/// so are handed to a `fallback` backend too.
pub const SHARED_CACHE_KEYS: [&str; 3] = ["max_messages", "ttl", "max_value_bytes"];

/// The most writes a journal kept in memory (a cache's fallback) holds for
/// a primary that is down; older ones are dropped beyond it.
pub const MEMORY_JOURNAL_LIMIT: usize = 100_000;

/// How often a member that failed is tried again, and a member behind is
/// asked whether it can catch up.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// Which operations write, per capability (every other one reads).
pub fn writes(cap: Capability) -> &'static [&'static str] {
    match cap {
        Capability::Relational => &[
            "execute",
            "execute_many",
            "transaction",
            "migrate",
            "restore",
            "import_begin",
            "import_rows",
            "import_end",
        ],
        Capability::Vector => &[
            "create_collection",
            "drop_collection",
            "upsert",
            "delete",
            "delete_where",
        ],
        Capability::Cache => &[
            "set",
            "delete",
            "expire",
            "set_many",
            "add_message",
            "add_messages",
            "remove_message",
            "clear",
            "import_entries",
            "import_messages",
        ],
        Capability::Graph => &[
            "create_nodes",
            "update_node",
            "delete_node",
            "create_edges",
            "update_edge",
            "delete_edge",
            "import_nodes",
            "import_edges",
        ],
    }
}

/// Which operations only read, per capability: a new operation must be
/// placed in this list or in [`writes`] (the test says so).
pub fn reads(cap: Capability) -> &'static [&'static str] {
    match cap {
        Capability::Relational => &[
            "query",
            "tables",
            "describe",
            "backup",
            "export_rows",
            "export_snapshot",
            "release_snapshot",
        ],
        Capability::Vector => &[
            "list_collections",
            "collection_info",
            "get",
            "count",
            "search",
            "search_batch",
            "scroll",
        ],
        Capability::Cache => &[
            "get",
            "exists",
            "get_many",
            "recent",
            "stats",
            "list_channels",
            "scan_keys",
        ],
        Capability::Graph => &[
            "get_node",
            "get_edge",
            "neighbors",
            "shortest_path",
            "edges_of",
            "find_nodes",
            "export_nodes",
            "export_edges",
        ],
    }
}

/// What a mirror needs of a capability's trait object.
pub trait Member: Send + Sync + 'static {
    /// The capability.
    const CAP: Capability;
    /// Its health.
    fn member_health(&self) -> Result<Health>;
    /// Run an encoded request on it.
    fn replay(&self, request: &[u8]) -> Result<()>;
}

macro_rules! member {
    ($($Trait:ident $cap:ident $module:ident),*) => {$(
        impl Member for dyn $Trait {
            const CAP: Capability = Capability::$cap;
            fn member_health(&self) -> Result<Health> {
                self.health()
            }
            fn replay(&self, request: &[u8]) -> Result<()> {
                replay::$module::replay(self, request)
            }
        }
    )*};
}
member!(
    Relational Relational relational,
    Vector Vector vector,
    Cache Cache cache,
    Graph Graph graph
);

/// The request the other members get for a write whose answer holds ids
/// the backend chose: the import of what it created.
fn for_the_others(cap: Capability, op: Op, original: &[u8], answer: &dyn Any) -> Option<Vec<u8>> {
    let tag = |name: &str| {
        ops(cap)
            .iter()
            .find(|o| o.name == name)
            .map(|o| o.tag)
            .expect("the capability has the import operation")
    };
    let (_, body) = split_tag(original).ok()?;
    match (cap, op.name) {
        (Capability::Cache, "add_message") => {
            let (channel, _): (String, Message) = decode(body).ok()?;
            let m = answer.downcast_ref::<Message>()?;
            Some(request(
                tag("import_messages"),
                &(channel.as_str(), std::slice::from_ref(m)),
            ))
        }
        (Capability::Cache, "add_messages") => {
            let (channel, _): (String, Vec<Message>) = decode(body).ok()?;
            let m = answer.downcast_ref::<Vec<Message>>()?;
            Some(request(
                tag("import_messages"),
                &(channel.as_str(), m.as_slice()),
            ))
        }
        (Capability::Graph, "create_nodes") => {
            let n = answer.downcast_ref::<Vec<Node>>()?;
            Some(request(tag("import_nodes"), &(n.as_slice(), true)))
        }
        (Capability::Graph, "create_edges") => {
            let e = answer.downcast_ref::<Vec<Edge>>()?;
            Some(request(tag("import_edges"), &(e.as_slice(), true)))
        }
        _ => None,
    }
}

/// The first bytes of a journal file; the capability and the wire
/// fingerprint follow, so a journal is never replayed by a build that
/// would decode it differently.
const MAGIC: &[u8; 20] = b"backplane-journal-1\n";

/// The writes a member has not received yet, in order: in memory, and in
/// a file when the mirror has a journal folder.
struct Journal {
    path: Option<PathBuf>,
    inner: Mutex<JournalInner>,
}

struct JournalInner {
    pending: VecDeque<Arc<[u8]>>,
    /// Oldest records dropped to stay within [`MEMORY_JOURNAL_LIMIT`].
    dropped: u64,
    file: Option<std::fs::File>,
    /// Records of the file already replayed.
    replayed: u64,
}

fn header(cap: Capability) -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    h.extend_from_slice(
        format!(
            "{} {:016x}\n",
            cap.as_str(),
            backplane_core::WIRE_FINGERPRINT
        )
        .as_bytes(),
    );
    h
}

impl Journal {
    fn in_memory() -> Journal {
        Journal {
            path: None,
            inner: Mutex::new(JournalInner {
                pending: VecDeque::new(),
                dropped: 0,
                file: None,
                replayed: 0,
            }),
        }
    }

    /// Open (or create) the journal file at `path`, loading what it holds
    /// that was not replayed yet.
    fn open(path: &Path, cap: Capability) -> Result<Journal> {
        let fail = |what: &str, e: std::io::Error| {
            Error::backend(format!(
                "mirror journal {}: cannot {what}: {e}",
                path.display()
            ))
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| fail("create its folder", e))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| fail("open it", e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| fail("read it", e))?;
        let head = header(cap);
        let mut pending = VecDeque::new();
        if bytes.is_empty() {
            file.write_all(&head).map_err(|e| fail("write it", e))?;
            file.sync_data().map_err(|e| fail("flush it", e))?;
        } else {
            if !bytes.starts_with(&head) {
                return Err(Error::config(format!(
                    "mirror journal {} was written by another build of Backplane (or for another capability), whose writes this one cannot replay: replay it with that build, or compare the members and delete the file",
                    path.display()
                )));
            }
            let mut at = head.len();
            let mut good = at;
            while at + 12 <= bytes.len() {
                let len =
                    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
                let sum = u64::from_le_bytes(bytes[at + 4..at + 12].try_into().expect("8 bytes"));
                let Some(rec) = bytes.get(at + 12..at + 12 + len) else {
                    break;
                };
                if xxhash_rust::xxh3::xxh3_64(rec) != sum {
                    break;
                }
                pending.push_back(Arc::from(rec));
                at += 12 + len;
                good = at;
            }
            if good < bytes.len() {
                // A record torn by a crash while it was appended: the call
                // it belonged to never returned.
                log::warn!(
                    "mirror journal {}: dropping {} bytes of a record torn by a crash",
                    path.display(),
                    bytes.len() - good
                );
                file.set_len(good as u64)
                    .map_err(|e| fail("truncate it", e))?;
            }
        }
        let replayed = std::fs::read(pos_path(path))
            .ok()
            .and_then(|b| {
                b.get(..8)
                    .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            })
            .unwrap_or(0);
        for _ in 0..replayed.min(pending.len() as u64) {
            pending.pop_front();
        }
        Ok(Journal {
            path: Some(path.to_path_buf()),
            inner: Mutex::new(JournalInner {
                pending,
                dropped: 0,
                file: Some(file),
                replayed,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, JournalInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn len(&self) -> usize {
        self.lock().pending.len()
    }

    /// Keep `req`, on disk first when there is a file.
    fn append(&self, req: &Arc<[u8]>) -> Result<()> {
        let mut j = self.lock();
        if let Some(f) = &mut j.file {
            let mut rec = Vec::with_capacity(12 + req.len());
            rec.extend_from_slice(&(req.len() as u32).to_le_bytes());
            rec.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(req).to_le_bytes());
            rec.extend_from_slice(req);
            f.write_all(&rec)
                .and_then(|()| f.sync_data())
                .map_err(|e| {
                    Error::backend(format!(
                        "mirror journal {}: cannot append: {e}",
                        self.path.as_deref().unwrap_or(Path::new("?")).display()
                    ))
                })?;
        }
        j.pending.push_back(req.clone());
        if j.file.is_none() && j.pending.len() > MEMORY_JOURNAL_LIMIT {
            // A cache's fallback during a long outage: the oldest writes
            // go (a cache may lose entries), memory stays bounded.
            j.pending.pop_front();
            j.dropped += 1;
            if j.dropped == 1 {
                log::warn!(
                    "a cache's fallback has kept {MEMORY_JOURNAL_LIMIT} writes for its primary, which is still down; older ones are dropped from now on"
                );
            }
        }
        Ok(())
    }

    fn front(&self) -> Option<Arc<[u8]>> {
        self.lock().pending.front().cloned()
    }

    /// The front record was replayed: drop it, and empty the file when
    /// nothing is left.
    fn pop(&self, cap: Capability) -> Result<()> {
        let mut j = self.lock();
        j.pending.pop_front();
        j.replayed += 1;
        let Some(path) = self.path.clone() else {
            return Ok(());
        };
        let fail = |e: std::io::Error| {
            Error::backend(format!(
                "mirror journal {}: cannot record the replay: {e}",
                path.display()
            ))
        };
        if j.pending.is_empty() {
            let f = j.file.as_mut().expect("a journal with a path has a file");
            f.set_len(0).map_err(fail)?;
            f.seek(std::io::SeekFrom::Start(0)).map_err(fail)?;
            f.write_all(&header(cap))
                .and_then(|()| f.sync_data())
                .map_err(fail)?;
            j.replayed = 0;
            let _ = std::fs::remove_file(pos_path(&path));
        } else {
            std::fs::write(pos_path(&path), j.replayed.to_le_bytes()).map_err(fail)?;
        }
        Ok(())
    }
}

fn pos_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".pos");
    PathBuf::from(p)
}

#[derive(Default)]
struct State {
    /// Its journal holds writes it has not received.
    behind: bool,
    /// It refused a write the others took: left out, with the reason.
    diverged: Option<String>,
    /// It answered `Unavailable`; not tried again before `retry_at`.
    down: Option<(String, Instant)>,
}

struct MemberOf<D: ?Sized> {
    label: String,
    store: Arc<D>,
    journal: Journal,
    state: Mutex<State>,
}

impl<D: ?Sized + Member> MemberOf<D> {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// In sync, and not known to be down (or due to be tried again).
    fn usable(&self) -> bool {
        let st = self.lock();
        !st.behind
            && st.diverged.is_none()
            && st.down.as_ref().is_none_or(|(_, at)| Instant::now() >= *at)
    }

    fn down(&self, store: &str, e: &Error) {
        let mut st = self.lock();
        if st.down.is_none() {
            log::warn!(
                "mirror '{store}': {} is unavailable ({}); serving from the other members",
                self.label,
                e.message()
            );
        }
        st.down = Some((e.message().to_string(), Instant::now() + PROBE_INTERVAL));
    }

    fn up(&self, store: &str) {
        let mut st = self.lock();
        if st.down.take().is_some() {
            log::info!("mirror '{store}': {} answers again", self.label);
        }
    }

    fn diverge(&self, store: &str, why: String) {
        log::error!(
            "mirror '{store}': {} refused a write the others took ({why}); it is left out until the members are compared and repaired",
            self.label
        );
        self.lock().diverged = Some(why);
    }

    /// Queue `req` for later; a failure to keep it is a divergence.
    fn queue(&self, store: &str, st: &mut State, req: &Arc<[u8]>) {
        if !st.behind {
            log::warn!(
                "mirror '{store}': {} is behind; its writes go to its journal until it answers",
                self.label
            );
        }
        st.behind = true;
        if let Err(e) = self.journal.append(req) {
            let why = e.message().to_string();
            log::error!("mirror '{store}': {} has lost a write: {why}", self.label);
            st.diverged = Some(why);
        }
    }

    /// Give `req` to this member now, or queue it.
    fn replicate(&self, store: &str, req: &Arc<[u8]>) {
        {
            let mut st = self.lock();
            if st.diverged.is_some() {
                return;
            }
            let down = st.down.as_ref().is_some_and(|(_, at)| Instant::now() < *at);
            if st.behind || down {
                self.queue(store, &mut st, req);
                return;
            }
        }
        match self.store.replay(req) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Unavailable => {
                self.down(store, &e);
                let mut st = self.lock();
                self.queue(store, &mut st, req);
            }
            Err(e) => self.diverge(store, e.message().to_string()),
        }
    }

    /// Replay the journal while the member answers; back in sync when it
    /// is empty.
    fn catch_up(&self, store: &str) {
        if self
            .store
            .member_health()
            .map(|h| h.healthy)
            .unwrap_or(false)
        {
            self.up(store);
        } else {
            return;
        }
        let mut done = 0;
        loop {
            let Some(req) = self.journal.front() else {
                let mut st = self.lock();
                if st.diverged.is_some() {
                    return;
                }
                if self.journal.len() == 0 {
                    st.behind = false;
                    log::info!(
                        "mirror '{store}': {} caught up ({done} writes replayed) and is in sync",
                        self.label
                    );
                    return;
                }
                continue;
            };
            match self.store.replay(&req) {
                Ok(()) => {
                    done += 1;
                    if let Err(e) = self.journal.pop(D::CAP) {
                        self.diverge(store, e.message().to_string());
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Unavailable => {
                    self.down(store, &e);
                    return;
                }
                Err(e) => {
                    self.diverge(store, format!("replaying its journal: {}", e.message()));
                    return;
                }
            }
        }
    }
}

struct Shared<D: ?Sized> {
    store: String,
    members: Vec<MemberOf<D>>,
}

/// A mirrored store; see the module's docs.
pub(crate) struct Mirror<D: ?Sized> {
    shared: Arc<Shared<D>>,
}

/// Where a member's writes wait while it is down.
pub(crate) enum JournalAt {
    /// In memory only (a cache's fallback).
    Memory,
    /// One file per member in this folder.
    Folder(PathBuf),
}

impl<D: ?Sized + Member> Mirror<D> {
    /// A mirror of `members` (label, store; the primary first).
    pub fn new(store: &str, members: Vec<(String, Arc<D>)>, journal: &JournalAt) -> Result<Self> {
        let members = members
            .into_iter()
            .map(|(label, s)| {
                let journal = match journal {
                    JournalAt::Memory => Journal::in_memory(),
                    JournalAt::Folder(dir) => {
                        let file: String = label
                            .chars()
                            .map(|c| {
                                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                                    c
                                } else {
                                    '_'
                                }
                            })
                            .collect();
                        Journal::open(&dir.join(format!("{file}.journal")), D::CAP)?
                    }
                };
                let behind = journal.len() > 0;
                Ok(MemberOf {
                    label,
                    store: s,
                    journal,
                    state: Mutex::new(State {
                        behind,
                        ..State::default()
                    }),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let shared = Arc::new(Shared {
            store: store.to_string(),
            members,
        });
        let weak: Weak<Shared<D>> = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name(format!("backplane-mirror-{store}"))
            .spawn(move || loop {
                std::thread::sleep(PROBE_INTERVAL);
                let Some(sh) = weak.upgrade() else { return };
                for m in &sh.members {
                    if m.lock().behind {
                        m.catch_up(&sh.store);
                    }
                }
            })
            .map_err(|e| {
                Error::backend(format!("cannot start the mirror's catch-up thread: {e}"))
            })?;
        Ok(Mirror { shared })
    }

    fn no_member(&self, last: Option<Error>) -> Error {
        last.unwrap_or_else(|| {
            Error::unavailable(format!(
                "mirror '{}': no member is in sync and answering; retry when one is back",
                self.shared.store
            ))
        })
    }

    pub(crate) fn route<T: 'static>(
        &self,
        op: Op,
        call: impl Fn(&D) -> Result<T>,
        owned: impl FnOnce() -> Owned<D, T>,
    ) -> Result<T> {
        let sh = &*self.shared;
        if D::CAP == Capability::Relational && op.name == "restore" {
            return Err(Error::unsupported(format!(
                "mirror '{}': restore each member on its own (a backup file is one backend's format), then compare them",
                sh.store
            )));
        }
        // Anything not known to only read is treated as a write.
        let write = writes(D::CAP).contains(&op.name) || !reads(D::CAP).contains(&op.name);
        let mut last = None;
        for (i, m) in sh.members.iter().enumerate() {
            if !m.usable() {
                continue;
            }
            match call(&*m.store) {
                Err(e) if e.kind() == ErrorKind::Unavailable => {
                    m.down(&sh.store, &e);
                    last = Some(e);
                }
                Err(e) => return Err(e),
                Ok(v) => {
                    m.up(&sh.store);
                    if write {
                        let o = owned();
                        let req: Arc<[u8]> = for_the_others(D::CAP, op, &o.request, &v)
                            .map(Arc::from)
                            .unwrap_or(o.request);
                        for (j, other) in sh.members.iter().enumerate() {
                            if j != i {
                                other.replicate(&sh.store, &req);
                            }
                        }
                    }
                    return Ok(v);
                }
            }
        }
        Err(self.no_member(last))
    }

    pub(crate) fn mirror_health(&self) -> Result<Health> {
        let sh = &*self.shared;
        let mut healthy = true;
        let mut parts = Vec::new();
        let mut serving = None;
        for m in &sh.members {
            let st = m.lock();
            let (ok, what) = if let Some(why) = &st.diverged {
                (false, format!("diverged ({why}): compare and repair it"))
            } else if st.behind {
                (
                    false,
                    format!("behind by {} writes, catching up", m.journal.len()),
                )
            } else {
                drop(st);
                match m.store.member_health() {
                    Ok(h) if h.healthy => {
                        serving.get_or_insert(m.label.clone());
                        (true, "in sync".to_string())
                    }
                    Ok(h) => (false, format!("unavailable ({})", h.detail)),
                    Err(e) => (false, format!("unavailable ({})", e.message())),
                }
            };
            healthy &= ok;
            parts.push(format!("{}: {what}", m.label));
        }
        let Some(serving) = serving else {
            return Err(Error::unavailable(format!(
                "mirror '{}': no member is in sync and answering ({})",
                sh.store,
                parts.join("; ")
            )));
        };
        let detail = if healthy {
            format!("mirror: {}", parts.join("; "))
        } else {
            format!("degraded, serving from {serving}: {}", parts.join("; "))
        };
        Ok(Health { healthy, detail })
    }
}

macro_rules! mirror_of {
    ($($Trait:ident $methods:ident),*) => {$(
        impl Mirror<dyn $Trait> {
            fn layer_health(&self) -> Result<Health> {
                self.mirror_health()
            }
        }
        backplane_core::$methods!(crate::layer::layer!(Mirror<dyn $Trait>));
    )*};
}
mirror_of!(
    Relational relational_methods,
    Vector vector_methods,
    Cache cache_methods,
    Graph graph_methods
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_a_read_or_a_write() {
        for cap in Capability::ALL {
            for o in ops(cap) {
                let (r, w) = (reads(cap).contains(&o.name), writes(cap).contains(&o.name));
                assert!(
                    r ^ w,
                    "{cap} {}: place it in reads or in writes, once",
                    o.name
                );
            }
            assert_eq!(
                reads(cap).len() + writes(cap).len(),
                ops(cap).len(),
                "{cap}"
            );
        }
    }
}
