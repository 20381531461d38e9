//! In-process read cache for the employee list and single employees.
//!
//! Entries live for the configured TTL and are dropped on this instance's own
//! writes. Other instances behind the load balancer only see a write after their
//! TTL runs out; that staleness is the trade for fewer table reads.
//!
//! A generation counter, bumped on every invalidation, keeps a read that
//! started before a write from storing its (now stale) result after it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::model::Employee;

/// Bound on cached single employees; past it the map is simply cleared.
const MAX_ITEMS: usize = 10_000;

#[derive(Debug, Default)]
struct Inner {
    generation: u64,
    list: Option<(Instant, Arc<Vec<Employee>>)>,
    items: HashMap<String, (Instant, Arc<Employee>)>,
}

#[derive(Debug)]
pub struct ReadCache {
    ttl: Duration,
    inner: Mutex<Inner>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Opaque token from [`ReadCache::generation`], handed back when storing.
#[derive(Clone, Copy, Debug)]
pub struct Generation(u64);

impl ReadCache {
    /// A zero TTL disables caching: every lookup is a miss and nothing is stored.
    pub fn new(ttl: Duration) -> ReadCache {
        ReadCache {
            ttl,
            inner: Mutex::new(Inner::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The data is a cache: after a panic elsewhere it is still safe to use.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, hit: bool) {
        let c = if hit { &self.hits } else { &self.misses };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Take this before reading the table; pass it to `put_*` afterwards.
    pub fn generation(&self) -> Generation {
        Generation(self.lock().generation)
    }

    pub fn get_list(&self) -> Option<Arc<Vec<Employee>>> {
        let found = self
            .lock()
            .list
            .as_ref()
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone());
        self.count(found.is_some());
        found
    }

    pub fn put_list(&self, generation: Generation, list: Arc<Vec<Employee>>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut inner = self.lock();
        if inner.generation == generation.0 {
            inner.list = Some((Instant::now(), list));
        }
    }

    pub fn get_item(&self, id: &str) -> Option<Arc<Employee>> {
        let found = self
            .lock()
            .items
            .get(id)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone());
        self.count(found.is_some());
        found
    }

    pub fn put_item(&self, generation: Generation, e: Arc<Employee>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut inner = self.lock();
        if inner.generation != generation.0 {
            return;
        }
        if inner.items.len() >= MAX_ITEMS {
            inner.items.clear();
        }
        inner.items.insert(e.id.clone(), (Instant::now(), e));
    }

    /// Drops everything; called after every write this instance makes.
    pub fn invalidate(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.list = None;
        inner.items.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emp(id: &str) -> Arc<Employee> {
        Arc::new(Employee {
            id: id.into(),
            full_name: "A".into(),
            job_title: "B".into(),
            location: "C".into(),
            badges: vec![],
            photo_key: None,
        })
    }

    #[test]
    fn hit_after_put_and_miss_after_invalidate() {
        let c = ReadCache::new(Duration::from_secs(60));
        assert!(c.get_item("a").is_none());
        let g = c.generation();
        c.put_item(g, emp("a"));
        assert!(c.get_item("a").is_some());
        c.invalidate();
        assert!(c.get_item("a").is_none());
        assert_eq!((c.hits(), c.misses()), (1, 2));
    }

    #[test]
    fn stale_generation_is_not_stored() {
        let c = ReadCache::new(Duration::from_secs(60));
        let g = c.generation();
        c.invalidate();
        c.put_list(g, Arc::new(vec![]));
        assert!(c.get_list().is_none());
    }

    #[test]
    fn zero_ttl_never_hits() {
        let c = ReadCache::new(Duration::ZERO);
        let g = c.generation();
        c.put_list(g, Arc::new(vec![]));
        assert!(c.get_list().is_none());
        assert_eq!(c.hits(), 0);
    }
}
