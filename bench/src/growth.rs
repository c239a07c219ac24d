//! Does a sampled series grow without bound? The pure core of the soak
//! scenario (`scenarios::soak`): a least-squares slope over the last half of
//! a run, per hour, and a verdict against a stated bound. Unit-tested here;
//! the scenario only samples and reports.
//!
//! The first half is warm-up (caches fill, allocator arenas settle, the
//! message records reach their TTL), so only the last half is judged. A
//! least-squares line is tilted by one spike near the end of the window; a
//! real growth also tilts the median of the pairwise slopes (Theil–Sen), a
//! spike does not. A series fails only when both slopes pass the bound.

/// How much a series may rise over the judged window: `floor` (noise in
/// the series' own unit, which dominates a short CI run) plus `share` of its
/// median (noise proportional to its size) plus `per_hour` × the window's
/// length in hours (a slow drift the hour-long run must still allow).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bound {
    pub floor: f64,
    pub share: f64,
    pub per_hour: f64,
}

impl Bound {
    /// The largest slope, in units per hour, allowed over `window_h` hours
    /// for a series whose median is `median`.
    pub fn allowed_per_hour(&self, window_h: f64, median: f64) -> f64 {
        let window_h = window_h.max(1e-9);
        (self.floor + self.share * median.abs()) / window_h + self.per_hour
    }
}

/// The judgement of one series over the last half of its samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judgement {
    /// Least-squares slope over the last half, units per hour.
    pub slope_per_hour: f64,
    /// Median of the pairwise slopes over the last half, units per hour.
    pub robust_per_hour: f64,
    /// The largest slope allowed for this window and size, units per hour.
    pub allowed_per_hour: f64,
    /// False when both slopes exceed `allowed_per_hour`.
    pub bounded: bool,
}

/// The samples of the last half of the run (by time, not by count), at
/// least two when there are two.
pub fn last_half(points: &[(f64, f64)]) -> &[(f64, f64)] {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return points;
    };
    let middle = (first.0 + last.0) / 2.0;
    let start = points.partition_point(|p| p.0 < middle);
    &points[start.min(points.len().saturating_sub(2))..]
}

/// Least-squares slope of `y` over `x` (units of y per unit of x); `None`
/// for fewer than two distinct x.
pub fn least_squares_slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Theil–Sen slope: the median of the slopes between every pair of points
/// with distinct x; `None` when there is no such pair.
pub fn median_pairwise_slope(points: &[(f64, f64)]) -> Option<f64> {
    let mut slopes = Vec::with_capacity(points.len() * points.len() / 2);
    for (i, a) in points.iter().enumerate() {
        for b in &points[i + 1..] {
            if b.0 != a.0 {
                slopes.push((b.1 - a.1) / (b.0 - a.0));
            }
        }
    }
    median(&mut slopes)
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len() % 2 == 0 {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    })
}

