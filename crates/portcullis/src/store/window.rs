//! Fixed-window counting for quotas, shared by every
//! [`super::CounterStore`]: windows are aligned to the epoch, so every
//! instance and every backend agrees on where one ends (`lua/quota.lua`
//! computes the same index). Here, not in [`crate::ratelimit`], for the same
//! reason as [`super::gcra`]: it is part of the store contract.

/// The window `now` (µs) falls in and when it ends.
pub fn bounds(now: u64, period_us: u64) -> (u64, u64) {
    let period = period_us.max(1);
    let index = now / period;
    (index, (index + 1) * period)
}
