//! The replica's background tasks (outbox relay, hold expiry, retention sweeper, key refresh,
//! rate-limit cleanup), watched: one that panics, or ends before shutdown asked it to, is logged
//! at ERROR and turns readiness DOWN naming it, rather than its `JoinError` being dropped. A
//! replica whose sweeper died keeps answering but stops expiring holds; taken out of traffic, it
//! gets restarted by whoever watches readiness instead of silently drifting.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct BackgroundTasks {
    /// Cancelled at shutdown: the tasks' signal to finish, after which ending is expected.
    stop: CancellationToken,
    /// The watchers, one per task.
    watchers: TaskTracker,
    /// Task → why it stopped, for each that stopped on its own.
    failed: Mutex<BTreeMap<&'static str, String>>,
}

impl Default for BackgroundTasks {
    fn default() -> Self {
        Self {
            stop: CancellationToken::new(),
            watchers: TaskTracker::new(),
            failed: Mutex::new(BTreeMap::new()),
        }
    }
}

impl BackgroundTasks {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// The token the tasks stop on.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Run `task` in the background as `name`, watched.
    pub fn spawn<F>(self: &Arc<Self>, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.watch(name, tokio::spawn(task));
    }

    /// Watch a task spawned elsewhere.
    pub fn watch(self: &Arc<Self>, name: &'static str, handle: JoinHandle<()>) {
        let this = self.clone();
        self.watchers.spawn(async move {
            let outcome = handle.await;
            this.ended(name, outcome);
        });
    }

    fn ended(&self, name: &'static str, outcome: Result<(), JoinError>) {
        let reason = match outcome {
            Ok(()) if self.stop.is_cancelled() => return,
            Ok(()) => "ended unexpectedly".to_owned(),
            Err(e) if e.is_panic() => format!("panicked: {}", panic_message(e.into_panic())),
            Err(e) => format!("was cancelled: {e}"),
        };
        tracing::error!(task = name, %reason, "background task stopped");
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, reason);
    }

    /// Each task that stopped on its own, with why (empty while all run).
    pub fn failed(&self) -> BTreeMap<&'static str, String> {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Tell every task to finish and wait until all have.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        self.watchers.close();
        self.watchers.wait().await;
    }
}

/// The text of a panic's payload (`panic!` gives a `&str` or a `String`).
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| "(no message)".to_owned(), |s| (*s).to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_or_ending_task_is_reported_and_a_stopped_one_is_not() {
        let tasks = BackgroundTasks::new();
        tasks.spawn("boom", async { panic!("sweeper fell over") });
        tasks.spawn("quits", async {});
        let stop = tasks.stop_token();
        tasks.spawn("obeys", async move { stop.cancelled().await });
        let until = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while tasks.failed().len() < 2 && tokio::time::Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        tasks.shutdown().await;
        let failed = tasks.failed();
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert_eq!(failed["boom"], "panicked: sweeper fell over");
        assert_eq!(failed["quits"], "ended unexpectedly");
    }
}
