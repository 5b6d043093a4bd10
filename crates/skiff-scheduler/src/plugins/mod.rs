//! The default plugins, one module each, and the registry that maps their
//! configuration names to factories.

mod fasthash;
pub mod interpodaffinity;
pub mod podtopologyspread;

#[cfg(test)]
mod bench_tests;
#[cfg(test)]
mod test_util;

use crate::framework::PluginFactory;

/// Every built-in plugin by name (upstream's in-tree registry).
pub fn registry() -> Vec<(&'static str, PluginFactory)> {
    vec![
        (interpodaffinity::NAME, interpodaffinity::new),
        (podtopologyspread::NAME, podtopologyspread::new),
    ]
}
