//! The one credentials cache: a value with an expiry, reused until `margin` before it. Used for Azure tokens and
//! for AWS credentials that carry an `Expiration`.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

pub(crate) struct Cache<T> {
    slot: Mutex<Option<(T, SystemTime)>>,
}

impl<T: Clone> Cache<T> {
    pub fn new() -> Cache<T> {
        Cache { slot: Mutex::new(None) }
    }

    /// The cached value, if it expires more than `margin` from now.
    pub fn get(&self, margin: Duration) -> Option<T> {
        let slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let (value, expires) = slot.as_ref()?;
        (SystemTime::now() + margin < *expires).then(|| value.clone())
    }

    /// Keeps `value` until `expires` (the old value, if any, is dropped: wiped if `T` wipes itself).
    pub fn put(&self, value: T, expires: SystemTime) {
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
        cache.put(1u8, SystemTime::now() + Duration::from_secs(60));
        assert_eq!(cache.get(Duration::from_secs(30)), Some(1));
        assert_eq!(cache.get(Duration::from_secs(90)), None, "inside the margin");
        cache.put(2, SystemTime::now() - Duration::from_secs(1));
        assert_eq!(cache.get(Duration::ZERO), None, "expired");
        cache.put(3, SystemTime::now() + Duration::from_secs(60));
        cache.clear();
        assert_eq!(cache.get(Duration::ZERO), None);
    }
}
