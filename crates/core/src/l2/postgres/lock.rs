//! The Postgres L2's load locks: session-level advisory locks, all on one connection outside the pool.

use std::sync::Arc;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::ConnectOptions;

use super::ADVISORY_CLASS_LOAD;

/// The one connection, outside the pool, that holds every advisory lock of a store.
///
/// Holding each lock on a pooled connection would pin one connection per load in progress, and a burst of cold keys
/// would then starve the very queries the loads need. A session holds any number of locks, and they all end with it:
/// when this process dies, or when the connection breaks (then other processes may load too, which is safe).
pub struct LockSession {
    options: PgConnectOptions,
    conn: tokio::sync::Mutex<Option<PgConnection>>,
}

impl LockSession {
    pub(super) fn new(options: PgConnectOptions) -> Self {
        LockSession { options, conn: tokio::sync::Mutex::new(None) }
    }

    pub(super) async fn try_lock(&self, key: &str) -> std::result::Result<bool, sqlx::Error> {
        let mut conn = self.conn.lock().await;
        if conn.is_none() {
            *conn = Some(self.options.connect().await?);
        }
        let session = conn.as_mut().expect("connected above");
        let locked = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2))")
            .bind(ADVISORY_CLASS_LOAD)
            .bind(key)
            .fetch_one(session)
            .await;
        if locked.is_err() {
            *conn = None;
        }
        locked
    }

    /// Unlocking on a session that was replaced since the lock was taken finds no lock: the old session took it along.
    async fn unlock(&self, key: &str) {
        let mut conn = self.conn.lock().await;
        let Some(session) = conn.as_mut() else { return };
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1, hashtext($2))")
            .bind(ADVISORY_CLASS_LOAD)
            .bind(key)
            .execute(session)
            .await;
        if unlocked.is_err() {
            *conn = None;
        }
    }
}

/// A held advisory lock of the lock session.
pub struct AdvisoryLock {
    pub(super) session: Option<Arc<LockSession>>,
    pub(super) key: String,
}

impl AdvisoryLock {
    /// Unlocks on the lock session and waits for it; when that session was replaced meanwhile, the lock already
    /// ended with the old one.
    pub async fn release(mut self) {
        if let Some(session) = self.session.take() {
            session.unlock(&self.key).await;
        }
    }
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let key = std::mem::take(&mut self.key);
            crate::runtime::spawn(async move { session.unlock(&key).await });
        }
    }
}
