//! Standard CNI plugins as the pod network: instead of the built-in bridge,
//! each sandbox is connected by the plugin chain of the first network
//! configuration in a directory (`.conf`, `.conflist` or `.json`, in lexical
//! order, as libcni picks it), with the plugin binaries found in a list of
//! directories — e.g. Debian's containernetworking-plugins in `/usr/lib/cni`.
//!
//! The protocol is the CNI specification's: every plugin runs with
//! `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_PATH` in
//! its environment and its configuration (with the list's `name` and
//! `cniVersion`, and the previous plugin's result as `prevResult`) on stdin;
//! ADD runs the chain in order, DEL in reverse. As container runtimes do,
//! `lo` is brought up with the `loopback` plugin first when it is installed.
//! The configuration and the final result of each ADD are kept under the
//! state dir so that DEL gets what ADD used and setup is idempotent.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{Map, Value, json};
use tokio::io::AsyncWriteExt;

/// Configuration files libcni considers, by extension.
const CONF_EXTENSIONS: [&str; 3] = ["conf", "conflist", "json"];
/// The loopback plugin's type.
const LOOPBACK: &str = "loopback";

/// Errors of the CNI network.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// No usable network configuration in the directory.
    #[error("cni config uninitialized: no network config found in {0}")]
    NoConfig(PathBuf),
    /// A configuration file is malformed.
    #[error("cni config {path}: {message}")]
    BadConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A plugin binary is in none of the directories.
    #[error("failed to find plugin {plugin:?} in path {path:?}")]
    PluginNotFound {
        /// The plugin type.
        plugin: String,
        /// The directories searched.
        path: Vec<PathBuf>,
    },
    /// A plugin failed (its error object's message, or its stderr).
    #[error("plugin type={plugin:?} {command} failed (code {code}): {message}")]
    Plugin {
        /// The plugin type.
        plugin: String,
        /// ADD or DEL.
        command: &'static str,
        /// The CNI error code (0 when the plugin gave none).
        code: u64,
        /// The error message and details.
        message: String,
    },
    /// The result of ADD has no IP address.
    #[error("plugin chain {network:?} returned no IP address: {result}")]
    NoAddress {
        /// The network's name.
        network: String,
        /// The final result.
        result: String,
    },
    /// Running a plugin or keeping state failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A network configuration list (`.conflist`, or a single `.conf` wrapped).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    /// The network's name.
    pub name: String,
    /// The spec version the configuration speaks.
    pub cni_version: String,
    /// Each plugin's configuration, in chain order.
    pub plugins: Vec<Map<String, Value>>,
    /// The file it came from.
    pub source: PathBuf,
}

impl NetworkConfigList {
    /// Parses one file: a list when it has `plugins`, else a single plugin.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, CniError> {
        let bad = |message: String| CniError::BadConfig {
            path: path.to_path_buf(),
            message,
        };
        let value: Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let Value::Object(mut top) = value else {
            return Err(bad("not a JSON object".into()));
        };
        let name = match top.get("name") {
            Some(Value::String(n)) if !n.is_empty() => n.clone(),
            _ => return Err(bad("missing network name".into())),
        };
        let cni_version = top
            .get("cniVersion")
            .and_then(Value::as_str)
            .unwrap_or("0.1.0")
            .to_owned();
        let plugins = match top.remove("plugins") {
            Some(Value::Array(list)) => list
                .into_iter()
                .map(|p| match p {
                    Value::Object(p) => Ok(p),
                    _ => Err(bad("a plugin is not a JSON object".into())),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(bad("\"plugins\" is not a list".into())),
            None => vec![top],
        };
        if plugins.is_empty() {
            return Err(bad("no plugins in list".into()));
        }
        for p in &plugins {
            if !matches!(p.get("type"), Some(Value::String(t)) if !t.is_empty()) {
                return Err(bad("a plugin has no \"type\"".into()));
            }
        }
        Ok(Self {
            name,
            cni_version,
            plugins,
            source: path.to_path_buf(),
        })
    }

    /// The first valid configuration of `dir` in lexical file-name order.
    /// Files that do not parse are skipped with a warning, as containerd does.
    pub fn load_first(dir: &Path) -> Result<Self, CniError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|_| CniError::NoConfig(dir.to_path_buf()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| CONF_EXTENSIONS.contains(&e))
            })
            .collect();
        files.sort();
        for path in files {
            let parsed = std::fs::read(&path)
                .map_err(CniError::from)
                .and_then(|bytes| Self::parse(&path, &bytes));
            match parsed {
                Ok(list) => return Ok(list),
                Err(err) => tracing::warn!(error = %err, "skipping CNI config"),
            }
        }
        Err(CniError::NoConfig(dir.to_path_buf()))
    }

    /// The stdin of the chain's `index`th plugin.
    fn plugin_stdin(&self, index: usize, prev_result: Option<&Value>) -> Option<Vec<u8>> {
        let mut conf = self.plugins.get(index)?.clone();
        conf.insert("name".into(), Value::String(self.name.clone()));
        conf.insert("cniVersion".into(), Value::String(self.cni_version.clone()));
        match prev_result {
            Some(prev) => conf.insert("prevResult".into(), prev.clone()),
            None => conf.remove("prevResult"),
        };
        serde_json::to_vec(&Value::Object(conf)).ok()
    }

    fn plugin_type(&self, index: usize) -> &str {
        self.plugins
            .get(index)
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str)
            .unwrap_or_default()
    }
}

