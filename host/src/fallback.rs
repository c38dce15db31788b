//! Graceful degradation: a cache store with `fallback = "<backend>"` keeps
//! serving from the fallback while its primary is unavailable.
//!
//! Every call goes to the primary. When it fails with `Unavailable`, the
//! store switches to the fallback (logging the switch once) and repeats the
//! call there. While on the fallback, the primary is probed with `health()`
//! at most once per [`PROBE_INTERVAL`]; when it answers, calls return to it
//! (logged once). Data written during the outage lives in the fallback only
//! and is not copied back: a cache may lose entries, never availability.

use crate::layer::layer;
use backplane_core::{Cache, Error, ErrorKind, Health, Result};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often a store on its fallback asks the primary whether it is back.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);

/// The keys of a cache section that every cache backend understands, and so
/// are handed to the fallback too.
pub const SHARED_CACHE_KEYS: [&str; 3] = ["max_messages", "ttl", "max_value_bytes"];

struct State {
    on_fallback: bool,
    next_probe: Instant,
}

/// A cache with a fallback.
pub struct FallbackCache {
    primary: Box<dyn Cache>,
    fallback: Box<dyn Cache>,
    store: String,
    primary_name: String,
    fallback_name: String,
    state: Mutex<State>,
}

impl FallbackCache {
    pub(crate) fn new(
        primary: Box<dyn Cache>,
        fallback: Box<dyn Cache>,
        store: &str,
        primary_name: &str,
        fallback_name: &str,
    ) -> Self {
        FallbackCache {
            primary,
            fallback,
            store: store.to_string(),
            primary_name: primary_name.to_string(),
            fallback_name: fallback_name.to_string(),
            state: Mutex::new(State {
                on_fallback: false,
                next_probe: Instant::now(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether to use the primary now, probing it when it is due.
    fn use_primary(&self) -> bool {
        let mut st = self.lock();
        if !st.on_fallback {
            return true;
        }
        if Instant::now() < st.next_probe {
            return false;
        }
        st.next_probe = Instant::now() + PROBE_INTERVAL;
        drop(st);
        if self.primary.health().is_ok_and(|h| h.healthy) {
            let mut st = self.lock();
            if st.on_fallback {
                st.on_fallback = false;
                log::info!(
                    "cache '{}': backend '{}' answers again; serving from it (data written to '{}' meanwhile stays there)",
                    self.store,
                    self.primary_name,
                    self.fallback_name
                );
            }
            true
        } else {
            false
        }
    }

    fn switch_to_fallback(&self, e: &Error) {
        let mut st = self.lock();
        if !st.on_fallback {
            st.on_fallback = true;
            st.next_probe = Instant::now() + PROBE_INTERVAL;
            log::warn!(
                "cache '{}': backend '{}' is unavailable ({}); serving from fallback '{}' until it answers",
                self.store,
                self.primary_name,
                e.message(),
                self.fallback_name
            );
        }
    }

    fn route<T>(
        &self,
        _: crate::layer::Op,
        f: impl Fn(&(dyn Cache + 'static)) -> Result<T>,
        _: impl FnOnce() -> crate::layer::OwnedCall<dyn Cache, T>,
    ) -> Result<T> {
        if self.use_primary() {
            match f(&*self.primary) {
                Err(e) if e.kind() == ErrorKind::Unavailable => self.switch_to_fallback(&e),
                other => return other,
            }
        }
        f(&*self.fallback)
    }
}

backplane_core::cache_methods!(layer!(FallbackCache));

impl FallbackCache {
    /// The primary's health; while it is down, unhealthy with a detail that
    /// says the fallback is serving.
    fn layer_health(&self) -> Result<Health> {
        match self.primary.health() {
            Ok(h) if h.healthy => Ok(h),
            other => {
                let why = match other {
                    Ok(h) => h.detail,
                    Err(e) => e.message().to_string(),
                };
                let fb = self.fallback.health()?;
                Ok(Health {
                    healthy: false,
                    detail: format!(
                        "degraded: '{}' unavailable ({why}); serving from fallback '{}' ({})",
                        self.primary_name, self.fallback_name, fb.detail
                    ),
                })
            }
        }
    }
}
