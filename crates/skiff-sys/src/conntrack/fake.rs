//! A recording [`Conntrack`] for tests (feature `fake`).

use std::sync::{Mutex, PoisonError};

use super::{Conntrack, ConntrackError, UdpFlowFilter};

/// Records every deletion asked for.
#[derive(Debug, Default)]
pub struct RecordingConntrack {
    deleted: Mutex<Vec<UdpFlowFilter>>,
}

impl RecordingConntrack {
    /// A fake that accepts everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every filter passed so far, in order.
    pub fn deleted(&self) -> Vec<UdpFlowFilter> {
        self.deleted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Conntrack for RecordingConntrack {
    async fn delete_udp(&self, filter: &UdpFlowFilter) -> Result<(), ConntrackError> {
        self.deleted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(*filter);
        Ok(())
    }
}