/// Judges `points` — (seconds since the start, value) in time order — over
/// their last half against `bound`; `None` for fewer than two samples there.
pub fn judge(points: &[(f64, f64)], bound: Bound) -> Option<Judgement> {
    let half = last_half(points);
    let per_hour = 3600.0;
    let slope = least_squares_slope(half)? * per_hour;
    let robust = median_pairwise_slope(half)? * per_hour;
    let window_h = (half.last()?.0 - half.first()?.0) / 3600.0;
    let mut ys: Vec<f64> = half.iter().map(|p| p.1).collect();
    let allowed = bound.allowed_per_hour(window_h, median(&mut ys)?);
    Some(Judgement {
        slope_per_hour: slope,
        robust_per_hour: robust,
        allowed_per_hour: allowed,
        bounded: slope <= allowed || robust <= allowed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random noise in [-1, 1] (no rand dependency).
    fn noise(i: usize) -> f64 {
        let x = (i as u64)
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((x >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0
    }

    /// One hour sampled every 10 s: `f(seconds)` plus noise of `amplitude`.
    fn hour(amplitude: f64, f: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
        (0..=360)
            .map(|i| {
                let t = i as f64 * 10.0;
                (t, f(t) + amplitude * noise(i))
            })
            .collect()
    }

    const RSS: Bound = Bound {
        floor: 8.0,
        share: 0.0,
        per_hour: 32.0,
    };

    #[test]
    fn the_slope_of_an_exact_line_is_found() {
        let line: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 * i as f64 + 7.0)).collect();
        assert!((least_squares_slope(&line).unwrap() - 3.0).abs() < 1e-9);
        assert!((median_pairwise_slope(&line).unwrap() - 3.0).abs() < 1e-9);
        assert_eq!(least_squares_slope(&line[..1]), None);
        assert_eq!(least_squares_slope(&[(1.0, 1.0), (1.0, 2.0)]), None);
    }

    #[test]
    fn the_last_half_is_by_time() {
        let points: Vec<(f64, f64)> = (0..=10).map(|i| (i as f64, 0.0)).collect();
        assert_eq!(last_half(&points).first().unwrap().0, 5.0);
        assert_eq!(last_half(&points[..2]).len(), 2);
        assert!(last_half(&[]).is_empty());
    }

    #[test]
    fn a_flat_noisy_series_passes() {
        // 300 MiB ± 6 MiB of allocator noise.
        let j = judge(&hour(6.0, |_| 300.0), RSS).unwrap();
        assert!(j.bounded, "{j:?}");
        assert!(j.slope_per_hour.abs() < 10.0, "{j:?}");
    }

    #[test]
    fn warm_up_growth_in_the_first_half_is_not_judged() {
        // Grows 100 MiB over the first 20 minutes, then flat.
        let j = judge(&hour(2.0, |t| 200.0 + (t.min(1200.0) / 12.0)), RSS).unwrap();
        assert!(j.bounded, "{j:?}");
    }

    #[test]
    fn a_steadily_growing_series_fails() {
        // A leak of 100 MiB/hour under the same noise.
        let j = judge(&hour(6.0, |t| 300.0 + 100.0 * t / 3600.0), RSS).unwrap();
        assert!(!j.bounded, "{j:?}");
        assert!((j.slope_per_hour - 100.0).abs() < 10.0, "{j:?}");
        assert!((j.robust_per_hour - 100.0).abs() < 10.0, "{j:?}");
    }

    #[test]
    fn a_single_spike_does_not_fail() {
        // A two-minute run sampled every 3 s; one sample 60 MiB high near
        // the end (a burst being handled).
        let mut points: Vec<(f64, f64)> = (0..=40)
            .map(|i| (i as f64 * 3.0, 300.0 + 2.0 * noise(i)))
            .collect();
        points[39].1 += 60.0;
        let j = judge(&points, RSS).unwrap();
        assert!(
            j.slope_per_hour > j.allowed_per_hour,
            "the spike tilts the line: {j:?}"
        );
        assert!(j.bounded, "but not the median slope: {j:?}");
    }

    #[test]
    fn a_count_that_must_stay_flat_fails_on_slow_growth_in_a_short_run() {
        // Two minutes every 3 s: one more file descriptor every 3 s.
        let fds = Bound {
            floor: 16.0,
            share: 0.0,
            per_hour: 0.0,
        };
        let leak: Vec<(f64, f64)> = (0..=40)
            .map(|i| (i as f64 * 3.0, 50.0 + i as f64))
            .collect();
        assert!(!judge(&leak, fds).unwrap().bounded);
        let steady: Vec<(f64, f64)> = (0..=40)
            .map(|i| (i as f64 * 3.0, 50.0 + (i % 5) as f64))
            .collect();
        assert!(judge(&steady, fds).unwrap().bounded);
    }

    #[test]
    fn the_allowance_shrinks_per_hour_as_the_window_grows() {
        let b = Bound {
            floor: 10.0,
            share: 0.01,
            per_hour: 5.0,
        };
        // Half an hour, median 1000: (10 + 10) / 0.5 + 5.
        assert!((b.allowed_per_hour(0.5, 1000.0) - 45.0).abs() < 1e-9);
        assert!(b.allowed_per_hour(1.0 / 60.0, 1000.0) > 1000.0);
    }
}
