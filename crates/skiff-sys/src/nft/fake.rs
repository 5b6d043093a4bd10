//! A recording [`Nftables`] for tests (feature `fake`).

use std::sync::{Mutex, PoisonError};

use super::{NftError, Nftables};

/// Records every applied script; can be told to reject them.
#[derive(Debug, Default)]
pub struct RecordingNftables {
    scripts: Mutex<Vec<String>>,
    reject: Mutex<Option<String>>,
}

impl RecordingNftables {
    /// A fake that accepts everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every script applied (or attempted) so far, in order.
    pub fn scripts(&self) -> Vec<String> {
        self.scripts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Makes later scripts fail with this stderr (`None` heals).
    pub fn reject(&self, stderr: Option<&str>) {
        *self.reject.lock().unwrap_or_else(PoisonError::into_inner) = stderr.map(str::to_string);
    }
}

impl Nftables for RecordingNftables {
    async fn apply(&self, script: &str) -> Result<(), NftError> {
        self.scripts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(script.to_string());
        match self
            .reject
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            Some(stderr) => Err(NftError::Rejected(stderr)),
            None => Ok(()),
        }
    }
}
