//! [`Slots`]: a count of things allowed at once that a reload can change: the client connections
//! the accept loop holds open (`server.max_connections`) and the jobs a process runs at once
//! (`jobs.workers`). A semaphore whose permits are added on growth; on shrinking, free permits are
//! taken out at once and the rest as the holders give theirs back (nothing running is stopped).

use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Slots {
    sem: Arc<Semaphore>,
    size: Mutex<usize>,
}

impl Slots {
    pub fn new(size: usize) -> Self {
        let size = size.max(1);
        Self {
            sem: Arc::new(Semaphore::new(size)),
            size: Mutex::new(size),
        }
    }

    /// Wait for a free slot (held until the permit is dropped).
    pub async fn acquire(&self) -> OwnedSemaphorePermit {
        loop {
            // The semaphore is never closed.
            if let Ok(p) = self.sem.clone().acquire_owned().await {
                return p;
            }
        }
    }

    /// A free slot now, if there is one.
    pub fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.sem.clone().try_acquire_owned().ok()
    }

    /// The size last set.
    pub fn size(&self) -> usize {
        self.size.lock().map_or(1, |s| *s)
    }

    /// Change the size; slots in use stay in use until they are given back.
    pub fn resize(&self, new: usize) {
        let new = new.max(1);
        let Ok(mut size) = self.size.lock() else {
            return;
        };
        let old = std::mem::replace(&mut *size, new);
        drop(size);
        if new > old {
            self.sem.add_permits(new - old);
        } else if new < old {
            let excess = old - new;
            let rest = excess - self.sem.forget_permits(excess);
            if rest > 0 {
                let sem = self.sem.clone();
                let rest = u32::try_from(rest).unwrap_or(u32::MAX);
                crate::tasks::spawn(async move {
                    if let Ok(p) = sem.acquire_many_owned(rest).await {
                        p.forget();
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn grows_at_once_and_shrinks_as_slots_are_given_back() {
        let slots = Slots::new(2);
        let a = slots.acquire().await;
        let b = slots.acquire().await;
        assert!(slots.try_acquire().is_none());
        slots.resize(3);
        let c = slots.try_acquire().expect("grown by one");
        slots.resize(1);
        assert_eq!(slots.size(), 1);
        drop(a);
        drop(b);
        tokio::task::yield_now().await;
        assert!(slots.try_acquire().is_none(), "still 1 in use of 1");
        drop(c);
        tokio::task::yield_now().await;
        let d = slots.try_acquire().expect("one slot");
        assert!(slots.try_acquire().is_none());
        drop(d);
    }
}
