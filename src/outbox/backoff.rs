//! When to try a queued study again: exponential backoff with jitter, capped.

use std::time::Duration;

/// The first pause after a failed attempt.
const FIRST: Duration = Duration::from_secs(2);

/// The pause after `attempts` failed attempts: 2 s, 4 s, 8 s... up to `cap`, each drawn
/// between half and all of that (jitter), so boxes and studies that failed together do not
/// all come back at the same moment.
pub fn delay(attempts: u32, cap: Duration) -> Duration {
    let exponent = attempts.saturating_sub(1).min(20);
    let full = FIRST.saturating_mul(1u32 << exponent).min(cap);
    let fraction = 0.5 + 0.5 * random_unit();
    full.mul_f64(fraction)
}

/// A number in [0, 1).
fn random_unit() -> f64 {
    let bits = getrandom::u64().unwrap_or(0x9E37_79B9_7F4A_7C15);
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_doubles_and_stops_at_the_cap() {
        let cap = Duration::from_secs(300);
        for (attempts, full) in [(1, 2), (2, 4), (3, 8), (8, 256), (9, 300), (40, 300)] {
            for _ in 0..50 {
                let d = delay(attempts, cap);
                let full = Duration::from_secs(full);
                assert!(d >= full / 2 && d <= full, "attempt {attempts}: {d:?}");
            }
        }
        assert!(delay(3, Duration::from_secs(1)) <= Duration::from_secs(1));
    }

    #[test]
    fn jitter_spreads_the_pauses() {
        let cap = Duration::from_secs(300);
        let mut seen: Vec<Duration> = (0..20).map(|_| delay(5, cap)).collect();
        seen.sort();
        seen.dedup();
        assert!(seen.len() > 10, "{seen:?}");
    }
}
