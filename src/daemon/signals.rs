//! Unix signals as messages on a channel, so the main loop can select on
//! them together with its timers.

use crossbeam_channel::{Receiver, unbounded};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM or SIGINT: stop cleanly.
    Stop,
    /// SIGHUP: reload the config.
    Reload,
}

pub struct SignalListener {
    pub receiver: Receiver<Signal>,
    handle: Handle,
}

impl SignalListener {
    pub fn install() -> std::io::Result<SignalListener> {
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
        let handle = signals.handle();
        let (tx, receiver) = unbounded();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    let msg = if sig == SIGHUP {
                        Signal::Reload
                    } else {
                        Signal::Stop
                    };
                    if tx.send(msg).is_err() {
                        break;
                    }
                }
            })?;
        Ok(SignalListener { receiver, handle })
    }
}

impl Drop for SignalListener {
    fn drop(&mut self) {
        self.handle.close();
    }
}
