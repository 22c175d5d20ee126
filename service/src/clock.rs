//! The one place that reads the wall clock. Logic takes a `&dyn Clock` (or a `now`) so tests control
//! time; `clippy.toml` forbids `Utc::now` everywhere else.

use chrono::{DateTime, Duration, DurationRound, Utc};
use std::sync::Mutex;

pub trait Clock: Send + Sync + 'static {
    /// Now, truncated to microseconds (the precision PostgreSQL stores), so a value written and read
    /// back compares equal — the audit chain hashes timestamps and depends on it.
    fn now(&self) -> DateTime<Utc>;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)]
    fn now(&self) -> DateTime<Utc> {
        truncate_micros(Utc::now())
    }
}

/// A clock that only moves when told to: for tests of timeouts, throttling and TOTP windows.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock(Mutex::new(truncate_micros(start)))
    }
    /// Starts at the real current time.
    pub fn starting_now() -> Self {
        Self::new(SystemClock.now())
    }
    pub fn advance(&self, by: Duration) {
        if let Ok(mut t) = self.0.lock() {
            *t += by;
        }
    }
    pub fn set(&self, to: DateTime<Utc>) {
        if let Ok(mut t) = self.0.lock() {
            *t = truncate_micros(to);
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        match self.0.lock() {
            Ok(t) => *t,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }
}

pub fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::microseconds(1)).unwrap_or(t)
}
