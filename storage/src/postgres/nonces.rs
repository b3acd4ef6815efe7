//! Nonce records, group-committed: every signed request records its nonce
//! before it is served, and concurrent requests' records share one
//! multi-row `INSERT` (on the pool whose sessions commit with
//! `synchronous_commit = off`, see [`super::PgStore::connect`]). One task
//! sends a statement for everything queued while the previous one was on
//! its way; each request learns whether its nonce was new.

use std::collections::HashSet;

use tokio::sync::{mpsc, oneshot};

use super::pool::Db;
use crate::{StoreError, StoreResult};

/// Most records one statement carries.
const MAX_BATCH: usize = 256;

/// One statement for a batch; returns the records it inserted (the others
/// were there already: replays).
const NONCES_INSERT: &str = "INSERT INTO nonces (key_id, nonce, expires_at)
    SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[])
    ON CONFLICT (key_id, nonce) DO NOTHING
    RETURNING key_id, nonce";

type Reply = oneshot::Sender<StoreResult<bool>>;

/// One queued record.
#[derive(Debug)]
struct Record {
    key_id: String,
    nonce: String,
    expires_at_ms: i64,
    reply: Reply,
}

/// The requests' side: cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct Nonces {
    tx: mpsc::UnboundedSender<Record>,
}

impl Nonces {
    /// Starts the writing task on `pool`.
    pub(super) fn start(pool: Db) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_batches(pool, rx));
        Self { tx }
    }

    /// Records a nonce: `true` when it is new, `false` for a replay.
    pub(super) async fn record(
        &self,
        key_id: String,
        nonce: String,
        expires_at_ms: i64,
    ) -> StoreResult<bool> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Record {
                key_id,
                nonce,
                expires_at_ms,
                reply,
            })
            .map_err(|_| StoreError::Unavailable("nonce writer stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("nonce writer stopped".into()))?
    }
}

/// Writes queued records until every [`Nonces`] is dropped.
async fn write_batches(pool: Db, mut rx: mpsc::UnboundedReceiver<Record>) {
    let mut batch: Vec<Record> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        super::take_queued(&mut rx, &mut batch, MAX_BATCH);
        // A nonce twice in one batch: the first is a record, the rest replays.
        let mut seen = HashSet::new();
        let (mut fresh, mut replays) = (Vec::new(), Vec::new());
        for r in batch.drain(..) {
            if seen.insert((r.key_id.clone(), r.nonce.clone())) {
                fresh.push(r);
            } else {
                replays.push(r);
            }
        }
        for r in replays {
            let _ = r.reply.send(Ok(false));
        }
        let keys: Vec<&str> = fresh.iter().map(|r| r.key_id.as_str()).collect();
        let nonces: Vec<&str> = fresh.iter().map(|r| r.nonce.as_str()).collect();
        let expiries: Vec<i64> = fresh.iter().map(|r| r.expires_at_ms).collect();
        let inserted: Result<Vec<(String, String)>, sqlx::Error> = sqlx::query_as(NONCES_INSERT)
            .bind(keys)
            .bind(nonces)
            .bind(expiries)
            .fetch_all(&pool)
            .await;
        match inserted {
            Ok(rows) => {
                let new: HashSet<(String, String)> = rows.into_iter().collect();
                for r in fresh {
                    let is_new = new.contains(&(r.key_id, r.nonce));
                    let _ = r.reply.send(Ok(is_new));
                }
            }
            Err(e) => {
                // One error, many waiters: each gets its kind and its text.
                let e = StoreError::from(e);
                let (unavailable, text) = (e.is_unavailable(), e.to_string());
                for r in fresh {
                    let _ = r.reply.send(Err(if unavailable {
                        StoreError::Unavailable(text.clone())
                    } else {
                        StoreError::Database(sqlx::Error::Protocol(text.clone()))
                    }));
                }
            }
        }
    }
}
