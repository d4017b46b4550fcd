//! store: answer changes, alerts and ad-hoc answers in SQLite, each with a
//! JPEG of the newest frame it looked at.
//!
//! The database is in WAL mode with `synchronous = FULL`: once `record`
//! returns, the event survives `kill -9` and power loss. Event ids never
//! repeat (AUTOINCREMENT), so a client can resume from the last id it saw.
//! Retention deletes by age and keeps the file under a size budget,
//! oldest events first.

mod error;
mod event;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OptionalExtension, params};

pub use error::StoreError;
pub use event::{EventFilter, EventKind, NewEvent, StoredEvent};

/// The newest schema; `user_version` in the file says which one it has.
const SCHEMA_VERSION: i64 = 1;
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    jpeg BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    camera TEXT NOT NULL,
    question TEXT,
    ask TEXT NOT NULL,
    answer TEXT NOT NULL,
    previous TEXT,
    scores TEXT NOT NULL,
    latency_ms REAL NOT NULL,
    frames_used INTEGER NOT NULL,
    snapshot_id INTEGER REFERENCES snapshots(id)
);
CREATE INDEX IF NOT EXISTS events_time ON events(time_ms);
CREATE INDEX IF NOT EXISTS events_camera ON events(camera, time_ms);
";

pub struct Store {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (or creates) `events.db` in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|e| StoreError::Dir {
            path: state_dir.to_path_buf(),
            source: e,
        })?;
        let path = state_dir.join("events.db");
        let fail = |e: rusqlite::Error| StoreError::open(&path, e);
        let conn = Connection::open(&path).map_err(fail)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(fail)?;
        // auto_vacuum only takes effect on a new file, before any table.
        conn.execute_batch(
            "PRAGMA auto_vacuum = INCREMENTAL;
             PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;",
        )
        .map_err(fail)?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(fail)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Newer {
                path,
                version,
                supported: SCHEMA_VERSION,
            });
        }
        conn.execute_batch(SCHEMA).map_err(fail)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(fail)?;
        Ok(Store {
            path,
            conn: Mutex::new(conn),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written
        // (each write is one transaction), so the connection stays usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes events that share one snapshot in one transaction; returns
    /// their ids once they are durable.
    pub fn record(
        &self,
        events: &[NewEvent],
        snapshot: Option<&[u8]>,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut conn = self.conn();
        let fail = |e| StoreError::write(&self.path, e);
        let tx = conn.transaction().map_err(fail)?;
        let snapshot_id = match snapshot {
            Some(jpeg) => {
                tx.execute("INSERT INTO snapshots (jpeg) VALUES (?1)", [jpeg])
                    .map_err(fail)?;
                Some(tx.last_insert_rowid())
            }
            None => None,
        };
        let mut stored = Vec::with_capacity(events.len());
        for e in events {
            let scores = serde_json::to_string(&e.scores).unwrap_or_else(|_| "[]".into());
            tx.execute(
                "INSERT INTO events (time_ms, kind, camera, question, ask, answer, previous,
                                     scores, latency_ms, frames_used, snapshot_id)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    e.time_ms as i64,
                    e.kind.as_str(),
                    e.camera,
                    e.question,
                    e.ask,
                    e.answer,
                    e.previous,
                    scores,
                    e.latency_ms,
                    e.frames_used as i64,
                    snapshot_id
                ],
            )
            .map_err(fail)?;
            stored.push(StoredEvent {
                id: tx.last_insert_rowid(),
                event: e.clone(),
                has_snapshot: snapshot_id.is_some(),
            });
        }
        tx.commit().map_err(fail)?;
        Ok(stored)
    }

    /// Events matching `filter`, newest first.
    pub fn events(&self, filter: &EventFilter) -> Result<Vec<StoredEvent>, StoreError> {
        let conn = self.conn();
        let fail = |e| StoreError::read(&self.path, e);
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, time_ms, kind, camera, question, ask, answer, previous, scores,
                        latency_ms, frames_used, snapshot_id IS NOT NULL
                 FROM events
                 WHERE (?1 IS NULL OR camera = ?1)
                   AND (?2 IS NULL OR question = ?2)
                   AND (?3 IS NULL OR time_ms >= ?3)
                   AND (?4 IS NULL OR id > ?4)
                 ORDER BY id DESC LIMIT ?5",
            )
            .map_err(fail)?;
        let rows = stmt
            .query_map(
                params![
                    filter.camera,
                    filter.question,
                    filter.since_ms.map(|v| v as i64),
                    filter.after_id,
                    filter.limit as i64
                ],
                StoredEvent::from_row,
            )
            .map_err(fail)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(fail)
    }

    /// The JPEG recorded with event `id`.
    pub fn snapshot(&self, id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        let conn = self.conn();
        conn.query_row(
            "SELECT s.jpeg FROM events e JOIN snapshots s ON s.id = e.snapshot_id WHERE e.id = ?1",
            [id],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| StoreError::read(&self.path, e))
    }

    pub fn count(&self) -> Result<u64, StoreError> {
        self.conn()
            .query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| StoreError::read(&self.path, e))
    }

    /// Bytes the database's pages hold (free pages not counted).
    pub fn used_bytes(&self) -> Result<u64, StoreError> {
        let conn = self.conn();
        used_bytes(&conn).map_err(|e| StoreError::read(&self.path, e))
    }

    /// Deletes events older than `max_age`, then the oldest until the
    /// database is under `max_size`. Returns how many events went.
    pub fn prune(&self, max_age: Duration, max_size: u64) -> Result<u64, StoreError> {
        let mut conn = self.conn();
        let fail = |e| StoreError::write(&self.path, e);
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let cutoff = now_ms - max_age.as_millis() as i64;
        let tx = conn.transaction().map_err(fail)?;
        let mut deleted = tx
            .execute("DELETE FROM events WHERE time_ms < ?1", [cutoff])
            .map_err(fail)? as u64;
        delete_orphan_snapshots(&tx).map_err(fail)?;
        tx.commit().map_err(fail)?;
        while used_bytes(&conn).map_err(fail)? > max_size {
            let total: i64 = conn
                .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
                .map_err(fail)?;
            if total == 0 {
                break;
            }
            // A tenth at a time: few passes, and never more than needed by much.
            let batch = (total / 10).max(1);
            let tx = conn.transaction().map_err(fail)?;
            deleted += tx
                .execute(
                    "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT ?1)",
                    [batch],
                )
                .map_err(fail)? as u64;
            delete_orphan_snapshots(&tx).map_err(fail)?;
            tx.commit().map_err(fail)?;
        }
        if deleted > 0 {
            conn.execute_batch("PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);")
                .map_err(fail)?;
        }
        Ok(deleted)
    }
}

fn delete_orphan_snapshots(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM snapshots WHERE id NOT IN (SELECT snapshot_id FROM events WHERE snapshot_id IS NOT NULL)",
        [],
    )
}

fn used_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    Ok(((pages - free).max(0) * page) as u64)
}

#[cfg(test)]
mod tests;
