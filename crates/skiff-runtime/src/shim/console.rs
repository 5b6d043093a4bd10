//! The container side of an exec terminal: libcontainer creates the
//! terminal inside the container (so `tty` names `/dev/pts/N` there) and
//! sends its master end over a console socket; the supervisor relays it to
//! its own stdio, a terminal the runtime holds the other end of.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// How often the runtime-side terminal's size is copied into the container.
const SIZE_POLL: Duration = Duration::from_millis(100);

/// A listening console socket.
#[derive(Debug)]
pub struct Console {
    listener: UnixListener,
    path: PathBuf,
}

impl Console {
    /// Listens next to `beside` (socket paths are short: bind by a relative
    /// name inside its directory; libcontainer reaches it through a
    /// symlink).
    pub fn listen(beside: &Path) -> std::io::Result<Console> {
        let path = beside.with_extension("console.sock");
        let dir = path.parent().unwrap_or(Path::new("/"));
        let name = path.file_name().unwrap_or_default();
        let _ = std::fs::remove_file(&path);
        std::env::set_current_dir(dir)?;
        let listener = UnixListener::bind(name)?;
        Ok(Console { listener, path })
    }

    /// The socket's absolute path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits (in a thread, while libcontainer builds the process) for the
    /// master end, gives it our stdin terminal's size before the process
    /// goes on to exec, and relays it to this process's stdio (made raw:
    /// the container's terminal does the line discipline). The receiver
    /// hears when the terminal's output has ended, or at once when the
    /// master never came.
    pub fn start(self) -> mpsc::Receiver<()> {
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::spawn(move || {
            if let Err(err) = self.relay() {
                eprintln!("container terminal: {err}");
            }
            let _ = done_tx.send(());
        });
        done_rx
    }

    /// Takes the terminal's master end from libcontainer.
    pub fn accept(self) -> std::io::Result<File> {
        let (conn, _) = self.listener.accept()?;
        let master = File::from(skiff_sys::pty::receive_fd(&conn)?);
        let _ = std::fs::remove_file(&self.path);
        Ok(master)
    }

    fn relay(self) -> std::io::Result<()> {
        let master = self.accept()?;
        let stdin = std::io::stdin();
        if let Ok((cols, rows)) = skiff_sys::pty::size(&stdin) {
            let _ = skiff_sys::pty::set_size(&master, cols, rows);
        }
        if skiff_sys::pty::make_raw(&stdin).is_ok() {
            let sizer = master.try_clone()?;
            std::thread::spawn(move || follow_size(&sizer));
        }
        let mut input = master.try_clone()?;
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let _ = std::io::copy(&mut stdin, &mut input);
        });
        let mut output = master;
        let mut stdout = std::io::stdout().lock();
        let mut buf = [0u8; 32 * 1024];
        // EIO once the last process holding the terminal is gone.
        while let Ok(n) = output.read(&mut buf) {
            if n == 0 || stdout.write_all(&buf[..n]).is_err() {
                break;
            }
            let _ = stdout.flush();
        }
        Ok(())
    }
}

/// Copies the size of our stdin's terminal into the container's.
fn follow_size(master: &File) {
    let mut last = None;
    loop {
        if let Ok(size) = skiff_sys::pty::size(std::io::stdin())
            && last != Some(size)
        {
            let _ = skiff_sys::pty::set_size(master, size.0, size.1);
            last = Some(size);
        }
        std::thread::sleep(SIZE_POLL);
    }
}
