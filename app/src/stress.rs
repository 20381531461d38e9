//! CPU burner for demonstrating auto scaling: `/info/stress?seconds=N`.
//!
//! The busy loops run on plain OS threads, one per core, so the tokio workers
//! keep serving (slowly, since the cores are shared) while it runs. One run at
//! a time; it is off unless `APP_STRESS_ENABLED=1`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub const MAX_SECONDS: u64 = 600;

#[derive(Debug)]
pub struct Stress {
    enabled: bool,
    running: Arc<AtomicBool>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum StressError {
    Disabled,
    BadSeconds,
    Busy,
    Spawn(String),
}

/// Clears the running flag when the supervisor ends, even by panic.
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl Stress {
    pub fn new(enabled: bool) -> Stress {
        Stress {
            enabled,
            running: Arc::new(AtomicBool::new(false)),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Starts burning every core for `seconds`; returns the number of threads.
    pub fn start(&self, seconds: u64) -> Result<usize, StressError> {
        if !self.enabled {
            return Err(StressError::Disabled);
        }
        if !(1..=MAX_SECONDS).contains(&seconds) {
            return Err(StressError::BadSeconds);
        }
        if self
            .running
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(StressError::Busy);
        }
        let guard = Running(self.running.clone());
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let deadline = Instant::now() + Duration::from_secs(seconds);
        std::thread::Builder::new()
            .name("stress".into())
            .spawn(move || {
                let _guard = guard;
                let workers: Vec<_> = (0..threads)
                    .filter_map(|i| {
                        std::thread::Builder::new()
                            .name(format!("stress-{i}"))
                            .spawn(move || burn(deadline))
                            .ok()
                    })
                    .collect();
                for w in workers {
                    let _ = w.join();
                }
            })
            .map_err(|e| StressError::Spawn(e.to_string()))?;
        Ok(threads)
    }
}

fn burn(deadline: Instant) {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while Instant::now() < deadline {
        for _ in 0..50_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
        }
        std::hint::black_box(x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_and_bounds() {
        assert_eq!(Stress::new(false).start(1), Err(StressError::Disabled));
        let s = Stress::new(true);
        assert_eq!(s.start(0), Err(StressError::BadSeconds));
        assert_eq!(s.start(601), Err(StressError::BadSeconds));
        assert!(!s.running());
    }
}
