//! The tokio runtimes the gateway runs on and their live task counts, for
//! `wagate_runtime_alive_tasks{runtime}`: one runtime per arbiter (`io`,
//! `control`, `session-<n>`) and `main`, the runtime that started the
//! gateway (the HTTP server's). [`Gateway::start`](crate::Gateway::start)
//! registers them; `Gateway::encode_metrics` reads them at each scrape.
//!
//! `RuntimeMetrics::num_alive_tasks` is stable tokio API (since 1.39), so no
//! `tokio_unstable` build is needed. It counts the tasks a runtime owns
//! (`tokio::spawn`: Redis drivers, timers' tasks, client connections); the
//! futures actix runs on an arbiter's `LocalSet` (the actors themselves) are
//! not among them, so a leak of actors shows in the mailbox and session
//! gauges instead, and a leak of spawned tasks shows here.

use std::sync::Arc;

use actix::prelude::ArbiterHandle;
use parking_lot::Mutex;
use tokio::runtime::Handle;

/// The runtimes registered so far, by name. An arbiter's handle arrives
/// once its thread runs the registering closure, a moment after start.
#[derive(Default)]
pub struct RuntimeTasks {
    /// (name, handle) in registration order; a handle keeps no runtime
    /// alive beyond its thread, so a stopped arbiter only reads 0.
    runtimes: Mutex<Vec<(String, Handle)>>,
}

impl RuntimeTasks {
    /// Registers the runtime of `arbiter` under `name`, from its own thread.
    pub fn watch_arbiter(self: &Arc<Self>, name: String, arbiter: &ArbiterHandle) {
        let me = Arc::clone(self);
        // `false` only when the arbiter has already stopped: nothing to count.
        let _ = arbiter.spawn_fn(move || me.runtimes.lock().push((name, Handle::current())));
    }

    /// Registers the runtime of the calling thread, when it runs in one.
    pub fn watch_current(&self, name: &str) {
        if let Ok(handle) = Handle::try_current() {
            self.runtimes.lock().push((name.to_owned(), handle));
        }
    }

    /// Live tasks per registered runtime, in registration order.
    pub fn counts(&self) -> Vec<(String, usize)> {
        self.runtimes
            .lock()
            .iter()
            .map(|(name, h)| (name.clone(), h.metrics().num_alive_tasks()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::RuntimeTasks;

    #[actix_rt::test]
    async fn an_arbiter_reports_the_tasks_spawned_on_its_runtime() {
        let arbiter = actix::Arbiter::new();
        let tasks = Arc::new(RuntimeTasks::default());
        tasks.watch_current("main");
        tasks.watch_arbiter("io".into(), &arbiter.handle());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        arbiter.spawn_fn(move || {
            tokio::spawn(async move {
                let _ = stopped.await;
            });
        });
        let count_of = |name: &str| {
            tasks
                .counts()
                .into_iter()
                .find(|(n, _)| n == name)
                .map(|(_, c)| c)
        };
        // The arbiter registers from its own thread: poll with a deadline.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while count_of("io") != Some(1) && std::time::Instant::now() < deadline {
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(count_of("io"), Some(1), "{:?}", tasks.counts());
        assert!(count_of("main").is_some());
        drop(stop);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while count_of("io") != Some(0) && std::time::Instant::now() < deadline {
            actix_rt::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(count_of("io"), Some(0));
        arbiter.stop();
    }
}
