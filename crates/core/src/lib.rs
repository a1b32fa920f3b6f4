//! The cache logic of tiered-cache, free of any Node.js binding.
//!
//! The front door is [`Cache`]: one handle per cache the application opens, which checks every input and owns its
//! `getOrSet` leases. Behind it, a `store` is one namespace: an in-process L1 (moka) in front of a shared L2
//! (Postgres or Redis, behind one seam in `l2`), kept coherent across processes by the invalidation bus, with
//! single-flight loads in the process and across processes (the L2's lock). Stores are shared by every handle of a
//! process with the same configuration. Every numeric rule (range, default) is written once, in [`rules`].

#![warn(missing_docs)]

mod bus;
pub mod cache;
mod config;
pub mod error;
mod flight;
mod key;
mod l1;
mod l2;
mod options;
mod pattern;
mod registry;
pub mod rules;
pub mod runtime;
mod stats;
mod store;
pub mod tags;
mod ttl;
mod value;

pub use cache::{Cache, LoadStart, SetManyEntry};
pub use error::{CacheError, ErrorKind};
pub use l1::L1Entry;
pub use stats::StatsSnapshot;
pub use store::{ErrorSink, Json, Outcome, Transition};
