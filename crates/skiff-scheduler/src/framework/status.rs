//! The result of a plugin call, as upstream's `framework.Status`.

use std::fmt;

/// What a plugin decided (upstream's `framework.Code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Code {
    /// The plugin ran and found nothing wrong.
    #[default]
    Success,
    /// An internal error: the pod is retried with back-off.
    Error,
    /// The pod does not fit here, but preemption might help.
    Unschedulable,
    /// The pod does not fit here and preemption cannot change that.
    UnschedulableAndUnresolvable,
    /// Permit: the pod waits before binding.
    Wait,
    /// The plugin has nothing to do for this pod (PreFilter/PreScore/Bind):
    /// its Filter/Score (or next binder) is skipped.
    Skip,
    /// The pod waits for something other than the cluster (e.g. a PVC to be
    /// bound); it is retried on a relevant event without counting as failure.
    Pending,
}

/// A plugin's verdict: a code, human reasons, and the plugin that gave it.
///
/// `Status::success()` allocates nothing, so the hot Filter/Score paths stay
/// cheap.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    code: Code,
    reasons: Vec<String>,
    plugin: Option<&'static str>,
}

impl Status {
    /// Nothing wrong.
    pub const fn success() -> Self {
        Status {
            code: Code::Success,
            reasons: Vec::new(),
            plugin: None,
        }
    }

    /// A status with `code` and one reason.
    pub fn new(code: Code, reason: impl Into<String>) -> Self {
        Status {
            code,
            reasons: vec![reason.into()],
            plugin: None,
        }
    }

    /// A status with `code` and several reasons.
    pub fn with_reasons(code: Code, reasons: Vec<String>) -> Self {
        Status {
            code,
            reasons,
            plugin: None,
        }
    }

    /// `Unschedulable` with one reason.
    pub fn unschedulable(reason: impl Into<String>) -> Self {
        Status::new(Code::Unschedulable, reason)
    }

    /// `UnschedulableAndUnresolvable` with one reason.
    pub fn unresolvable(reason: impl Into<String>) -> Self {
        Status::new(Code::UnschedulableAndUnresolvable, reason)
    }

    /// `Error` with one reason.
    pub fn error(reason: impl Into<String>) -> Self {
        Status::new(Code::Error, reason)
    }

    /// `Skip`.
    pub const fn skip() -> Self {
        Status {
            code: Code::Skip,
            reasons: Vec::new(),
            plugin: None,
        }
    }

    /// Records the plugin that produced this status.
    pub fn with_plugin(mut self, plugin: &'static str) -> Self {
        self.plugin = Some(plugin);
        self
    }

    /// The code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The reasons, in order.
    pub fn reasons(&self) -> &[String] {
        &self.reasons
    }

    /// The plugin that produced this status, when recorded.
    pub fn plugin(&self) -> Option<&'static str> {
        self.plugin
    }

    /// `Success`.
    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    /// `Skip`.
    pub fn is_skip(&self) -> bool {
        self.code == Code::Skip
    }

    /// `Unschedulable` or `UnschedulableAndUnresolvable`.
    pub fn is_rejected(&self) -> bool {
        matches!(
            self.code,
            Code::Unschedulable | Code::UnschedulableAndUnresolvable
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reasons.join(", "))
    }
}
