//! The GCRA decision (generic cell rate algorithm), shared by every
//! [`super::CounterStore`]: the reference a backend's `check` must equal.
//!
//! Per key, one number: the theoretical arrival time (TAT), in integer
//! *microseconds*, so the in-memory backend and the Redis script
//! (`lua/gcra.lua`, this function line by line; Lua numbers are doubles:
//! integers are exact below 2^53 µs ≈ 285 years) agree exactly. It lives
//! with the stores rather than in [`crate::ratelimit`] because it *is* the
//! store contract: a backend written outside the crate calls [`check`] (or
//! reimplements it, as the Lua script does) and the conformance suite
//! compares its answers to this function. Written by hand rather than taken
//! from `governor` because governor keeps its state private and cannot share
//! one definition with a Lua script; the algorithm itself is ten lines.

/// Result of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is within the limit.
    pub allowed: bool,
    /// Requests still allowed right now after this one.
    pub remaining: u32,
    /// Microseconds until the caller may retry (0 when allowed).
    pub retry_after_us: u64,
    /// Microseconds until the bucket is full again.
    pub reset_us: u64,
    /// The TAT to store (unchanged when refused).
    pub new_tat: u64,
}

/// `tat` is the stored theoretical arrival time (0 = none), `now` the
/// clock, both in µs; `count` per `period_us`. The Redis script
/// (`store/lua/gcra.lua`) is this function line by line.
pub fn check(tat: u64, now: u64, count: u32, period_us: u64) -> Decision {
    let count = count.max(1) as u64;
    let interval = (period_us / count).max(1);
    let tolerance = interval * count; // the whole burst
    let tat = tat.max(now);
    let new_tat = tat + interval;
    let allow_at = new_tat.saturating_sub(tolerance);
    if now < allow_at {
        return Decision {
            allowed: false,
            remaining: 0,
            retry_after_us: allow_at - now,
            reset_us: tat - now,
            new_tat: tat,
        };
    }
    let used = new_tat - now;
    Decision {
        allowed: true,
        remaining: ((tolerance - used) / interval) as u32,
        retry_after_us: 0,
        reset_us: used,
        new_tat,
    }
}

#[cfg(test)]
mod tests {
    use super::check;

    const S: u64 = 1_000_000;

    /// Conformance table: 5 per 5 s (burst 5, one token per second).
    #[test]
    fn gcra_conformance() {
        let (count, period) = (5, 5 * S);
        let mut tat = 0;
        let t0 = 1_000 * S;
        // (offset µs, allowed, remaining, retry_after_s ceil)
        let table: &[(u64, bool, u32, u64)] = &[
            (0, true, 4, 0),
            (0, true, 3, 0),
            (0, true, 2, 0),
            (0, true, 1, 0),
            (0, true, 0, 0),
            (0, false, 0, 1),
            (S / 2, false, 0, 1),
            (S, true, 0, 0),
            (S, false, 0, 1),
            (3 * S, true, 1, 0),
            (10 * S, true, 4, 0),
        ];
        for (i, (off, allowed, remaining, retry)) in table.iter().enumerate() {
            let d = check(tat, t0 + off, count, period);
            assert_eq!(d.allowed, *allowed, "step {i}");
            assert_eq!(d.remaining, *remaining, "step {i}");
            assert_eq!(d.retry_after_us.div_ceil(S), *retry, "step {i}");
            tat = d.new_tat;
        }
    }
}
