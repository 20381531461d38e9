//! In-process read cache with single flight and stale-while-revalidate.
//!
//! Each key (the employee list, one employee) is a [`Flight`]:
//! - **fresh** (younger than the TTL): served from memory;
//! - **stale** (up to one more TTL): served from memory while *one* background task
//!   reads the table again, so an expiry never makes a request wait;
//! - **missing** (cold, invalidated, or older than two TTLs): the first request reads
//!   the table and every concurrent request for that key waits for that one read
//!   (single flight): a cold start under load costs one scan, not one per request.
//!
//! Writes this instance makes drop everything (and any read in flight from before
//! the write is not stored: a generation counter tells). Other instances behind the
//! load balancer see a write once their entry expires: that staleness, at most two
//! TTLs, is the trade for fewer table reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::OnceCell;
// Tokio's clock, so tests can move time instead of waiting for it.
use tokio::time::Instant;

/// Bound on cached single employees; past it the map is simply cleared.
const MAX_ITEMS: usize = 10_000;

/// What the cache did, for `/metrics` (registered there as they are) and `/info`.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Answered from a fresh entry.
    pub hits: Counter,
    /// Answered from a stale entry while a background read refreshed it.
    pub stale: Counter,
    /// Found nothing usable and waited for a read.
    pub misses: Counter,
    /// Waited for a read another request had started (a subset of `misses`).
    pub coalesced: Counter,
    /// Reads of the table the cache made (foreground and background).
    pub fills: Counter,
}

type Fill<T, E> = Arc<OnceCell<Result<Arc<T>, E>>>;

struct Slot<T, E> {
    value: Option<(Instant, Arc<T>)>,
    /// The read under way, which concurrent requests join.
    inflight: Option<Fill<T, E>>,
    generation: u64,
}

/// One cached value with single-flight, stale-while-revalidate reads.
pub struct Flight<T, E> {
    ttl: Duration,
    slot: Mutex<Slot<T, E>>,
}

impl<T, E> std::fmt::Debug for Flight<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flight").field("ttl", &self.ttl).finish()
    }
}

/// What a lookup decided while holding the slot's lock.
enum Step<T, E> {
    /// The value, and whether it is past its TTL.
    Ready(Arc<T>, bool),
    Wait(Fill<T, E>, u64),
    ServeStale(Arc<T>, Fill<T, E>, u64),
}

