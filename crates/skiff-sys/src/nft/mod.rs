//! nftables, fed as text to `nft -f -`: the `nftables` crate cannot read back
//! every construct and the C libraries are not an option (see HOST-NOTES), so
//! the `nft` binary is a run-time requirement.

use std::future::Future;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

pub use elements::{FieldType, SetData, SetElements, SetType};

pub mod elements;
#[cfg(feature = "fake")]
pub mod fake;
#[cfg(feature = "fake")]
pub mod model;
mod netlink;

/// Errors of applying an nftables script.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// The `nft` binary is missing.
    #[error("nft not found: install the nftables package")]
    NotFound,
    /// `nft` rejected the script; the text is its stderr.
    #[error("nft -f - failed: {0}")]
    Rejected(String),
    /// The kernel refused elements sent over netlink, or they do not fit
    /// their set's type.
    #[error("nftables netlink: {0}")]
    Netlink(String),
    /// Running `nft` failed.
    #[error("running nft: {0}")]
    Io(#[from] std::io::Error),
}

/// Applies nftables scripts. A script is one transaction: all or nothing.
pub trait Nftables: Send + Sync + 'static {
    /// Applies `script` atomically.
    fn apply(&self, script: &str) -> impl Future<Output = Result<(), NftError>> + Send;

    /// Runs a read-only script such as `list chain ip t c` and returns what
    /// nft prints, tersely: sets and maps without their elements (fetching
    /// them costs seconds at 100,000 elements, even for `list sets`); an
    /// absent object is an [`NftError::Rejected`].
    fn list(&self, script: &str) -> impl Future<Output = Result<String, NftError>> + Send;

    /// Adds elements to existing sets of the `ip` table `table`, all in one
    /// transaction. Same effect as `add element` commands (which is what
    /// this default applies); [`NftCli`] sends them over netlink instead,
    /// which costs a fraction of nft's parsing them.
    fn add_elements(
        &self,
        table: &str,
        sets: &[SetElements<'_>],
    ) -> impl Future<Output = Result<(), NftError>> + Send {
        let script: String = sets.iter().map(|s| s.to_script(table)).collect();
        async move {
            if script.is_empty() {
                return Ok(());
            }
            self.apply(&script).await
        }
    }
}

/// The real [`Nftables`]: runs `nft -f -`, optionally inside a named
/// network namespace (`ip netns exec NAME nft -f -`).
#[derive(Debug, Clone)]
pub struct NftCli {
    program: String,
    netns: Option<String>,
}

impl Default for NftCli {
    fn default() -> Self {
        Self {
            program: "nft".to_string(),
            netns: None,
        }
    }
}

impl NftCli {
    /// `nft` from `PATH`.
    pub fn new() -> Self {
        Self::default()
    }

    /// A specific `nft` binary (path or name looked up in `PATH`).
    pub fn with_program(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            netns: None,
        }
    }

    /// Runs `nft` inside the named network namespace (as `ip netns add`
    /// names them, under /run/netns) instead of the caller's.
    pub fn in_netns(mut self, netns: impl Into<String>) -> Self {
        self.netns = Some(netns.into());
        self
    }
}

/// A command for `program args…`, run through `ip netns exec` when `netns`
/// is set.
pub(crate) fn command_in(program: &str, netns: Option<&str>) -> tokio::process::Command {
    match netns {
        Some(ns) => {
            let mut cmd = tokio::process::Command::new("ip");
            cmd.args(["netns", "exec", ns, program]);
            cmd
        }
        None => tokio::process::Command::new(program),
    }
}

impl NftCli {
    /// Feeds `script` to `nft [-t] -f -`; returns its stdout.
    async fn run(&self, script: &str, terse: bool) -> Result<String, NftError> {
        let mut cmd = command_in(&self.program, self.netns.as_deref());
        if terse {
            cmd.arg("-t");
        }
        let mut child = match cmd
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(NftError::NotFound);
            }
            Err(err) => return Err(err.into()),
        };
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(script.as_bytes()).await?;
            // Dropping stdin closes it so nft sees the end of the script.
        }
        let output = child.wait_with_output().await?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(NftError::Rejected(
                String::from_utf8_lossy(&output.stderr).trim().to_string(),
            ))
        }
    }
}

impl Nftables for NftCli {
    #[tracing::instrument(skip_all)]
    async fn apply(&self, script: &str) -> Result<(), NftError> {
        self.run(script, false).await.map(drop)
    }

    #[tracing::instrument(skip_all)]
    async fn list(&self, script: &str) -> Result<String, NftError> {
        self.run(script, true).await
    }

    #[tracing::instrument(skip_all, fields(sets = sets.len()))]
    async fn add_elements(&self, table: &str, sets: &[SetElements<'_>]) -> Result<(), NftError> {
        if sets.iter().all(|s| s.elements.is_empty()) {
            return Ok(());
        }
        let batch = elements::encode_batch(table, sets, 1)?;
        let netns = self.netns.clone();
        tokio::task::spawn_blocking(move || netlink::send_batch(&batch, netns.as_deref()))
            .await
            .map_err(|e| NftError::Io(std::io::Error::other(e)))?
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod network_tests {
    use super::*;

    #[tokio::test]
    async fn network_nft_missing_binary_names_the_package() {
        let err = NftCli::with_program("/nonexistent/skiff-test/nft")
            .apply("table ip t\n")
            .await
            .unwrap_err();
        assert!(matches!(err, NftError::NotFound), "{err}");
        assert_eq!(
            err.to_string(),
            "nft not found: install the nftables package"
        );
    }

    #[tokio::test]
    async fn network_nft_failure_carries_stderr() {
        // `sh -f -` reads the script from stdin like nft does; a failing
        // script stands in for a rejected ruleset.
        let err = NftCli::with_program("sh")
            .apply("echo 'Error: syntax error' >&2; exit 1\n")
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "nft -f - failed: Error: syntax error");
        NftCli::with_program("sh").apply("exit 0\n").await.unwrap();
        // Listing passes `-t` (terse) too, which bash also takes (it runs
        // one command and exits).
        assert_eq!(
            NftCli::with_program("bash")
                .list("echo listed\necho not reached\n")
                .await
                .unwrap(),
            "listed\n"
        );
    }
}
