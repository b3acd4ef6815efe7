//! Wake-ups: "a job may be claimable on topic T". In-process for SQLite; for
//! PostgreSQL the driver `NOTIFY`s in the inserting transaction and a listener
//! task feeds every replica's [`Notifier`].

use std::sync::Arc;
use tokio::sync::broadcast;

/// Channel name used with PostgreSQL `LISTEN`/`NOTIFY`.
pub const PG_CHANNEL: &str = "agw_jobs";

/// Fans out topic wake-ups to waiting claimers (long polls, SSE sessions).
///
/// A wake-up is a hint, never a promise: waiters must re-check the store, and
/// must subscribe *before* their first check so no wake-up falls in between.
#[derive(Debug, Clone)]
pub struct Notifier {
    tx: broadcast::Sender<Arc<str>>,
}

impl Default for Notifier {
    fn default() -> Self {
        // Lagging receivers only lose hints; they re-check on `Lagged`.
        let (tx, _) = broadcast::channel(1024);
        Self { tx }
    }
}

impl Notifier {
    /// Announces that a job on `topic` may be claimable.
    pub fn notify(&self, topic: &str) {
        // No receivers is fine: nobody is waiting.
        let _ = self.tx.send(Arc::from(topic));
    }

    /// Subscribes to every topic's wake-ups.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }
}
