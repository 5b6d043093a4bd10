//! A recording [`NetOps`] for tests (feature `fake`): it keeps a model of the
//! host's links so idempotency can be checked, records every call in order,
//! and can be told to fail one kind of operation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::{BridgeSpec, Ipv4Cidr, NetError, NetOps, PodInterfaceSpec, RouteSpec, VethSpec};

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetCall {
    /// [`NetOps::ensure_bridge`].
    EnsureBridge(BridgeSpec),
    /// [`NetOps::create_veth`].
    CreateVeth(VethSpec),
    /// [`NetOps::configure_pod_interface`].
    ConfigurePodInterface(PodInterfaceSpec),
    /// [`NetOps::delete_link`].
    DeleteLink(String),
    /// [`NetOps::set_sysctl`].
    SetSysctl(String, String),
    /// [`NetOps::replace_route`].
    ReplaceRoute(RouteSpec),
    /// [`NetOps::delete_route`].
    DeleteRoute(RouteSpec),
}

/// Which operation to fail, for fault tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOp {
    /// Fail [`NetOps::ensure_bridge`].
    EnsureBridge,
    /// Fail [`NetOps::create_veth`].
    CreateVeth,
    /// Fail [`NetOps::configure_pod_interface`].
    ConfigurePodInterface,
    /// Fail [`NetOps::replace_route`].
    ReplaceRoute,
}

#[derive(Debug, Default)]
struct State {
    calls: Vec<NetCall>,
    links: BTreeSet<String>,
    /// The main table: destination → route.
    routes: BTreeMap<Ipv4Cidr, RouteSpec>,
    fail: Option<FailOp>,
}

/// The recording fake.
#[derive(Debug, Default)]
pub struct RecordingNetOps {
    state: Mutex<State>,
}

impl RecordingNetOps {
    /// An empty host.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<NetCall> {
        self.state().calls.clone()
    }

    /// Forgets the recorded calls (the link model stays).
    pub fn clear_calls(&self) {
        self.state().calls.clear();
    }

    /// Host links currently present in the model.
    pub fn links(&self) -> BTreeSet<String> {
        self.state().links.clone()
    }

    /// The routes currently in the model's main table, of every protocol.
    pub fn routes(&self) -> Vec<RouteSpec> {
        self.state().routes.values().copied().collect()
    }

    /// Puts a route into the model without recording a call (state left by
    /// someone else, e.g. a previous run).
    pub fn insert_route(&self, route: RouteSpec) {
        self.state().routes.insert(route.destination, route);
    }

    /// Makes `op` fail from now on (`None` heals).
    pub fn fail(&self, op: Option<FailOp>) {
        self.state().fail = op;
    }

    fn record(&self, call: NetCall, op: Option<FailOp>) -> Result<MutexGuard<'_, State>, NetError> {
        let mut state = self.state();
        state.calls.push(call);
        if op.is_some() && state.fail == op {
            return Err(NetError::Io(std::io::Error::other(format!(
                "injected failure of {op:?}"
            ))));
        }
        Ok(state)
    }
}

impl NetOps for RecordingNetOps {
    async fn ensure_bridge(&self, bridge: &BridgeSpec) -> Result<(), NetError> {
        let mut state = self.record(
            NetCall::EnsureBridge(bridge.clone()),
            Some(FailOp::EnsureBridge),
        )?;
        state.links.insert(bridge.name.clone());
        Ok(())
    }

    async fn create_veth(&self, veth: &VethSpec) -> Result<(), NetError> {
        let mut state = self.record(NetCall::CreateVeth(veth.clone()), Some(FailOp::CreateVeth))?;
        if !state.links.contains(&veth.bridge) {
            return Err(NetError::LinkNotFound(veth.bridge.clone()));
        }
        state.links.insert(veth.host_ifname.clone());
        Ok(())
    }

    async fn configure_pod_interface(&self, iface: &PodInterfaceSpec) -> Result<(), NetError> {
        drop(self.record(
            NetCall::ConfigurePodInterface(iface.clone()),
            Some(FailOp::ConfigurePodInterface),
        )?);
        Ok(())
    }

    async fn delete_link(&self, name: &str) -> Result<bool, NetError> {
        let mut state = self.record(NetCall::DeleteLink(name.to_string()), None)?;
        Ok(state.links.remove(name))
    }

    async fn link_exists(&self, name: &str) -> Result<bool, NetError> {
        Ok(self.state().links.contains(name))
    }

    async fn replace_route(&self, route: &RouteSpec) -> Result<(), NetError> {
        let mut state = self.record(NetCall::ReplaceRoute(*route), Some(FailOp::ReplaceRoute))?;
        state.routes.insert(route.destination, *route);
        Ok(())
    }

    async fn delete_route(&self, route: &RouteSpec) -> Result<bool, NetError> {
        let mut state = self.record(NetCall::DeleteRoute(*route), None)?;
        let key = route.destination;
        // As the kernel: the gateway and protocol given must match.
        if state.routes.get(&key) == Some(route) {
            state.routes.remove(&key);
            return Ok(true);
        }
        Ok(false)
    }

    async fn list_routes(&self, protocol: u8) -> Result<Vec<RouteSpec>, NetError> {
        Ok(self
            .state()
            .routes
            .values()
            .filter(|r| r.protocol == protocol)
            .copied()
            .collect())
    }

    async fn set_sysctl(&self, key: &str, value: &str) -> Result<(), NetError> {
        drop(self.record(NetCall::SetSysctl(key.to_string(), value.to_string()), None)?);
        Ok(())
    }
}
