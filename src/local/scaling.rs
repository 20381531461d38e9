//! Target tracking as AWS runs it for `ASGAverageCPUUtilization`, on the local
//! instances' processes: the group's average CPU against the policy's target, out
//! fast (the metric above target for one window), in slowly (below 90 % of the target
//! for five windows in a row), the new size proportional to the load and kept within
//! min/max.

/// A group's scaling state between samples.
#[derive(Debug, Default, Clone)]
pub struct Tracker {
    /// Windows in a row the metric has been low enough to scale in.
    low_windows: u32,
}

/// What one window's sample asks of the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Stay,
    To(i32),
}

/// Windows below target before scaling in (AWS waits 15 minutes of low datapoints).
pub const SCALE_IN_WINDOWS: u32 = 5;

impl Tracker {
    /// One window: `average` CPU (percent) over `current` instances, `target` the
    /// policy's value.
    pub fn sample(
        &mut self,
        average: f64,
        target: f64,
        current: i32,
        min: i32,
        max: i32,
    ) -> Decision {
        if current <= 0 || target <= 0.0 {
            return Decision::Stay;
        }
        // The size that would bring the average to the target.
        let wanted = ((current as f64) * average / target).ceil() as i32;
        if average > target && wanted > current {
            self.low_windows = 0;
            let to = wanted.clamp(min, max);
            return if to > current {
                Decision::To(to)
            } else {
                Decision::Stay
            };
        }
        if average < target * 0.9 {
            self.low_windows += 1;
            if self.low_windows >= SCALE_IN_WINDOWS {
                self.low_windows = 0;
                // One at a time, as cautious as AWS's scale-in.
                let to = (wanted.max(current - 1)).clamp(min, max);
                if to < current {
                    return Decision::To(to);
                }
            }
        } else {
            self.low_windows = 0;
        }
        Decision::Stay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_out_at_once_in_proportion_and_within_max() {
        let mut t = Tracker::default();
        assert_eq!(t.sample(100.0, 50.0, 2, 2, 6), Decision::To(4));
        assert_eq!(t.sample(100.0, 20.0, 2, 2, 6), Decision::To(6));
        assert_eq!(t.sample(40.0, 50.0, 2, 2, 6), Decision::Stay);
    }

    #[test]
    fn scales_in_one_at_a_time_after_low_windows_and_never_below_min() {
        let mut t = Tracker::default();
        for _ in 1..SCALE_IN_WINDOWS {
            assert_eq!(t.sample(1.0, 50.0, 4, 2, 6), Decision::Stay);
        }
        assert_eq!(t.sample(1.0, 50.0, 4, 2, 6), Decision::To(3));
        // A busy window in between starts the count again.
        for _ in 1..SCALE_IN_WINDOWS {
            t.sample(1.0, 50.0, 3, 2, 6);
        }
        t.sample(48.0, 50.0, 3, 2, 6);
        assert_eq!(t.sample(1.0, 50.0, 3, 2, 6), Decision::Stay);
        let mut t = Tracker::default();
        for _ in 0..SCALE_IN_WINDOWS * 2 {
            assert_eq!(t.sample(1.0, 50.0, 2, 2, 6), Decision::Stay);
        }
    }
}
