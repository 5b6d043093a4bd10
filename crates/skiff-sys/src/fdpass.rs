//! Messages with file descriptors attached (`SCM_RIGHTS`) over unix sockets:
//! a console socket's terminal master, the supervisor zygote's requests
//! (report pipe, log file) and replies (the new supervisor's pidfd).

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// The most descriptors one message carries.
pub const MAX_FDS: usize = 4;

/// Sends `data` with `fds` attached as one message (one datagram on a
/// `SOCK_SEQPACKET` socket). `data` must not be empty: a stream socket
/// needs a byte to carry the descriptors.
pub fn send(socket: impl AsFd, data: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("at most {MAX_FDS} descriptors per message"),
        ));
    }
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("control message too large"));
    }
    let iov = [io::IoSlice::new(data)];
    let sent = rustix::net::sendmsg(socket, &iov, &mut control, SendFlags::NOSIGNAL)?;
    if sent != data.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("sent {sent} of {} bytes", data.len()),
        ));
    }
    Ok(())
}

/// Receives one message into `buf`: its length (0 when the peer has
/// closed) and the descriptors attached, close-on-exec. A message longer
/// than `buf` is an error, not a silent cut.
pub fn recv(socket: impl AsFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [io::IoSliceMut::new(buf)];
    let msg = loop {
        match rustix::net::recvmsg(&socket, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC) {
            Err(rustix::io::Errno::INTR) => continue,
            other => break other?,
        }
    };
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    if msg.flags.contains(rustix::net::ReturnFlags::TRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message longer than the receive buffer",
        ));
    }
    if msg.flags.contains(rustix::net::ReturnFlags::CTRUNC) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("more than {MAX_FDS} descriptors in one message"),
        ));
    }
    Ok((msg.bytes, fds))
}

/// A connected pair of `SOCK_SEQPACKET` unix sockets, close-on-exec: each
/// [`send`] arrives as one whole message, and a peer's close reads as an
/// empty one.
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        rustix::net::AddressFamily::UNIX,
        rustix::net::SocketType::SEQPACKET,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Bounds how long a [`send`] or [`recv`] on `socket` blocks; past it they
/// fail with `WouldBlock`.
pub fn set_timeout(socket: impl AsFd, limit: std::time::Duration) -> io::Result<()> {
    use rustix::net::sockopt::{Timeout, set_socket_timeout};
    set_socket_timeout(&socket, Timeout::Recv, Some(limit))?;
    set_socket_timeout(&socket, Timeout::Send, Some(limit))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    fn pair() -> (OwnedFd, OwnedFd) {
        seqpacket_pair().expect("socketpair")
    }

    #[test]
    fn a_message_carries_its_bytes_and_working_descriptors() {
        let (a, b) = pair();
        let (mut reader, writer) = std::io::pipe().expect("pipe");
        let writer = OwnedFd::from(writer);
        send(&a, b"hello", &[writer.as_fd()]).expect("send");
        drop(writer);
        let mut buf = [0u8; 64];
        let (n, mut fds) = recv(&b, &mut buf).expect("recv");
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(fds.len(), 1);
        let mut pipe = std::fs::File::from(fds.remove(0));
        pipe.write_all(b"through")
            .expect("write through the passed end");
        drop(pipe);
        let mut got = String::new();
        reader.read_to_string(&mut got).expect("read");
        assert_eq!(got, "through");
    }

    #[test]
    fn a_closed_peer_reads_as_zero_bytes_and_a_long_message_is_refused() {
        let (a, b) = pair();
        send(&a, &[7u8; 100], &[]).expect("send");
        let mut small = [0u8; 10];
        let err = recv(&b, &mut small).expect_err("truncated");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        set_timeout(&b, std::time::Duration::from_millis(50)).expect("timeout");
        let err = recv(&b, &mut small).expect_err("nothing sent");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        drop(a);
        let (n, fds) = recv(&b, &mut small).expect("recv after close");
        assert_eq!((n, fds.len()), (0, 0));
    }

    #[test]
    fn too_many_descriptors_are_refused_before_sending() {
        let (a, _b) = pair();
        let fds = vec![a.as_fd(); MAX_FDS + 1];
        let err = send(&a, b"x", &fds).expect_err("too many");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
