//! The SQLite threads: a [`Worker`] owns one connection and runs queued
//! operations; the writer batches them into group commits (each operation in
//! its own savepoint) and answers after the commit.

use super::*;

/// Most operations one group commit takes.
pub(super) const MAX_BATCH: usize = 256;

/// Operations waiting for a thread at most; beyond, callers get
/// [`StoreError::Unavailable`] (a `503`) instead of an ever longer queue.
pub(super) const MAX_QUEUED: usize = 8192;

pub(super) type Task =
    Box<dyn FnOnce(&Connection) -> Box<dyn FnOnce(Result<(), String>) + Send> + Send>;

/// A thread owning one connection, fed by a queue.
#[derive(Debug, Clone)]
pub(super) struct Worker {
    tx: mpsc::Sender<Task>,
}

impl Worker {
    /// Starts the thread. `batched`: wrap each drained batch in one transaction.
    pub(super) fn spawn(name: &str, conn: Connection, batched: bool) -> StoreResult<Self> {
        let (tx, mut rx) = mpsc::channel::<Task>(MAX_QUEUED);
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let mut batch = Vec::with_capacity(MAX_BATCH);
                while let Some(first) = rx.blocking_recv() {
                    batch.push(first);
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(t) => batch.push(t),
                            Err(_) => break,
                        }
                    }
                    if !batched {
                        for task in batch.drain(..) {
                            task(&conn)(Ok(()));
                        }
                        continue;
                    }
                    // If BEGIN fails (another process holds the lock past the
                    // busy timeout), the tasks are dropped unrun: their callers
                    // get an error and nothing was written.
                    let begun = conn.execute_batch("BEGIN IMMEDIATE").map_err(|e| e.to_string());
                    let replies: Vec<_> = match &begun {
                        Ok(()) => batch.drain(..).map(|task| task(&conn)).collect(),
                        Err(e) => {
                            tracing::error!(error = %e, dropped = batch.len(), "sqlite BEGIN failed");
                            batch.clear();
                            Vec::new()
                        }
                    };
                    let committed = begun.and_then(|()| {
                        conn.execute_batch("COMMIT").map_err(|e| {
                            let _ = conn.execute_batch("ROLLBACK");
                            e.to_string()
                        })
                    });
                    for reply in replies {
                        reply(committed.clone());
                    }
                }
            })
            .map_err(|e| StoreError::InvalidUrl(format!("cannot start the SQLite {name} thread: {e}")))?;
        Ok(Self { tx })
    }

    /// Runs `f` on the thread and resolves once its transaction committed. On
    /// the writer, `f` runs inside a savepoint so its partial writes vanish if
    /// it fails without touching its neighbours in the group commit.
    pub(super) async fn run<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.submit(f, true).await
    }

    /// [`Worker::run`] for an `f` that executes exactly one writing
    /// statement: a statement is atomic by itself, so no savepoint is needed.
    pub(super) async fn run_one<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        self.submit(f, false).await
    }

    pub(super) async fn submit<T, F>(&self, f: F, isolate: bool) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        let (reply_tx, reply_rx) = oneshot::channel::<StoreResult<T>>();
        let task: Task = Box::new(move |conn: &Connection| {
            let result = if isolate && !conn.is_autocommit() {
                savepoint(conn, f)
            } else {
                f(conn)
            };
            Box::new(move |committed: Result<(), String>| {
                let out = match committed {
                    Ok(()) => result,
                    Err(e) => Err(StoreError::Unavailable(format!("commit failed: {e}"))),
                };
                let _ = reply_tx.send(out);
            })
        });
        self.tx.try_send(task).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                StoreError::Unavailable(format!("{MAX_QUEUED} store operations already queued"))
            }
            mpsc::error::TrySendError::Closed(_) => {
                StoreError::Unavailable("the SQLite thread has stopped".into())
            }
        })?;
        reply_rx.await.map_err(|_| {
            StoreError::Unavailable("the SQLite thread dropped the request (BEGIN failed)".into())
        })?
    }
}

/// Runs `f` in a savepoint: its writes are kept only if it succeeds.
pub(super) fn savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> StoreResult<T>,
) -> StoreResult<T> {
    exec(conn, "SAVEPOINT op", &[])?;
    let r = f(conn);
    if r.is_err() {
        exec(conn, "ROLLBACK TO op", &[])?;
    }
    exec(conn, "RELEASE op", &[])?;
    r
}
