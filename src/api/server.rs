//! The API server: accept loops on the Unix socket (and TCP when
//! configured), one short-lived thread per connection, at most
//! `MAX_CONNECTIONS` at once (the next get 503 from the accept thread and
//! are closed). Each connection carries one request (`Connection: close`),
//! except the event stream, which stays open.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::context::ApiContext;
use super::http::{self, Limits, Response};
use super::listener::{Conn, UnixSocket};
use super::routes::{self, Reply};
use super::sse;

/// Connections served at once; more are refused with 503.
pub const MAX_CONNECTIONS: usize = 64;
/// Read timeout of one `read` call: the request deadline is checked this often.
const READ_TICK: Duration = Duration::from_millis(500);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct ApiServer {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    unix: Option<(PathBuf, bool)>,
    tcp: Option<SocketAddr>,
}

impl ApiServer {
    pub fn start(
        unix: UnixSocket,
        tcp: Option<TcpListener>,
        context: Arc<ApiContext>,
    ) -> std::io::Result<ApiServer> {
        let stop = Arc::new(AtomicBool::new(false));
        let path = unix.path.clone();
        let owned = unix.owned;
        let mut threads = vec![accept_loop(
            "api-unix",
            {
                let listener = unix.listener;
                std::iter::repeat_with(move || listener.accept().map(|(s, _)| Conn::Unix(s)))
            },
            &context,
            &stop,
        )?];
        let mut tcp_addr = None;
        if let Some(listener) = tcp {
            tcp_addr = Some(listener.local_addr()?);
            threads.push(accept_loop(
                "api-tcp",
                std::iter::repeat_with(move || listener.accept().map(|(s, _)| Conn::Tcp(s))),
                &context,
                &stop,
            )?);
        }
        tracing::info!(socket = %path.display(), tcp = ?tcp_addr, "API listening");
        Ok(ApiServer {
            stop,
            threads,
            unix: Some((path, owned)),
            tcp: tcp_addr,
        })
    }

    /// Stops accepting (open event streams end within a second).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loops with a connection of our own.
        if let Some((path, _)) = &self.unix {
            let _ = UnixStream::connect(path);
        }
        if let Some(addr) = self.tcp {
            let _ = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some((path, true)) = &self.unix {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Accepts connections until `stop`, handing each to `dispatch`.
fn accept_loop(
    name: &str,
    incoming: impl Iterator<Item = std::io::Result<Conn>> + Send + 'static,
    context: &Arc<ApiContext>,
    stop: &Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    let context = Arc::clone(context);
    let stop = Arc::clone(stop);
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            for conn in incoming {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match conn {
                    Ok(c) => dispatch(c, &context, &stop),
                    Err(e) => accept_failed(&e),
                }
            }
        })
}

fn accept_failed(e: &std::io::Error) {
    // EMFILE and friends: back off a little instead of spinning.
    tracing::warn!("accepting an API connection failed: {e}");
    std::thread::sleep(Duration::from_millis(100));
}

struct ActiveGuard<'a>(&'a AtomicUsize);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn dispatch(mut conn: Conn, context: &Arc<ApiContext>, stop: &Arc<AtomicBool>) {
    let counters = &context.counters;
    if counters.active.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS {
        counters.active.fetch_sub(1, Ordering::Relaxed);
        counters.refused_connections.fetch_add(1, Ordering::Relaxed);
        let _ = conn.set_timeouts(READ_TICK, Duration::from_millis(200));
        let _ = Response::error(503, "busy", "too many connections; try again shortly")
            .with_header("Retry-After", "1".into())
            .write_to(&mut conn);
        return;
    }
    let context = Arc::clone(context);
    let stop = Arc::clone(stop);
    let spawned = std::thread::Builder::new()
        .name("api-conn".into())
        .spawn(move || {
            let _guard = ActiveGuard(&context.counters.active);
            serve(conn, &context, &stop);
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start a connection thread: {e}");
    }
}

fn serve(mut conn: Conn, context: &ApiContext, stop: &AtomicBool) {
    if conn.set_timeouts(READ_TICK, WRITE_TIMEOUT).is_err() {
        return;
    }
    let request = match http::read_request(&mut conn, &Limits::default()) {
        Ok(r) => r,
        Err(e) => {
            if let Some(status) = e.status() {
                context
                    .counters
                    .bad_requests
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!("bad API request: {}", e.message());
                let code = match status {
                    408 => "timeout",
                    413 => "body_too_large",
                    431 => "head_too_large",
                    501 => "not_implemented",
                    _ => "malformed",
                };
                let _ = Response::error(status, code, e.message()).write_to(&mut conn);
            }
            return;
        }
    };
    context.counters.requests.fetch_add(1, Ordering::Relaxed);
    match routes::route(context, &request) {
        Reply::Done(response) => {
            if response.status >= 400 {
                context
                    .counters
                    .bad_requests
                    .fetch_add(1, Ordering::Relaxed);
            }
            let _ = response.write_to(&mut conn);
        }
        Reply::Events {
            subscription,
            backlog,
            filter,
        } => sse::stream(&mut conn, subscription, backlog, &filter, stop),
    }
    let _ = conn.flush();
}
