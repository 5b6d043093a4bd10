//! Connection tracking: removing stale UDP flows when a Service's endpoints
//! change (a UDP "connection" keeps its NAT binding to a gone endpoint until
//! it idles out otherwise). Runs the `conntrack` binary (conntrack-tools), a
//! run-time requirement of the proxy like `nft`.

use std::future::Future;
use std::net::Ipv4Addr;
use std::process::Stdio;

use crate::nft::command_in;

#[cfg(feature = "fake")]
pub mod fake;

/// Which UDP flows to delete: every given field must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UdpFlowFilter {
    /// Original destination address (the Service address).
    pub orig_dst: Option<Ipv4Addr>,
    /// Original destination port (the Service port or NodePort).
    pub orig_dport: Option<u16>,
    /// The address the flow was DNATed to (the endpoint).
    pub dst_nat: Option<Ipv4Addr>,
}

impl UdpFlowFilter {
    /// `conntrack -D` arguments for this filter.
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec!["-D".into(), "-p".into(), "udp".into()];
        if let Some(ip) = self.orig_dst {
            args.extend(["--orig-dst".into(), ip.to_string()]);
        }
        if let Some(port) = self.orig_dport {
            args.extend(["--orig-port-dst".into(), port.to_string()]);
        }
        if let Some(ip) = self.dst_nat {
            args.extend(["--dst-nat".into(), ip.to_string()]);
        }
        args
    }
}

/// Errors of deleting flows.
#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    /// The `conntrack` binary is missing.
    #[error("conntrack not found: install the conntrack package")]
    NotFound,
    /// `conntrack` failed; the text is its stderr.
    #[error("conntrack {args}: {stderr}")]
    Failed {
        /// The arguments.
        args: String,
        /// Its stderr.
        stderr: String,
    },
    /// Running it failed.
    #[error("running conntrack: {0}")]
    Io(#[from] std::io::Error),
}

/// Deletes conntrack entries.
pub trait Conntrack: Send + Sync + 'static {
    /// Deletes the UDP flows matching `filter`; none matching is success.
    fn delete_udp(
        &self,
        filter: &UdpFlowFilter,
    ) -> impl Future<Output = Result<(), ConntrackError>> + Send;
}

/// The real [`Conntrack`]: runs `conntrack -D`, optionally inside a named
/// network namespace.
#[derive(Debug, Clone)]
pub struct ConntrackCli {
    program: String,
    netns: Option<String>,
}

impl Default for ConntrackCli {
    fn default() -> Self {
        Self {
            program: "conntrack".to_string(),
            netns: None,
        }
    }
}

impl ConntrackCli {
    /// `conntrack` from `PATH`.
    pub fn new() -> Self {
        Self::default()
    }

    /// A specific binary (path or name looked up in `PATH`).
    pub fn with_program(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            netns: None,
        }
    }

    /// Runs inside the named network namespace.
    pub fn in_netns(mut self, netns: impl Into<String>) -> Self {
        self.netns = Some(netns.into());
        self
    }
}

impl Conntrack for ConntrackCli {
    #[tracing::instrument(skip_all, fields(?filter))]
    async fn delete_udp(&self, filter: &UdpFlowFilter) -> Result<(), ConntrackError> {
        let args = filter.args();
        let output = match command_in(&self.program, self.netns.as_deref())
            .args(&args)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
        {
            Ok(output) => output,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConntrackError::NotFound);
            }
            Err(err) => return Err(err.into()),
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        // conntrack exits 1 when nothing matched ("0 flow entries have been
        // deleted"): that is the common, successful case.
        if output.status.success() || stderr.contains("0 flow entries") {
            Ok(())
        } else {
            Err(ConntrackError::Failed {
                args: args.join(" "),
                stderr: stderr.trim().to_string(),
            })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn filter_args_name_only_given_fields() {
        let f = UdpFlowFilter {
            orig_dst: Some(Ipv4Addr::new(10, 43, 0, 10)),
            orig_dport: None,
            dst_nat: Some(Ipv4Addr::new(10, 42, 0, 5)),
        };
        assert_eq!(
            f.args().join(" "),
            "-D -p udp --orig-dst 10.43.0.10 --dst-nat 10.42.0.5"
        );
        let f = UdpFlowFilter {
            orig_dst: None,
            orig_dport: Some(30053),
            dst_nat: None,
        };
        assert_eq!(f.args().join(" "), "-D -p udp --orig-port-dst 30053");
    }

    #[tokio::test]
    async fn missing_binary_names_the_package() {
        let err = ConntrackCli::with_program("/nonexistent/skiff-test/conntrack")
            .delete_udp(&UdpFlowFilter {
                orig_dst: None,
                orig_dport: Some(1),
                dst_nat: None,
            })
            .await
            .unwrap_err();
        assert!(matches!(err, ConntrackError::NotFound), "{err}");
        assert_eq!(
            err.to_string(),
            "conntrack not found: install the conntrack package"
        );
    }
}
