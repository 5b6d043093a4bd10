//! [`NetOps`] over route netlink.

use std::fs::File;
use std::future::Future;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{
    AfSpecInet6, AfSpecUnspec, In6AddrGenMode, InfoData, InfoVeth, LinkAttribute,
};
use rtnetlink::{
    Handle, LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth,
    RouteMessageBuilder,
};
use rustix::io::Errno;
use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol,
};

use super::{BridgeSpec, NetError, NetOps, PodInterfaceSpec, RouteSpec, VethSpec, sysctl_path};

/// The real [`NetOps`]: route netlink in the host namespace, and on a
/// short-lived dedicated thread inside pod namespaces.
#[derive(Debug, Default, Clone)]
pub struct LinuxNetOps;

impl LinuxNetOps {
    /// A new handle; each operation opens its own netlink socket.
    pub fn new() -> Self {
        Self
    }
}

/// A netlink connection in the namespace of the calling thread, its driver
/// spawned on the current runtime and stopped when dropped.
struct Conn {
    handle: Handle,
    driver: tokio::task::JoinHandle<()>,
}

impl Conn {
    fn open() -> Result<Self, NetError> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        let driver = tokio::spawn(connection);
        Ok(Self { handle, driver })
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// The errno of a kernel refusal, if that is what the error is.
fn errno(err: &rtnetlink::Error) -> Option<Errno> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => Some(Errno::from_raw_os_error(msg.raw_code().abs())),
        _ => None,
    }
}

fn netlink_err(op: impl Into<String>, err: rtnetlink::Error) -> NetError {
    let source = match &err {
        rtnetlink::Error::NetlinkError(msg) => msg.to_io(),
        other => std::io::Error::other(other.to_string()),
    };
    NetError::Netlink {
        op: op.into(),
        source,
    }
}

/// The index of a link by name, `None` when there is no such link.
async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>, NetError> {
    let mut links = handle.link().get().match_name(name).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(Some(link.header.index)),
        Ok(None) => Ok(None),
        Err(err) if errno(&err) == Some(Errno::NODEV) => Ok(None),
        Err(err) => Err(netlink_err(format!("get link {name}"), err)),
    }
}

async fn require_link(handle: &Handle, name: &str) -> Result<u32, NetError> {
    link_index(handle, name)
        .await?
        .ok_or_else(|| NetError::LinkNotFound(name.to_string()))
}

/// Adds an address, treating "already there" as success.
async fn add_address(
    handle: &Handle,
    index: u32,
    ifname: &str,
    address: IpAddr,
    prefix_len: u8,
) -> Result<(), NetError> {
    match handle
        .address()
        .add(index, address, prefix_len)
        .execute()
        .await
    {
        Ok(()) => Ok(()),
        Err(err) if errno(&err) == Some(Errno::EXIST) => Ok(()),
        Err(err) => Err(netlink_err(
            format!("add address {address}/{prefix_len} to {ifname}"),
            err,
        )),
    }
}

async fn set_link(
    handle: &Handle,
    what: &str,
    msg: LinkMessageBuilder<LinkUnspec>,
) -> Result<(), NetError> {
    handle
        .link()
        .set(msg.build())
        .execute()
        .await
        .map_err(|err| netlink_err(what, err))
}

/// Sets a link up with no IPv6 link-local address (address generation mode
/// "none"; IPv6 itself stays on). The pod network is IPv4: a link-local
/// address on each end of every pod's veth buys nothing and costs the
/// kernel duplicate address detection, multicast listener reports and
/// router solicitations for each pod. A kernel without IPv6 refuses the
/// mode; the link then just comes up.
async fn set_link_up_ipv4_only(
    handle: &Handle,
    what: &str,
    msg: impl Fn() -> LinkMessageBuilder<LinkUnspec>,
) -> Result<(), NetError> {
    let no_link_local =
        LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet6(vec![AfSpecInet6::AddrGenMode(
            In6AddrGenMode::None,
        )])]);
    let up = handle
        .link()
        .set(msg().append_extra_attribute(no_link_local).up().build())
        .execute()
        .await;
    match up {
        Err(err) if errno(&err) == Some(Errno::AFNOSUPPORT) => {
            set_link(handle, what, msg().up()).await
        }
        other => other.map_err(|err| netlink_err(what, err)),
    }
}

fn open_netns(path: &Path) -> Result<File, NetError> {
    File::open(path).map_err(|source| NetError::Netns {
        path: path.to_path_buf(),
        source,
    })
}

