//! A recording [`Nftables`] for tests (feature `fake`).

use std::sync::{Mutex, PoisonError};

use super::model::NftModel;
use super::{NftError, Nftables, SetElements, elements};

/// Records every applied script; can be told to reject them. Made with
/// [`RecordingNftables::modelled`] it also keeps the state the scripts
/// build (see [`NftModel`]) and rejects what nft would.
#[derive(Debug, Default)]
pub struct RecordingNftables {
    scripts: Mutex<Vec<String>>,
    loads: Mutex<Vec<String>>,
    reject: Mutex<Option<String>>,
    model: Option<Mutex<NftModel>>,
}

impl RecordingNftables {
    /// A fake that accepts everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fake that applies scripts to an [`NftModel`] (starting empty).
    pub fn modelled() -> Self {
        Self {
            model: Some(Mutex::new(NftModel::new())),
            ..Self::default()
        }
    }

    /// Every script applied (or attempted) so far, in order.
    pub fn scripts(&self) -> Vec<String> {
        self.scripts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every [`Nftables::add_elements`] so far, in order, each as the
    /// `add element` commands it amounts to.
    pub fn loads(&self) -> Vec<String> {
        self.loads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Makes later scripts (and element loads) fail with this stderr (`None` heals).
    pub fn reject(&self, stderr: Option<&str>) {
        *self.reject.lock().unwrap_or_else(PoisonError::into_inner) = stderr.map(str::to_string);
    }

    /// The modelled state (`None` unless made with
    /// [`RecordingNftables::modelled`]).
    pub fn model(&self) -> Option<NftModel> {
        self.model
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(PoisonError::into_inner).clone())
    }
}

impl RecordingNftables {
    /// Applies `script` to the model (when there is one), unless told to
    /// reject.
    fn model_apply(&self, script: &str) -> Result<(), NftError> {
        if let Some(stderr) = self
            .reject
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Err(NftError::Rejected(stderr));
        }
        match &self.model {
            Some(model) => model
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .apply(script)
                .map_err(NftError::Rejected),
            None => Ok(()),
        }
    }
}

impl Nftables for RecordingNftables {
    async fn apply(&self, script: &str) -> Result<(), NftError> {
        self.scripts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(script.to_string());
        self.model_apply(script)
    }

    /// Checks the elements encode as [`super::NftCli`] would send them, then
    /// applies them to the model as one transaction of `add element`s.
    async fn add_elements(&self, table: &str, sets: &[SetElements<'_>]) -> Result<(), NftError> {
        elements::encode_batch(table, sets, 1)?;
        let script: String = sets.iter().map(|s| s.to_script(table)).collect();
        self.loads
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(script.clone());
        self.model_apply(&script)
    }

    /// Lists from the model; without one, prints nothing.
    async fn list(&self, script: &str) -> Result<String, NftError> {
        match &self.model {
            Some(model) => model
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .list(script)
                .map_err(NftError::Rejected),
            None => Ok(String::new()),
        }
    }
}
