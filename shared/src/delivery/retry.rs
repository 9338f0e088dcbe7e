//! When to try again: exponential backoff with full jitter, bounded by the time the
//! invocation has left. Pure, so the decision is tested as a table.

use std::time::Duration;

/// First backoff ceiling; doubles per attempt.
pub const BASE_DELAY: Duration = Duration::from_millis(500);
/// Largest wait between two attempts, as mature shippers do (Vector, Fluent Bit).
pub const MAX_DELAY: Duration = Duration::from_secs(30);
/// Time an attempt needs to be worth starting: a connect plus a small push.
pub const MIN_ATTEMPT_TIME: Duration = Duration::from_secs(2);

/// The wait before attempt `attempt + 1` (attempts count from 1), or `None` to give up
/// because the wait and one more attempt would not fit in `remaining`.
///
/// `jitter` is a uniform random number in `[0, 1)`, passed in to keep this function pure.
/// A destination's `Retry-After` replaces the computed wait, capped at [`MAX_DELAY`].
pub fn next_delay(
    attempt: u32,
    retry_after: Option<Duration>,
    remaining: Duration,
    jitter: f64,
) -> Option<Duration> {
    let delay = match retry_after {
        Some(wait) => wait.min(MAX_DELAY),
        None => doubling(BASE_DELAY, attempt, MAX_DELAY).mul_f64(jitter.clamp(0.0, 1.0)),
    };
    (delay + MIN_ATTEMPT_TIME <= remaining).then_some(delay)
}

/// The delay of a requeued copy after `attempts` failed attempts: `base` doubling per
/// attempt, at most SQS's 900 s, with equal jitter (half fixed, half random) so that copies
/// of one outage do not all come back at once yet never come back at once either.
pub fn requeue_delay(attempts: u32, base: Duration, jitter: f64) -> Duration {
    let ceiling = doubling(base, attempts, crate::event_queue::MAX_DELAY);
    ceiling / 2 + (ceiling / 2).mul_f64(jitter.clamp(0.0, 1.0))
}

/// `base` doubled for each attempt after the first, at most `cap`.
fn doubling(base: Duration, attempt: u32, cap: Duration) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLENTY: Duration = Duration::from_secs(600);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_ceiling_doubles_per_attempt_up_to_the_cap() {
        let table = [
            (1, ms(500)),
            (2, ms(1000)),
            (3, ms(2000)),
            (6, ms(16_000)),
            (7, ms(30_000)),
            (40, ms(30_000)),
        ];
        for (attempt, ceiling) in table {
            // Just below 1.0 the wait approaches the ceiling; at 0 it is immediate.
            let near_max = next_delay(attempt, None, PLENTY, 0.999_999).unwrap();
            assert!(
                near_max <= ceiling && near_max + ms(1) >= ceiling,
                "{attempt}: {near_max:?}"
            );
            assert_eq!(next_delay(attempt, None, PLENTY, 0.0), Some(Duration::ZERO));
        }
    }

    #[test]
    fn full_jitter_scales_the_ceiling() {
        assert_eq!(next_delay(3, None, PLENTY, 0.5), Some(ms(1000)));
    }

    #[test]
    fn retry_after_wins_but_is_capped() {
        let table = [
            (Duration::from_secs(3), Some(Duration::from_secs(3))),
            (Duration::from_secs(300), Some(MAX_DELAY)),
        ];
        for (retry_after, expected) in table {
            assert_eq!(next_delay(1, Some(retry_after), PLENTY, 0.0), expected);
        }
    }

    #[test]
    fn gives_up_when_the_wait_and_an_attempt_do_not_fit_the_deadline() {
        let table = [
            // (remaining, jitter, retry_after, retries?)
            (Duration::from_secs(10), 0.5, None, true),
            (ms(2_249), 0.5, None, false), // 250 ms wait + 2 s attempt = 2.25 s
            (ms(2_250), 0.5, None, true),
            (
                Duration::from_secs(4),
                0.0,
                Some(Duration::from_secs(3)),
                false,
            ),
            (Duration::ZERO, 0.0, None, false),
        ];
        for (remaining, jitter, retry_after, retries) in table {
            assert_eq!(
                next_delay(1, retry_after, remaining, jitter).is_some(),
                retries,
                "{remaining:?} {jitter} {retry_after:?}"
            );
        }
    }

    #[test]
    fn requeued_copies_wait_longer_after_each_attempt_up_to_sqs_maximum() {
        let base = Duration::from_secs(30);
        let table = [
            (1, 0.0, 15),
            (1, 1.0, 30),
            (2, 0.0, 30),
            (3, 0.5, 90),
            (5, 1.0, 480),
            (6, 1.0, 900),
            (40, 0.0, 450),
        ];
        for (attempts, jitter, seconds) in table {
            assert_eq!(
                requeue_delay(attempts, base, jitter),
                Duration::from_secs(seconds),
                "{attempts} {jitter}"
            );
        }
        assert_eq!(requeue_delay(3, Duration::ZERO, 0.7), Duration::ZERO);
    }
}