/// The pod's address in a CNI result: the first IPv4 address (else the
/// first address) of `ips` (spec 0.3.0 and later) or `ip4.ip` (0.1/0.2).
pub fn result_address(result: &Value) -> Option<IpAddr> {
    let parse = |s: &str| -> Option<IpAddr> { s.split('/').next()?.parse().ok() };
    let mut addresses: Vec<IpAddr> = result
        .get("ips")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|ip| parse(ip.get("address")?.as_str()?))
        .collect();
    if let Some(ip4) = result
        .get("ip4")
        .and_then(|v| v.get("ip"))
        .and_then(Value::as_str)
        .and_then(parse)
    {
        addresses.push(ip4);
    }
    addresses
        .iter()
        .find(|a| a.is_ipv4())
        .or(addresses.first())
        .copied()
}

/// Where the CNI network finds its configuration and plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniConfig {
    /// Directory of network configurations (e.g. `/etc/cni/net.d`).
    pub conf_dir: PathBuf,
    /// Directories searched for plugin binaries, in order (`CNI_PATH`).
    pub bin_dirs: Vec<PathBuf>,
    /// Where each sandbox's configuration and result are kept.
    pub state_dir: PathBuf,
    /// The pod-side interface name.
    pub ifname: String,
}

/// What ADD left for DEL, per sandbox.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Attachment {
    /// The configuration file ADD used.
    source: PathBuf,
    /// Its raw contents, so DEL runs the same chain after the file changed.
    config: Value,
    /// The chain's final result.
    result: Value,
    /// The loopback plugin ran.
    loopback: bool,
}

/// The pod network as a CNI plugin chain.
#[derive(Debug)]
pub struct CniNetwork {
    config: CniConfig,
}

/// The two commands the runtime uses.
#[derive(Debug, Clone, Copy)]
enum Command {
    Add,
    Del,
}

impl Command {
    fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
        }
    }
}

impl CniNetwork {
    /// A network over `config`; nothing is read until the first use.
    pub fn new(config: CniConfig) -> Self {
        Self { config }
    }

    /// The configuration.
    pub fn config(&self) -> &CniConfig {
        &self.config
    }

    fn attachment_path(&self, sandbox_id: &str) -> PathBuf {
        // Sandbox IDs are hex; anything else is refused by the caller's layout.
        self.config
            .state_dir
            .join("results")
            .join(format!("{sandbox_id}.json"))
    }

    fn find_plugin(&self, plugin: &str) -> Result<PathBuf, CniError> {
        if !plugin.contains('/') {
            for dir in &self.config.bin_dirs {
                let path = dir.join(plugin);
                if path.is_file() {
                    return Ok(path);
                }
            }
        }
        Err(CniError::PluginNotFound {
            plugin: plugin.to_owned(),
            path: self.config.bin_dirs.clone(),
        })
    }

