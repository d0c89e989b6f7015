//! The service's lifecycle signals: the shutdown trigger and liveness/readiness. They sit below
//! both [`crate::service`] (the processing thread sets them) and the listeners that read them
//! ([`crate::http`], [`crate::check`]), so neither listener imports the service.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A shutdown trigger shared by the signal handler, tests and the processing loop.
#[derive(Clone, Default)]
pub struct Shutdown(Arc<(AtomicBool, tokio::sync::Notify)>);

impl Shutdown {
    /// A trigger not yet pulled.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }
    /// Asks everything to stop (idempotent).
    pub fn trigger(&self) {
        self.0 .0.store(true, Ordering::SeqCst);
        self.0 .1.notify_waiters();
    }
    /// Whether a stop was asked for.
    pub fn is_triggered(&self) -> bool {
        self.0 .0.load(Ordering::SeqCst)
    }
    /// Resolves once triggered.
    pub async fn wait(&self) {
        loop {
            let notified = self.0 .1.notified();
            if self.is_triggered() {
                return;
            }
            notified.await;
        }
    }
}

/// Liveness and readiness, shared between the processing thread and HTTP.
pub struct Health {
    start: Instant,
    beat_ms: AtomicU64,
    ready: AtomicBool,
    state: Mutex<&'static str>,
    stall_after: Duration,
}

impl Health {
    /// Not ready; alive as of now.
    pub fn new(stall_after: Duration) -> Health {
        Health {
            start: Instant::now(),
            beat_ms: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            state: Mutex::new("starting"),
            stall_after,
        }
    }
    /// The processing loop turned.
    pub fn beat(&self) {
        self.beat_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    /// Time since the last beat.
    pub fn since_beat(&self) -> Duration {
        let now = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.beat_ms.load(Ordering::Relaxed)))
    }
    /// Whether the loop is making progress.
    pub fn alive(&self) -> bool {
        self.since_beat() < self.stall_after
    }
    /// Sets readiness, with what the service is doing (for `/readyz`'s body).
    pub fn set(&self, ready: bool, state: &'static str) {
        self.ready.store(ready, Ordering::SeqCst);
        *self.state.lock().expect("health lock") = state;
    }
    /// Whether ready.
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
    /// What the service is doing.
    pub fn state(&self) -> &'static str {
        *self.state.lock().expect("health lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_alive_while_beating_and_ready_only_when_set() {
        let h = Health::new(Duration::from_secs(3600));
        assert!(h.alive() && !h.ready());
        assert_eq!(h.state(), "starting");
        h.set(true, "consuming");
        assert!(h.ready());
        assert_eq!(h.state(), "consuming");
        h.beat();
        assert!(h.alive());
        h.set(false, "rebuilding");
        assert!(!h.ready());
        // No beat for longer than stall_after: not alive (the sleep only ever runs long).
        let stalled = Health::new(Duration::from_millis(10));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!stalled.alive());
        assert!(stalled.since_beat() >= Duration::from_millis(30));
    }

    #[test]
    fn a_shutdown_wakes_every_waiter_even_one_that_comes_late() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let s = Shutdown::new();
        let waiter = {
            let s = s.clone();
            rt.spawn(async move { s.wait().await })
        };
        assert!(!s.is_triggered());
        s.trigger();
        s.trigger();
        rt.block_on(async {
            waiter.await.unwrap();
            s.wait().await;
        });
        assert!(s.is_triggered());
    }
}
