//! The default plugins, one module each, and the registry that maps their
//! configuration names to factories.

pub mod default_binder;

use crate::framework::PluginFactory;

/// Every built-in plugin by name (upstream's in-tree registry).
pub fn registry() -> Vec<(&'static str, PluginFactory)> {
    vec![(
        default_binder::NAME,
        default_binder::factory as PluginFactory,
    )]
}
