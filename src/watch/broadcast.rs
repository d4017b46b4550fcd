//! Fan-out of events to live subscribers (the SSE stream). Each subscriber
//! has a bounded queue; one that falls that far behind is dropped (and
//! counted) rather than slowing the publisher or growing without bound.
//! It can reconnect and catch up from the store by event id.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};

pub struct Broadcast<T> {
    /// Each subscriber's queue, and a marker that dies with its receiver.
    subscribers: Mutex<Vec<(Sender<T>, Weak<()>)>>,
    capacity: usize,
    max_subscribers: usize,
    dropped_subscribers: AtomicU64,
}

/// One subscriber's end: what was published since it subscribed.
pub struct Subscription<T> {
    pub rx: Receiver<T>,
    _alive: Arc<()>,
}

impl<T: Clone> Broadcast<T> {
    pub fn new(capacity: usize, max_subscribers: usize) -> Broadcast<T> {
        Broadcast {
            subscribers: Mutex::new(Vec::new()),
            capacity,
            max_subscribers,
            dropped_subscribers: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(Sender<T>, Weak<()>)>> {
        self.subscribers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new subscriber, or `None` when there are already `max_subscribers`.
    pub fn subscribe(&self) -> Option<Subscription<T>> {
        let mut subs = self.lock();
        subs.retain(|(_, alive)| alive.strong_count() > 0);
        if subs.len() >= self.max_subscribers {
            return None;
        }
        let (tx, rx) = bounded(self.capacity);
        let alive = Arc::new(());
        subs.push((tx, Arc::downgrade(&alive)));
        Some(Subscription { rx, _alive: alive })
    }

    pub fn publish(&self, item: &T) {
        self.lock().retain(|(s, _)| match s.try_send(item.clone()) {
            Ok(()) => true,
            Err(TrySendError::Disconnected(_)) => false,
            Err(TrySendError::Full(_)) => {
                self.dropped_subscribers.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("an event subscriber fell behind and was disconnected");
                false
            }
        });
    }

    pub fn subscribers(&self) -> usize {
        let mut subs = self.lock();
        subs.retain(|(_, alive)| alive.strong_count() > 0);
        subs.len()
    }

    pub fn dropped_subscribers(&self) -> u64 {
        self.dropped_subscribers.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_subscribers_are_dropped_and_the_rest_keep_going() {
        let b = Broadcast::new(2, 3);
        let fast = b.subscribe().unwrap();
        let slow = b.subscribe().unwrap();
        let _third = b.subscribe().unwrap();
        assert!(b.subscribe().is_none(), "at most 3");
        drop(_third);
        for i in 0..3 {
            b.publish(&i);
            assert_eq!(fast.rx.recv().unwrap(), i);
        }
        assert_eq!(b.dropped_subscribers(), 1);
        assert_eq!(slow.rx.try_iter().collect::<Vec<_>>(), vec![0, 1]);
        assert!(slow.rx.recv().is_err(), "disconnected");
        assert_eq!(b.subscribers(), 1);
    }
}
