//! A setting that a configuration reload (`SIGHUP`) may replace while listeners run: they
//! read it once per new connection, which keeps it to its end. Shared by the RTMP and SRT
//! listeners (their limits and the pacing of publishers).

use std::sync::{Arc, RwLock};

/// A value shared by a listener and whoever reloads the configuration. Cheap to clone; clones
/// share the value. A std `RwLock`: read once per accepted connection (a copy is taken),
/// written once per reload, never held across an `.await`.
#[derive(Debug, Clone, Default)]
pub struct Reloadable<T>(Arc<RwLock<T>>);

impl<T: Clone> Reloadable<T> {
    /// A shared `value`.
    pub fn new(value: T) -> Self {
        Reloadable(Arc::new(RwLock::new(value)))
    }

    /// The current value (a copy).
    pub fn get(&self) -> T {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces it for the connections accepted from now on.
    pub fn set(&self, value: T) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = value;
    }
}

impl<T: Clone> From<T> for Reloadable<T> {
    fn from(value: T) -> Self {
        Reloadable::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_value() {
        let a = Reloadable::new(1);
        let b = a.clone();
        b.set(2);
        assert_eq!(a.get(), 2);
    }
}
