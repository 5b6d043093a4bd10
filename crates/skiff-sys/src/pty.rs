//! Pseudo-terminals for `kubectl exec -t`: the runtime keeps the master, the
//! exec supervisor makes the slave its controlling terminal.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use tokio::io::unix::AsyncFd;

use rustix::fs::{Mode, OFlags};
use rustix::pty::OpenptFlags;

/// A new pseudo-terminal: `(master, slave)`. The master is non-blocking and
/// close-on-exec; the slave is meant for a child's stdio.
pub fn open() -> io::Result<(OwnedFd, OwnedFd)> {
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let flags = rustix::fs::fcntl_getfl(&master)?;
    rustix::fs::fcntl_setfl(&master, flags | OFlags::NONBLOCK)?;
    Ok((master, slave))
}

/// Sets the terminal size seen through `fd` (either end); the foreground
/// process group gets SIGWINCH.
pub fn set_size(fd: impl AsFd, cols: u16, rows: u16) -> io::Result<()> {
    rustix::termios::tcsetwinsize(
        fd,
        rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )?;
    Ok(())
}

/// Makes the terminal on `fd` the controlling terminal of this process,
/// which must lead a session without one (call after `setsid`).
pub fn make_controlling(fd: impl AsFd) -> io::Result<()> {
    rustix::process::ioctl_tiocsctty(fd)?;
    Ok(())
}

/// Puts the terminal on `fd` in raw mode (no echo, no line editing, no
/// signals, no output processing): a relay between two terminals must not
/// process the bytes twice.
pub fn make_raw(fd: impl AsFd) -> io::Result<()> {
    let mut t = rustix::termios::tcgetattr(&fd)?;
    t.make_raw();
    rustix::termios::tcsetattr(&fd, rustix::termios::OptionalActions::Now, &t)?;
    Ok(())
}

/// The terminal size seen through `fd`: `(cols, rows)`.
pub fn size(fd: impl AsFd) -> io::Result<(u16, u16)> {
    let ws = rustix::termios::tcgetwinsize(fd)?;
    Ok((ws.ws_col, ws.ws_row))
}

/// Receives one file descriptor sent with SCM_RIGHTS on the unix socket
/// `socket` (how an OCI runtime hands over a console's master end).
pub fn receive_fd(socket: impl AsFd) -> io::Result<OwnedFd> {
    let mut name = [0u8; 256];
    let (_, fds) = crate::fdpass::recv(socket, &mut name)?;
    fds.into_iter().next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "no file descriptor in the message",
        )
    })
}

/// A terminal master end, read and written asynchronously.
#[derive(Debug)]
pub struct AsyncMaster {
    fd: AsyncFd<File>,
}

impl AsyncMaster {
    /// Registers `master` (from [`open`], non-blocking) with the reactor.
    pub fn new(master: OwnedFd) -> io::Result<AsyncMaster> {
        // SAFETY: the `File` owns the descriptor and is moved into the
        // registration, so the descriptor stays open (and is not reused)
        // until the registration is dropped.
        let fd = unsafe { AsyncFd::register(File::from(master)) }.map_err(|e| e.into_parts().1)?;
        Ok(AsyncMaster { fd })
    }

    /// Reads output; `Ok(0)` or EIO once no process holds the slave side.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            if let Ok(result) = guard.try_io(|f| f.get_ref().read(buf)) {
                return result;
            }
        }
    }

    /// Writes input; returns how much was taken.
    pub async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.writable().await?;
            if let Ok(result) = guard.try_io(|f| f.get_ref().write(buf)) {
                return result;
            }
        }
    }

    /// Sets the terminal size (see [`set_size`]).
    pub fn set_size(&self, cols: u16, rows: u16) -> io::Result<()> {
        set_size(self.fd.get_ref(), cols, rows)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[test]
    fn bytes_cross_and_size_is_visible() {
        let (master, slave) = open().unwrap();
        set_size(&master, 120, 40).unwrap();
        let ws = rustix::termios::tcgetwinsize(&slave).unwrap();
        assert_eq!((ws.ws_col, ws.ws_row), (120, 40));
        let mut slave = std::fs::File::from(slave);
        slave.write_all(b"hi\n").unwrap();
        let mut master = std::fs::File::from(master);
        let mut buf = [0u8; 16];
        // Non-blocking master: the echo may take a moment to arrive.
        let mut got = Vec::new();
        for _ in 0..100 {
            match master.read(&mut buf) {
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if got.ends_with(b"\r\n") {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(e) => panic!("{e}"),
            }
        }
        // The line discipline turns \n into \r\n on output.
        assert_eq!(got, b"hi\r\n");
    }
}
