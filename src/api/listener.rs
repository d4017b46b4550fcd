//! Where the API listens: the Unix socket (bound here, or handed over by
//! systemd's socket activation), and optionally a TCP address.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::FromRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The socket's mode: owner and group may connect, nobody else.
pub const SOCKET_MODE: u32 = 0o660;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("another vigil is already listening on {}\nhelp: stop it first, or pass --socket with another path", .0.display())]
    InUse(PathBuf),
    #[error("cannot listen on {}: {source}\nhelp: {help}", path.display())]
    Bind {
        path: PathBuf,
        source: io::Error,
        help: String,
    },
    #[error("cannot listen on {addr}: {source}")]
    Tcp { addr: SocketAddr, source: io::Error },
    #[error("socket activation: {0}")]
    Activation(String),
    #[error(
        "socket_group \"{0}\" does not exist\nhelp: create it (groupadd {0}) or fix [daemon] socket_group"
    )]
    NoGroup(String),
}

/// A bound Unix listener, and whether we created its file (then we also
/// remove it when stopping).
pub struct UnixSocket {
    pub listener: UnixListener,
    pub path: PathBuf,
    pub owned: bool,
}

/// The listener systemd passed (`LISTEN_FDS`), if any.
#[allow(unsafe_code)] // Taking ownership of the fd systemd passed.
pub fn activated() -> Result<Option<UnixSocket>, ListenError> {
    let mut fds = sd_notify::listen_fds().map_err(|e| ListenError::Activation(e.to_string()))?;
    let Some(fd) = fds.next() else {
        return Ok(None);
    };
    // SAFETY: systemd hands us this descriptor for our exclusive use
    // (LISTEN_PID is our pid, checked by listen_fds); we take ownership of
    // it once, here. Whether it really is a Unix listening socket is
    // checked right after through getsockname.
    let listener = unsafe { UnixListener::from_raw_fd(fd) };
    let path = listener
        .local_addr()
        .map_err(|e| ListenError::Activation(format!("fd {fd} is not a Unix socket: {e}")))?
        .as_pathname()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("(activated socket)"));
    Ok(Some(UnixSocket {
        listener,
        path,
        owned: false,
    }))
}

/// Binds `path` with mode 0660 (and `group`, when given). A stale socket
/// left by a crashed daemon is replaced; a live one is an error.
pub fn bind_unix(path: &Path, group: Option<&str>) -> Result<UnixSocket, ListenError> {
    let bind_err = |source: io::Error, help: &str| ListenError::Bind {
        path: path.to_path_buf(),
        source,
        help: help.to_string(),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| {
            bind_err(
                e,
                "create the folder, or pass --socket with a path you may write",
            )
        })?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(bind_err(
                io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a file that is not a socket is there",
                ),
                "remove it, or choose another socket path",
            ));
        }
        match UnixStream::connect(path) {
            Ok(_) => return Err(ListenError::InUse(path.to_path_buf())),
            Err(_) => {
                tracing::info!(socket = %path.display(), "removing a stale socket");
                std::fs::remove_file(path)
                    .map_err(|e| bind_err(e, "remove the stale socket file by hand"))?;
            }
        }
    }
    let gid = group.map(group_id).transpose()?;
    let listener = UnixListener::bind(path).map_err(|e| {
        bind_err(
            e,
            "check the folder's permissions, or pass --socket with a path you may write",
        )
    })?;
    let socket = UnixSocket {
        listener,
        path: path.to_path_buf(),
        owned: true,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(|e| bind_err(e, "cannot set the socket's mode"))?;
    if let Some(gid) = gid {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(|e| {
            bind_err(
                e,
                "the daemon must belong to socket_group (or run as root) to hand the socket to it",
            )
        })?;
    }
    Ok(socket)
}

/// The TCP listener, when one is configured (validated as loopback unless
/// allow_remote).
pub fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr).map_err(|source| ListenError::Tcp { addr, source })
}

/// A group's id from /etc/group.
fn group_id(name: &str) -> Result<u32, ListenError> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    groups
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            Some((f.next()?, f.nth(1)?))
        })
        .find(|(n, _)| *n == name)
        .and_then(|(_, gid)| gid.parse().ok())
        .ok_or_else(|| ListenError::NoGroup(name.to_string()))
}

/// One accepted connection, Unix or TCP.
pub enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Conn {
    pub fn set_timeouts(&self, read: Duration, write: Duration) -> io::Result<()> {
        match self {
            Conn::Unix(s) => {
                s.set_read_timeout(Some(read))?;
                s.set_write_timeout(Some(write))
            }
            Conn::Tcp(s) => {
                s.set_read_timeout(Some(read))?;
                s.set_write_timeout(Some(write))
            }
        }
    }
}

impl io::Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
        }
    }
}

impl io::Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.flush(),
            Conn::Tcp(s) => s.flush(),
        }
    }
}
