//! The one retry backoff: exponential from a first delay, capped, with
//! jitter so that many retrying loops (pollers, webhook deliveries) do not
//! retry in lockstep.

use std::time::Duration;

/// The delay before retry number `attempt` (1 for the first retry):
/// `initial * 2^(attempt-1)`, at most `max`, then between 50% and 100% of
/// that at random (never zero, never above the cap).
pub fn jittered(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let exp = initial.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = exp.min(max);
    let mut b = [0u8; 4];
    let jitter = if getrandom::fill(&mut b).is_ok() {
        f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX)
    } else {
        0.5
    };
    capped.mul_f64(0.5 + jitter / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_stays_within_half_of_it() {
        let (initial, max) = (Duration::from_secs(1), Duration::from_secs(60));
        for (attempt, full) in [(1, 1), (2, 2), (3, 4), (7, 60), (40, 60)] {
            let d = jittered(initial, max, attempt);
            let full = Duration::from_secs(full);
            assert!(
                d >= full / 2 && d <= full,
                "attempt {attempt}: {d:?} not in [{:?}, {full:?}]",
                full / 2
            );
        }
    }
}
