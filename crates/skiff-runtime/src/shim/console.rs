//! The container side of an exec terminal: the exec'd process opens the
//! terminal inside the container (so `tty` names `/dev/pts/N` there) and
//! sends its master end back over a socket pair; the supervisor relays it
//! to its own stdio, a terminal the runtime holds the other end of.

use std::fs::File;
use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::Duration;

/// How often the runtime-side terminal's size is copied into the container.
const SIZE_POLL: Duration = Duration::from_millis(100);

/// Relays the container terminal `master` to this process's stdio (made
/// raw: the container's terminal does the line discipline), after giving it
/// our stdin terminal's size, in a thread. The receiver hears when the
/// terminal's output has ended.
pub fn relay(master: File) -> mpsc::Receiver<()> {
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        if let Err(err) = relay_inner(master) {
            eprintln!("container terminal: {err}");
        }
        let _ = done_tx.send(());
    });
    done_rx
}

fn relay_inner(master: File) -> std::io::Result<()> {
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
