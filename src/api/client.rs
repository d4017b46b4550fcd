//! The client side, for the `vigil` CLI: one request per connection over
//! the Unix socket, and the event stream.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("vigil is not running: nothing listens on {}\nhelp: start it (systemctl start vigil, or vigil run --config FILE), or pass --socket PATH", .0.display())]
    NotRunning(PathBuf),
    #[error("permission denied on {}\nhelp: the socket is for its owner and group: add yourself to that group (see socket_group in the config) or use sudo", .0.display())]
    Denied(PathBuf),
    #[error("talking to vigil on {}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("vigil sent a response that is not HTTP: {0}")]
    Protocol(String),
}

pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

fn connect(socket: &Path) -> Result<UnixStream, ClientError> {
    UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ClientError::NotRunning(socket.to_path_buf())
        }
        std::io::ErrorKind::PermissionDenied => ClientError::Denied(socket.to_path_buf()),
        _ => ClientError::Io {
            path: socket.to_path_buf(),
            message: e.to_string(),
        },
    })
}

fn send(
    stream: &mut UnixStream,
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<(), ClientError> {
    let body = body.unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: vigil\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.write_all(body))
        .map_err(|e| ClientError::Io {
            path: socket.to_path_buf(),
            message: e.to_string(),
        })
}

/// Sends one request and reads the whole response.
pub fn request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Reply, ClientError> {
    let mut stream = connect(socket)?;
    let _ = stream.set_read_timeout(Some(timeout));
    send(&mut stream, socket, method, path, body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| ClientError::Io {
        path: socket.to_path_buf(),
        message: e.to_string(),
    })?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| ClientError::Protocol("no end of head".into()))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::Protocol(head.lines().next().unwrap_or("").to_string()))?;
    Ok(Reply {
        status,
        body: raw[split + 4..].to_vec(),
    })
}

/// Follows the event stream, calling `on_event` with each event's JSON
/// until it returns false or the daemon closes the stream.
pub fn follow(
    socket: &Path,
    path: &str,
    mut on_event: impl FnMut(&str) -> bool,
) -> Result<(), ClientError> {
    let mut stream = connect(socket)?;
    send(&mut stream, socket, "GET", path, None)?;
    let mut lines = BufReader::new(stream).lines();
    let status = lines.next().and_then(Result::ok).unwrap_or_default();
    if !status.contains(" 200 ") {
        return Err(ClientError::Protocol(status));
    }
    for line in lines {
        let line = line.map_err(|e| ClientError::Io {
            path: socket.to_path_buf(),
            message: e.to_string(),
        })?;
        if let Some(data) = line.strip_prefix("data: ")
            && !on_event(data)
        {
            break;
        }
    }
    Ok(())
}