/// Runs blocking `work` on a fresh OS thread that has entered the network
/// namespace at `netns` (e.g. `/run/netns/NAME`) and waits for it. Sockets
/// made there stay in that namespace wherever they are used later; the
/// thread ends with the work. For tests and tools that open sockets in a
/// namespace they created.
pub fn run_in_netns<T, F>(netns: &Path, work: F) -> Result<T, NetError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let ns_file = open_netns(netns)?;
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("skiff-netns".into())
            .spawn_scoped(scope, move || {
                move_into_link_name_space(ns_file.as_fd(), Some(LinkNameSpaceType::Network))
                    .map_err(|errno| NetError::Netns {
                        path: netns.to_path_buf(),
                        source: errno.into(),
                    })?;
                Ok(work())
            })?;
        thread
            .join()
            .map_err(|_| NetError::Io(std::io::Error::other("network namespace thread panicked")))?
    })
}

/// Runs `work` on a fresh OS thread that has entered the network namespace at
/// `netns`, with its own single-threaded runtime. The thread ends with the
/// work, so no thread outlives its stay in the pod's namespace.
async fn in_netns<F, Fut, T>(netns: &Path, work: F) -> Result<T, NetError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, NetError>>,
    T: Send + 'static,
{
    let ns_file = open_netns(netns)?;
    let path = netns.to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("skiff-netns".into())
        .spawn(move || {
            let result = (|| {
                move_into_link_name_space(ns_file.as_fd(), Some(LinkNameSpaceType::Network))
                    .map_err(|errno| NetError::Netns {
                        path,
                        source: errno.into(),
                    })?;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()?;
                runtime.block_on(work())
            })();
            // The receiver only goes away when the caller was cancelled.
            let _ = tx.send(result);
        })?;
    rx.await
        .map_err(|_| NetError::Io(std::io::Error::other("network namespace thread panicked")))?
}

fn route_message(route: &RouteSpec) -> RouteMessage {
    RouteMessageBuilder::<std::net::Ipv4Addr>::new()
        .destination_prefix(route.destination.network(), route.destination.prefix_len())
        .gateway(route.gateway)
        .protocol(RouteProtocol::from(route.protocol))
        .build()
}

/// A main-table IPv4 route with a gateway, as a [`RouteSpec`].
fn route_spec(msg: &RouteMessage) -> Option<RouteSpec> {
    let table = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(msg.header.table));
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    let mut destination = std::net::Ipv4Addr::UNSPECIFIED;
    let mut gateway = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(RouteAddress::Inet(d)) => destination = *d,
            RouteAttribute::Gateway(RouteAddress::Inet(g)) => gateway = Some(*g),
            _ => {}
        }
    }
    Some(RouteSpec {
        destination: super::Ipv4Cidr::new(destination, msg.header.destination_prefix_length)
            .ok()?,
        gateway: gateway?,
        protocol: u8::from(msg.header.protocol),
    })
}

