//! exec probes (upstream `pkg/probe/exec` over the runtime's `ExecSync`): exit
//! code 0 is success; anything else fails with the command's output.

use std::time::Duration;

use k8s_openapi::api::core::v1::ExecAction;

use super::{ExecRunner, ProbeOutcome, ProbeTarget};

/// Upstream keeps at most this much of an exec probe's output.
const MAX_OUTPUT: usize = 10 * 1024;

/// Runs one exec probe.
pub(crate) async fn probe(
    action: &ExecAction,
    target: &ProbeTarget,
    runner: &dyn ExecRunner,
    timeout: Duration,
) -> ProbeOutcome {
    let command = expand_command(action.command.as_deref().unwrap_or_default(), &target.env);
    let joined = command.join(" ");
    let run = runner.exec(&target.container_id, command, timeout);
    match tokio::time::timeout(timeout, run).await {
        Err(_) => ProbeOutcome::Failure(format!("command {joined:?} timed out")),
        Ok(Err(e)) => ProbeOutcome::Unknown(e),
        Ok(Ok((code, mut output))) => {
            output.truncate(MAX_OUTPUT);
            let output = String::from_utf8_lossy(&output).into_owned();
            if code == 0 {
                ProbeOutcome::Success
            } else {
                ProbeOutcome::Failure(output)
            }
        }
    }
}

/// Expands `$(VAR)` references in a probe command from the container's static
/// environment, as upstream's `ExpandContainerCommandOnlyStatic`: an unknown
/// variable stays as written and `$$` escapes a `$`.
pub fn expand_command(command: &[String], env: &[(String, String)]) -> Vec<String> {
    command.iter().map(|arg| expand(arg, env)).collect()
}

fn expand(input: &str, env: &[(String, String)]) -> String {
    let lookup = |name: &str| {
        // Later entries win, like a map built from the env list in order.
        env.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            // `$$` is an escaped `$`.
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    // No closing paren: the rest is literal.
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}
