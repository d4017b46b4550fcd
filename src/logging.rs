//! Log output: plain text, with colours only on a terminal, and without our
//! own timestamps under systemd (the journal adds its own).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `VIGIL_LOG` (or `RUST_LOG`) overrides the
/// configured level. Safe to call more than once.
pub fn init(level: &str) {
    let filter = std::env::var("VIGIL_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(level));
    let under_journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let ansi = std::io::stderr().is_terminal() && !under_journal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false);
    let _ = if under_journal {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
}