impl NetOps for LinuxNetOps {
    #[tracing::instrument(skip_all, fields(bridge = %bridge.name))]
    async fn ensure_bridge(&self, bridge: &BridgeSpec) -> Result<(), NetError> {
        let conn = Conn::open()?;
        let handle = &conn.handle;
        let index = match link_index(handle, &bridge.name).await? {
            Some(index) => index,
            None => {
                let msg = LinkBridge::new(&bridge.name)
                    .mtu(bridge.mtu)
                    .nf_call_iptables(true)
                    .build();
                match handle.link().add(msg).execute().await {
                    Ok(()) => {}
                    // Lost a race with another creator: fine, it is there now.
                    Err(err) if errno(&err) == Some(Errno::EXIST) => {}
                    Err(err) => {
                        return Err(netlink_err(format!("add bridge {}", bridge.name), err));
                    }
                }
                require_link(handle, &bridge.name).await?
            }
        };
        add_address(
            handle,
            index,
            &bridge.name,
            IpAddr::V4(bridge.address),
            bridge.prefix_len,
        )
        .await?;
        set_link(
            handle,
            &format!("set {} up", bridge.name),
            LinkUnspec::new_with_index(index).mtu(bridge.mtu).up(),
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(veth = %veth.host_ifname))]
    async fn create_veth(&self, veth: &VethSpec) -> Result<(), NetError> {
        let ns_file = open_netns(&veth.netns)?;
        let conn = Conn::open()?;
        let handle = &conn.handle;
        let bridge = require_link(handle, &veth.bridge).await?;
        // The peer is born inside the pod's namespace under its final name, so
        // no temporary name ever lives in the host namespace.
        let peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(veth.container_ifname.clone())
            .mtu(veth.mtu)
            .append_extra_attribute(LinkAttribute::NetNsFd(ns_file.as_raw_fd()))
            .build();
        // Brought up below, once its IPv6 address mode is set.
        let msg = LinkVeth::new(&veth.host_ifname, &veth.container_ifname)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .mtu(veth.mtu)
            .controller(bridge)
            .build();
        let what = || {
            format!(
                "add veth {} (peer {} in {})",
                veth.host_ifname,
                veth.container_ifname,
                veth.netns.display()
            )
        };
        match handle.link().add(msg).execute().await {
            Ok(()) => {}
            // Already there from an earlier attempt: make sure it is wired
            // (below). If the host end is absent, the clash is the peer's name.
            Err(err) if errno(&err) == Some(Errno::EXIST) => {
                if link_index(handle, &veth.host_ifname).await?.is_none() {
                    return Err(netlink_err(what(), err));
                }
            }
            Err(err) => return Err(netlink_err(what(), err)),
        }
        set_link_up_ipv4_only(
            handle,
            &format!(
                "attach {} to {} and set it up",
                veth.host_ifname, veth.bridge
            ),
            || LinkUnspec::new_with_name(&veth.host_ifname).controller(bridge),
        )
        .await?;
        if veth.hairpin {
            // Port options apply only once the port is enslaved, hence a
            // second request rather than part of the creation.
            let index = require_link(handle, &veth.host_ifname).await?;
            handle
                .link()
                .set_port(LinkBridgePort::new(index).hairpin(true).build())
                .execute()
                .await
                .map_err(|err| netlink_err(format!("set hairpin on {}", veth.host_ifname), err))?;
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(netns = %iface.netns.display()))]
    async fn configure_pod_interface(&self, iface: &PodInterfaceSpec) -> Result<(), NetError> {
        let iface = iface.clone();
        let netns = iface.netns.clone();
        in_netns(&netns, move || async move {
            let conn = Conn::open()?;
            let handle = &conn.handle;
            let lo = require_link(handle, "lo").await?;
            set_link(handle, "set lo up", LinkUnspec::new_with_index(lo).up()).await?;
            let index = require_link(handle, &iface.ifname).await?;
            add_address(
                handle,
                index,
                &iface.ifname,
                IpAddr::V4(iface.address),
                iface.prefix_len,
            )
            .await?;
            set_link_up_ipv4_only(handle, &format!("set {} up", iface.ifname), || {
                LinkUnspec::new_with_index(index)
            })
            .await?;
            let route = RouteMessageBuilder::<std::net::Ipv4Addr>::new()
                .gateway(iface.gateway)
                .output_interface(index)
                .build();
            match handle.route().add(route).execute().await {
                Ok(()) => Ok(()),
                Err(err) if errno(&err) == Some(Errno::EXIST) => Ok(()),
                Err(err) => Err(netlink_err(
                    format!("add default route via {}", iface.gateway),
                    err,
                )),
            }
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(link = %name))]
    async fn delete_link(&self, name: &str) -> Result<bool, NetError> {
        let conn = Conn::open()?;
        let handle = &conn.handle;
        let Some(index) = link_index(handle, name).await? else {
            return Ok(false);
        };
        match handle.link().del(index).execute().await {
            Ok(()) => Ok(true),
            // Gone in between (e.g. its namespace was destroyed): the goal holds.
            Err(err) if errno(&err) == Some(Errno::NODEV) => Ok(false),
            Err(err) => Err(netlink_err(format!("delete link {name}"), err)),
        }
    }

    async fn link_exists(&self, name: &str) -> Result<bool, NetError> {
        let conn = Conn::open()?;
        Ok(link_index(&conn.handle, name).await?.is_some())
    }

    #[tracing::instrument(skip_all, fields(route = %route))]
    async fn replace_route(&self, route: &RouteSpec) -> Result<(), NetError> {
        let conn = Conn::open()?;
        conn.handle
            .route()
            .add(route_message(route))
            .replace()
            .execute()
            .await
            .map_err(|err| netlink_err(format!("replace route {route}"), err))
    }

    #[tracing::instrument(skip_all, fields(route = %route))]
    async fn delete_route(&self, route: &RouteSpec) -> Result<bool, NetError> {
        let conn = Conn::open()?;
        match conn
            .handle
            .route()
            .del(route_message(route))
            .execute()
            .await
        {
            Ok(()) => Ok(true),
            Err(err) if errno(&err) == Some(Errno::SRCH) => Ok(false),
            Err(err) => Err(netlink_err(format!("delete route {route}"), err)),
        }
    }

    async fn list_routes(&self, protocol: u8) -> Result<Vec<RouteSpec>, NetError> {
        let conn = Conn::open()?;
        let mut dump = conn
            .handle
            .route()
            .get(RouteMessageBuilder::<std::net::Ipv4Addr>::new().build())
            .execute();
        let mut routes = Vec::new();
        while let Some(msg) = dump
            .try_next()
            .await
            .map_err(|err| netlink_err("list routes", err))?
        {
            if let Some(route) = route_spec(&msg).filter(|r| r.protocol == protocol) {
                routes.push(route);
            }
        }
        routes.sort();
        Ok(routes)
    }

    async fn set_sysctl(&self, key: &str, value: &str) -> Result<(), NetError> {
        let path = sysctl_path(key);
        let current = tokio::fs::read_to_string(&path).await.ok();
        if current.as_deref().map(str::trim) == Some(value) {
            return Ok(());
        }
        tokio::fs::write(&path, value)
            .await
            .map_err(|source| NetError::Sysctl {
                key: key.to_string(),
                source,
            })
    }
}
