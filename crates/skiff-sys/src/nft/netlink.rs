//! Sends an encoded element batch (see [`super::elements`]) to the kernel
//! over a `NETLINK_NETFILTER` socket and checks every message was accepted.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use rustix::net::netlink::{self, SocketAddrNetlink};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketType};

use super::NftError;
use super::elements::{Batch, check_replies};

/// `NETLINK_CAP_ACK` (linux/netlink.h): errors do not echo the whole
/// request, so a failed batch of large messages cannot overflow the
/// receive buffer.
const NETLINK_CAP_ACK: libc::c_int = 10;

fn io(err: rustix::io::Errno) -> NftError {
    NftError::Io(err.into())
}

/// Sends `batch` as one transaction, from inside the network namespace
/// `netns` (a name under /run/netns) when given. Blocking.
pub(super) fn send_batch(batch: &Batch, netns: Option<&str>) -> Result<(), NftError> {
    let socket = match netns {
        Some(name) => {
            let path = Path::new("/run/netns").join(name);
            crate::net::run_in_netns(&path, open)
                .map_err(|e| NftError::Io(std::io::Error::other(e)))??
        }
        None => open()?,
    };
    // The whole batch goes in one message: the kernel takes a batch from a
    // single send.
    rustix::net::sockopt::set_socket_send_buffer_size_force(&socket, batch.bytes.len() + 4096)
        .map_err(io)?;
    let kernel = SocketAddrNetlink::new(0, 0);
    let sent =
        rustix::net::sendto(&socket, &batch.bytes, SendFlags::empty(), &kernel).map_err(io)?;
    if sent != batch.bytes.len() {
        return Err(NftError::Netlink("batch sent in part".to_string()));
    }
    // The kernel handles the batch within the send; its acknowledgements
    // (one per element message) are queued by now, but wait a little in
    // case not.
    let mut acked = 0;
    let mut buf = vec![0u8; 1 << 16];
    while acked < batch.sets.len() {
        let (n, _) = rustix::net::recv(&socket, &mut buf[..], RecvFlags::empty()).map_err(|e| {
            if e == rustix::io::Errno::AGAIN {
                NftError::Netlink(format!(
                    "{acked} of {} element messages acknowledged",
                    batch.sets.len()
                ))
            } else {
                io(e)
            }
        })?;
        check_replies(batch, &buf[..n], &mut acked)?;
    }
    Ok(())
}

fn open() -> Result<OwnedFd, NftError> {
    let socket = rustix::net::socket(
        AddressFamily::NETLINK,
        SocketType::RAW,
        Some(netlink::NETFILTER),
    )
    .map_err(io)?;
    rustix::net::sockopt::set_socket_timeout(
        &socket,
        rustix::net::sockopt::Timeout::Recv,
        Some(Duration::from_secs(10)),
    )
    .map_err(io)?;
    rustix::net::sockopt::set_socket_recv_buffer_size_force(&socket, 4 << 20).map_err(io)?;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live local;
    // the descriptor is owned by `socket` for the whole call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_fd().as_raw_fd(),
            libc::SOL_NETLINK,
            NETLINK_CAP_ACK,
            std::ptr::from_ref(&one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(NftError::Io(std::io::Error::last_os_error()));
    }
    Ok(socket)
}