    /// Runs one plugin and returns its parsed stdout (`Null` when empty).
    async fn exec(
        &self,
        plugin: &str,
        command: Command,
        sandbox_id: &str,
        netns: &Path,
        ifname: &str,
        stdin: &[u8],
    ) -> Result<Value, CniError> {
        let binary = self.find_plugin(plugin)?;
        let cni_path = std::env::join_paths(&self.config.bin_dirs)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let mut child = tokio::process::Command::new(&binary)
            .env("CNI_COMMAND", command.as_str())
            .env("CNI_CONTAINERID", sandbox_id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", ifname)
            .env("CNI_PATH", cni_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        if let Some(mut input) = child.stdin.take() {
            // A plugin that exits without reading its config closes the
            // pipe first: its exit status and stderr say why, not EPIPE.
            match input.write_all(stdin).await {
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                other => other?,
            }
        }
        let output = child.wait_with_output().await?;
        let parsed: Option<Value> = serde_json::from_slice(&output.stdout).ok();
        if output.status.success() {
            return Ok(parsed.unwrap_or(Value::Null));
        }
        // A plugin reports failure as an error object on stdout.
        let (code, message) = match &parsed {
            Some(err) if err.get("msg").is_some() || err.get("code").is_some() => {
                let msg = err.get("msg").and_then(Value::as_str).unwrap_or_default();
                let details = err
                    .get("details")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let message = if details.is_empty() {
                    msg.to_owned()
                } else {
                    format!("{msg}; {details}")
                };
                (
                    err.get("code").and_then(Value::as_u64).unwrap_or(0),
                    message,
                )
            }
            _ => (
                0,
                format!(
                    "{}: {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            ),
        };
        Err(CniError::Plugin {
            plugin: plugin.to_owned(),
            command: command.as_str(),
            code,
            message,
        })
    }

    /// Brings `lo` up with the loopback plugin, when it is installed.
    async fn loopback(
        &self,
        command: Command,
        sandbox_id: &str,
        netns: &Path,
    ) -> Result<bool, CniError> {
        if self.find_plugin(LOOPBACK).is_err() {
            return Ok(false);
        }
        let conf = json!({"cniVersion": "0.3.1", "name": "cni-loopback", "type": LOOPBACK});
        let stdin = serde_json::to_vec(&conf).map_err(std::io::Error::other)?;
        self.exec(LOOPBACK, command, sandbox_id, netns, "lo", &stdin)
            .await?;
        Ok(true)
    }

    /// ADD of every plugin in order, each given the previous one's result.
    async fn add_chain(
        &self,
        list: &NetworkConfigList,
        sandbox_id: &str,
        netns: &Path,
    ) -> Result<Value, CniError> {
        let mut prev: Option<Value> = None;
        for index in 0..list.plugins.len() {
            let stdin = list
                .plugin_stdin(index, prev.as_ref())
                .ok_or_else(|| std::io::Error::other("encoding a plugin configuration"))?;
            let result = self
                .exec(
                    list.plugin_type(index),
                    Command::Add,
                    sandbox_id,
                    netns,
                    &self.config.ifname,
                    &stdin,
                )
                .await?;
            // A plugin that prints nothing passes the previous result on.
            if !result.is_null() {
                prev = Some(result);
            }
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    /// DEL of every plugin in reverse order, each given the ADD result.
    /// Every plugin runs; the first failure is returned.
    async fn del_chain(
        &self,
        list: &NetworkConfigList,
        sandbox_id: &str,
        netns: &Path,
        result: Option<&Value>,
    ) -> Result<(), CniError> {
        let mut first_err = None;
        for index in (0..list.plugins.len()).rev() {
            let Some(stdin) = list.plugin_stdin(index, result) else {
                continue;
            };
            if let Err(err) = self
                .exec(
                    list.plugin_type(index),
                    Command::Del,
                    sandbox_id,
                    netns,
                    &self.config.ifname,
                    &stdin,
                )
                .await
            {
                first_err.get_or_insert(err);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn read_attachment(&self, sandbox_id: &str) -> Option<Attachment> {
        let bytes = std::fs::read(self.attachment_path(sandbox_id)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn write_attachment(&self, sandbox_id: &str, attachment: &Attachment) -> Result<(), CniError> {
        let path = self.attachment_path(sandbox_id);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec(attachment).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    }

    /// Runs the chain's ADD for the sandbox and returns its address; for a
    /// sandbox already set up, returns the address it got then.
    #[tracing::instrument(skip_all, fields(sandbox = %sandbox_id))]
    pub async fn setup(
        &self,
        sandbox_id: &str,
        netns_path: &Path,
    ) -> Result<Option<IpAddr>, CniError> {
        if let Some(done) = self.read_attachment(sandbox_id) {
            return Ok(result_address(&done.result));
        }
        let list = NetworkConfigList::load_first(&self.config.conf_dir)?;
        let added = async {
            let loopback = self.loopback(Command::Add, sandbox_id, netns_path).await?;
            let result = self.add_chain(&list, sandbox_id, netns_path).await?;
            let address = result_address(&result).ok_or_else(|| CniError::NoAddress {
                network: list.name.clone(),
                result: result.to_string(),
            })?;
            let config: Value = serde_json::from_slice(&std::fs::read(&list.source)?)
                .map_err(std::io::Error::other)?;
            self.write_attachment(
                sandbox_id,
                &Attachment {
                    source: list.source.clone(),
                    config,
                    result,
                    loopback,
                },
            )?;
            Ok::<_, CniError>(address)
        }
        .await;
        match added {
            Ok(address) => {
                tracing::debug!(%address, network = %list.name, "pod network set up by CNI");
                Ok(Some(address))
            }
            Err(err) => {
                // Leave nothing half-built (an address held by host-local, a
                // veth); the caller may retry from scratch.
                if let Err(cleanup) = self.del_chain(&list, sandbox_id, netns_path, None).await {
                    tracing::warn!(error = %cleanup, "CNI DEL after a failed ADD");
                }
                Err(err)
            }
        }
    }

    /// Runs the chain's DEL with what ADD used and returned. Unknown
    /// sandboxes run DEL of the current configuration (plugins treat
    /// missing state as success); repeated calls are fine.
    #[tracing::instrument(skip_all, fields(sandbox = %sandbox_id))]
    pub async fn teardown(&self, sandbox_id: &str, netns_path: &Path) -> Result<(), CniError> {
        let attachment = self.read_attachment(sandbox_id);
        let list = match &attachment {
            Some(a) => {
                let bytes = serde_json::to_vec(&a.config).map_err(std::io::Error::other)?;
                NetworkConfigList::parse(&a.source, &bytes)?
            }
            None => match NetworkConfigList::load_first(&self.config.conf_dir) {
                Ok(list) => list,
                // Nothing was ever set up without a configuration.
                Err(CniError::NoConfig(_)) => return Ok(()),
                Err(err) => return Err(err),
            },
        };
        self.del_chain(
            &list,
            sandbox_id,
            netns_path,
            attachment.as_ref().map(|a| &a.result),
        )
        .await?;
        if attachment.as_ref().is_some_and(|a| a.loopback)
            && let Err(err) = self.loopback(Command::Del, sandbox_id, netns_path).await
        {
            tracing::debug!(error = %err, "loopback DEL");
        }
        match std::fs::remove_file(self.attachment_path(sandbox_id)) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(err.into()),
        }
    }
}

impl crate::sandbox::PodNetwork for CniNetwork {
    fn setup<'a>(
        &'a self,
        sandbox_id: &'a str,
        netns_path: &'a Path,
    ) -> futures::future::BoxFuture<'a, std::io::Result<Option<IpAddr>>> {
        Box::pin(async move {
            CniNetwork::setup(self, sandbox_id, netns_path)
                .await
                .map_err(std::io::Error::other)
        })
    }

    fn teardown<'a>(
        &'a self,
        sandbox_id: &'a str,
        netns_path: &'a Path,
    ) -> futures::future::BoxFuture<'a, std::io::Result<()>> {
        Box::pin(async move {
            CniNetwork::teardown(self, sandbox_id, netns_path)
                .await
                .map_err(std::io::Error::other)
        })
    }

    fn ready(&self) -> Result<(), String> {
        NetworkConfigList::load_first(&self.config.conf_dir)
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests;
