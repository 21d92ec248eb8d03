//! Sign-in throttling: after a few free failures, each further failure blocks the account
//! (or client address) for twice as long as the previous one, up to a ceiling. Failures are
//! forgotten after a quiet period.

use chrono::{DateTime, TimeDelta, Utc};

use crate::store::login_failures::Failures;

/// Exponential backoff for one scope.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Failures allowed before any block.
    pub free: i32,
    /// Block after the first failure past the free ones; doubles with each further one.
    pub base: TimeDelta,
    pub ceiling: TimeDelta,
    /// Failures older than this no longer count.
    pub decay: TimeDelta,
}

impl Backoff {
    /// Until when sign-ins are refused after `failures`, if they are.
    pub(crate) fn blocked_until(&self, failures: Failures, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if failures.count < self.free || now - failures.last_at > self.decay {
            return None;
        }
        let doublings = u32::try_from(failures.count - self.free).unwrap_or(0).min(20);
        let block = self.base.checked_mul(1 << doublings).unwrap_or(self.ceiling).min(self.ceiling);
        let until = failures.last_at + block;
        (until > now).then_some(until)
    }
}

/// Backoff per account (keyed by the normalised email, whether or not the account exists)
/// and per client address (one address trying many accounts).
#[derive(Debug, Clone, Copy)]
pub struct ThrottlePolicy {
    pub account: Backoff,
    pub client: Backoff,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            account: Backoff {
                free: 5,
                base: TimeDelta::seconds(30),
                ceiling: TimeDelta::minutes(15),
                decay: TimeDelta::hours(1),
            },
            client: Backoff {
                free: 20,
                base: TimeDelta::seconds(10),
                ceiling: TimeDelta::minutes(15),
                decay: TimeDelta::hours(1),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_double_after_the_free_failures_up_to_the_ceiling() {
        let policy = ThrottlePolicy::default().account;
        let now = Utc::now();
        let after = |count| policy.blocked_until(Failures { count, last_at: now }, now).map(|until| until - now);
        assert_eq!(after(4), None);
        assert_eq!(after(5), Some(TimeDelta::seconds(30)));
        assert_eq!(after(6), Some(TimeDelta::seconds(60)));
        assert_eq!(after(7), Some(TimeDelta::seconds(120)));
        assert_eq!(after(40), Some(TimeDelta::minutes(15)));
    }

    #[test]
    fn a_block_ends_and_old_failures_are_forgotten() {
        let policy = ThrottlePolicy::default().account;
        let then = Utc::now();
        let failures = Failures { count: 6, last_at: then };
        assert!(policy.blocked_until(failures, then + TimeDelta::seconds(59)).is_some());
        assert!(policy.blocked_until(failures, then + TimeDelta::seconds(61)).is_none());
        let many = Failures { count: 30, last_at: then };
        assert!(policy.blocked_until(many, then + TimeDelta::hours(2)).is_none());
    }
}
