//! The one credentials cache: a value with an expiry, reused until `margin` before it. Used for Azure tokens and
//! for AWS credentials that carry an `Expiration`. Every time sum is checked: an expiry past what `SystemTime` can
//! hold is kept as "never" (`None`), and a margin too long to add to now makes nothing fresh.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

pub(crate) struct Cache<T> {
    slot: Mutex<Option<(T, Option<SystemTime>)>>,
}

impl<T: Clone> Cache<T> {
    pub fn new() -> Cache<T> {
        Cache { slot: Mutex::new(None) }
    }

    /// The cached value, if it expires more than `margin` from now.
    pub fn get(&self, margin: Duration) -> Option<T> {
        let slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let (value, expires) = slot.as_ref()?;
        let fresh = match expires {
            None => true,
            Some(expires) => SystemTime::now().checked_add(margin).is_some_and(|refresh_at| refresh_at < *expires),
        };
        fresh.then(|| value.clone())
    }

    /// Keeps `value` until `expires`, or for good when `None` (an expiry past what `SystemTime` holds). The old
    /// value, if any, is dropped: wiped if `T` wipes itself.
    pub fn put(&self, value: T, expires: Option<SystemTime>) {
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some((value, expires));
    }

    pub fn clear(&self) {
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_expire_margin_early() {
        let cache = Cache::new();
        assert_eq!(cache.get(Duration::ZERO), None::<u8>);
        cache.put(1u8, Some(SystemTime::now() + Duration::from_secs(60)));
        assert_eq!(cache.get(Duration::from_secs(30)), Some(1));
        assert_eq!(cache.get(Duration::from_secs(90)), None, "inside the margin");
        cache.put(2, Some(SystemTime::now() - Duration::from_secs(1)));
        assert_eq!(cache.get(Duration::ZERO), None, "expired");
        cache.put(3, Some(SystemTime::now() + Duration::from_secs(60)));
        cache.clear();
        assert_eq!(cache.get(Duration::ZERO), None);
    }

    #[test]
    fn margins_and_expiries_at_the_edges_of_time_never_panic() {
        let cache = Cache::new();
        cache.put(1u8, Some(SystemTime::now() + Duration::from_secs(60)));
        assert_eq!(cache.get(Duration::MAX), None, "a margin past the end of time: always refetched");
        assert_eq!(cache.get(Duration::from_nanos(1)), Some(1));
        cache.put(2, None);
        assert_eq!(cache.get(Duration::MAX), Some(2), "never expires");
        assert_eq!(cache.get(Duration::ZERO), Some(2));
    }
}