impl<T, E> Flight<T, E>
where
    T: Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    pub fn new(ttl: Duration) -> Flight<T, E> {
        Flight {
            ttl,
            slot: Mutex::new(Slot {
                value: None,
                inflight: None,
                generation: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slot<T, E>> {
        // The data is a cache: after a panic elsewhere it is still safe to use.
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value, from memory or from `fill` (run once for all concurrent callers).
    /// `keep` says whether a filled value may be cached (a "not found" is not).
    pub async fn get<F, Fut>(
        self: &Arc<Self>,
        stats: &Arc<CacheStats>,
        keep: fn(&T) -> bool,
        fill: F,
    ) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let step = {
            let mut s = self.lock();
            let age = s.value.as_ref().map(|(at, _)| at.elapsed());
            match (age, &s.value) {
                (Some(age), Some((_, v))) if age < self.ttl => Step::Ready(v.clone(), false),
                (Some(age), Some((_, v))) if age < self.ttl * 2 => {
                    let v = v.clone();
                    match &s.inflight {
                        // Someone is refreshing already.
                        Some(_) => Step::Ready(v, true),
                        None => {
                            let cell: Fill<T, E> = Arc::new(OnceCell::new());
                            s.inflight = Some(cell.clone());
                            Step::ServeStale(v, cell, s.generation)
                        }
                    }
                }
                _ => {
                    let joined = s.inflight.is_some();
                    let generation = s.generation;
                    let cell = s
                        .inflight
                        .get_or_insert_with(|| Arc::new(OnceCell::new()))
                        .clone();
                    stats.misses.inc();
                    if joined {
                        stats.coalesced.inc();
                    }
                    Step::Wait(cell, generation)
                }
            }
        };
        match step {
            Step::Ready(v, stale) => {
                if stale { &stats.stale } else { &stats.hits }.inc();
                Ok(v)
            }
            Step::ServeStale(v, cell, generation) => {
                stats.stale.inc();
                let me = self.clone();
                let stats = stats.clone();
                // The refresh outlives the request that noticed the expiry.
                tokio::spawn(async move {
                    let _ = me.run(&cell, generation, &stats, keep, fill).await;
                });
                Ok(v)
            }
            Step::Wait(cell, generation) => self.run(&cell, generation, stats, keep, fill).await,
        }
    }

    /// Runs `fill` unless the flight's read already ran (or is running), then stores
    /// the result if no write happened meanwhile.
    async fn run<F, Fut>(
        &self,
        cell: &Fill<T, E>,
        generation: u64,
        stats: &CacheStats,
        keep: fn(&T) -> bool,
        fill: F,
    ) -> Result<Arc<T>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let result = cell
            .get_or_init(|| async {
                stats.fills.inc();
                fill().await.map(Arc::new)
            })
            .await
            .clone();
        let mut s = self.lock();
        if s.inflight.as_ref().is_some_and(|c| Arc::ptr_eq(c, cell)) {
            s.inflight = None;
            if let Ok(v) = &result
                && s.generation == generation
                && !self.ttl.is_zero()
                && keep(v)
            {
                s.value = Some((Instant::now(), v.clone()));
            }
        }
        result
    }

    /// Drops the value and detaches any read in flight (its result is not stored).
    pub fn invalidate(&self) {
        let mut s = self.lock();
        s.generation += 1;
        s.value = None;
        s.inflight = None;
    }
}

/// The cache the app uses: the list (whatever the caller stores for it: the records
/// and their serialized JSON) and single employees by id.
pub struct ReadCache<L, I, E> {
    ttl: Duration,
    pub stats: Arc<CacheStats>,
    list: Mutex<Arc<Flight<L, E>>>,
    items: Mutex<HashMap<String, Arc<Flight<I, E>>>>,
}

impl<L, I, E> std::fmt::Debug for ReadCache<L, I, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadCache").field("ttl", &self.ttl).finish()
    }
}

