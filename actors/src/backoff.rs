//! Exponential backoff, shared by every retry loop: the Laravel client's
//! retries, the message queue's retries and the registry's restarts.

use std::time::Duration;

use rand::Rng;

/// `base · 2^exponent`, capped at `max`.
pub fn capped(base: Duration, max: Duration, exponent: u32) -> Duration {
    base.saturating_mul(1u32.checked_shl(exponent).unwrap_or(u32::MAX))
        .min(max)
}

/// [`capped`] with equal jitter: half fixed, half random, so retries of
/// many callers spread out instead of arriving together.
pub fn equal_jitter(base: Duration, max: Duration, exponent: u32) -> Duration {
    equal_jitter_from(base, max, exponent, rand::rng().random::<f64>())
}

/// [`equal_jitter`] with the random part given (`unit` in `[0, 1)`), for
/// callers that inject their randomness so tests know the delay.
pub fn equal_jitter_from(base: Duration, max: Duration, exponent: u32, unit: f64) -> Duration {
    let half = capped(base, max, exponent) / 2;
    half + half.mul_f64(unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_jitters_within_half() {
        let ms = Duration::from_millis;
        assert_eq!(capped(ms(100), ms(1000), 0), ms(100));
        assert_eq!(capped(ms(100), ms(1000), 3), ms(800));
        assert_eq!(capped(ms(100), ms(1000), 40), ms(1000));
        for n in 0..6 {
            let d = equal_jitter(ms(100), ms(1000), n);
            let full = capped(ms(100), ms(1000), n);
            assert!(d >= full / 2 && d <= full, "{d:?} for {full:?}");
        }
    }
}
