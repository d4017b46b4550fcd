//! Why the event store could not be opened, read or written.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory {}: {source}\nhelp: create it, or point [daemon] state_dir (or --state-dir) at a writable folder", path.display())]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the event store {}: {message}\nhelp: check that the daemon's user may write there; a damaged file can be moved aside and a new one is created", path.display())]
    Open { path: PathBuf, message: String },
    #[error("event store {} has schema version {version}, this vigil knows up to {supported}\nhelp: run the newer vigil, or move the file aside", path.display())]
    Newer {
        path: PathBuf,
        version: i64,
        supported: i64,
    },
    #[error("cannot write to the event store {}: {message}", path.display())]
    Write { path: PathBuf, message: String },
    #[error("cannot read the event store {}: {message}", path.display())]
    Read { path: PathBuf, message: String },
}

impl StoreError {
    pub(super) fn open(path: &Path, e: rusqlite::Error) -> StoreError {
        StoreError::Open {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
    pub(super) fn write(path: &Path, e: rusqlite::Error) -> StoreError {
        StoreError::Write {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
    pub(super) fn read(path: &Path, e: rusqlite::Error) -> StoreError {
        StoreError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}
