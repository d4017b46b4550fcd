//! Log output. Under systemd (stderr is the journal's stream) each event
//! goes to the journal with its fields as journal fields (`journal.rs`);
//! otherwise plain lines on stderr, with colours only on a terminal.

mod journal;

use std::io::IsTerminal;
use std::path::PathBuf;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub use journal::{DEFAULT_SOCKET as JOURNAL_SOCKET, JournalLayer, stderr_is_journal};

/// Installs the global subscriber. `VIGIL_LOG` (or `RUST_LOG`) overrides the
/// configured level. Safe to call more than once.
///
/// `VIGIL_JOURNAL_SOCKET` names another journald socket (tests, or a
/// container with the host's journal mounted elsewhere).
pub fn init(level: &str) {
    let filter = std::env::var("VIGIL_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(level));
    if stderr_is_journal() {
        let path = std::env::var_os("VIGIL_JOURNAL_SOCKET")
            .map_or_else(|| PathBuf::from(JOURNAL_SOCKET), PathBuf::from);
        if let Ok(layer) = JournalLayer::new(&path) {
            let _ = tracing_subscriber::registry()
                .with(filter)
                .with(layer)
                .try_init();
            return;
        }
    }
    let ansi = std::io::stderr().is_terminal();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}