impl<L, I, E> ReadCache<L, I, E>
where
    L: Send + Sync + 'static,
    I: Send + Sync + 'static,
    E: Clone + Send + Sync + 'static,
{
    /// A zero TTL disables caching: every lookup reads (concurrent ones still share a read).
    pub fn new(ttl: Duration) -> Self {
        ReadCache {
            ttl,
            stats: Arc::default(),
            list: Mutex::new(Arc::new(Flight::new(ttl))),
            items: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub async fn list<F, Fut>(&self, fill: F) -> Result<Arc<L>, E>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<L, E>> + Send + 'static,
    {
        let flight = self.list.lock().unwrap_or_else(|p| p.into_inner()).clone();
        flight.get(&self.stats, |_| true, fill).await
    }

    pub async fn item<F, Fut>(&self, id: &str, keep: fn(&I) -> bool, fill: F) -> Result<Arc<I>, E>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<I, E>> + Send + 'static,
    {
        let flight = {
            let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
            if items.len() >= MAX_ITEMS && !items.contains_key(id) {
                items.clear();
            }
            items
                .entry(id.to_owned())
                .or_insert_with(|| Arc::new(Flight::new(self.ttl)))
                .clone()
        };
        flight.get(&self.stats, keep, fill).await
    }

    /// Drops everything; called after every write this instance makes.
    pub fn invalidate(&self) {
        self.list
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .invalidate();
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        for f in items.values() {
            f.invalidate();
        }
        items.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    type Cache = ReadCache<Vec<u32>, Option<u32>, String>;
    type Read = std::pin::Pin<Box<dyn Future<Output = Result<Vec<u32>, String>> + Send>>;

    /// A fill that counts its runs and answers after `gate` opens.
    fn counted(
        runs: &Arc<AtomicUsize>,
        gate: &Arc<tokio::sync::Notify>,
        value: u32,
    ) -> impl FnOnce() -> Read + Send + 'static {
        let (runs, gate) = (runs.clone(), gate.clone());
        move || {
            Box::pin(async move {
                runs.fetch_add(1, Ordering::SeqCst);
                gate.notified().await;
                Ok(vec![value])
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_share_one_read() {
        let cache = Arc::new(Cache::new(Duration::from_secs(60)));
        let runs = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let waiters: Vec<_> = (0..16)
            .map(|_| {
                let (cache, f) = (cache.clone(), counted(&runs, &gate, 7));
                tokio::spawn(async move { cache.list(f).await })
            })
            .collect();
        // Every waiter has looked before the one read is let through.
        while cache.stats.misses.get() < 16 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        for w in waiters {
            assert_eq!(*w.await.unwrap().unwrap(), vec![7]);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(cache.stats.coalesced.get(), 15);
        assert_eq!(cache.stats.fills.get(), 1);
        // And then it is a hit.
        let again = cache.list(counted(&runs, &gate, 8)).await.unwrap();
        assert_eq!(*again, vec![7]);
        assert_eq!(cache.stats.hits.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_value_is_served_while_one_read_refreshes_it() {
        let ttl = Duration::from_millis(300);
        let cache = Arc::new(Cache::new(ttl));
        let runs = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        gate.notify_one();
        assert_eq!(
            *cache.list(counted(&runs, &gate, 1)).await.unwrap(),
            vec![1]
        );
        // Past the TTL, inside the stale window.
        tokio::time::advance(ttl + Duration::from_millis(1)).await;
        // Stale answers come at once, whatever the refresh is doing.
        for _ in 0..5 {
            assert_eq!(
                *cache.list(counted(&runs, &gate, 2)).await.unwrap(),
                vec![1]
            );
        }
        assert_eq!(cache.stats.stale.get(), 5);
        gate.notify_one();
        // The one background read lands; later reads see it.
        let mut tries = 0;
        loop {
            let v = cache.list(counted(&runs, &gate, 3)).await.unwrap();
            if *v == vec![2] {
                break;
            }
            tries += 1;
            assert!(tries < 1000, "the refresh never landed");
            tokio::task::yield_now().await;
        }
        assert_eq!(
            runs.load(Ordering::SeqCst),
            2,
            "one refresh for five stale reads"
        );
    }

    #[tokio::test]
    async fn a_read_from_before_a_write_is_not_stored() {
        let cache = Arc::new(Cache::new(Duration::from_secs(60)));
        let runs = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let c = cache.clone();
        let f = counted(&runs, &gate, 1);
        let old_read = tokio::spawn(async move { c.list(f).await });
        while runs.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        cache.invalidate();
        gate.notify_one();
        assert_eq!(*old_read.await.unwrap().unwrap(), vec![1]);
        gate.notify_one();
        let after = cache.list(counted(&runs, &gate, 2)).await.unwrap();
        assert_eq!(*after, vec![2], "the pre-write read was not cached");
    }

    #[tokio::test]
    async fn not_found_is_not_cached_and_zero_ttl_never_hits() {
        let cache = Cache::new(Duration::from_secs(60));
        let none = cache
            .item("a", Option::is_some, || async { Ok(None) })
            .await
            .unwrap();
        assert!(none.is_none());
        let some = cache
            .item("a", Option::is_some, || async { Ok(Some(5)) })
            .await
            .unwrap();
        assert_eq!(*some, Some(5));

        let off = Cache::new(Duration::ZERO);
        for _ in 0..2 {
            off.list(|| async { Ok(vec![1]) }).await.unwrap();
        }
        assert_eq!(off.stats.fills.get(), 2);
        assert_eq!(off.stats.hits.get(), 0);
    }
}
