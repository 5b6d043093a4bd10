//! The resource plugins: NodeResourcesFit (Filter and Score) and
//! NodeResourcesBalancedAllocation (Score), sharing one allocation scorer.

pub mod balanced_allocation;
pub mod fit;
mod scorer;

pub use scorer::ScoringStrategy;
