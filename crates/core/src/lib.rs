//! The cache logic of tiered-cache, free of any Node.js binding.
//!
//! A [`store::Store`] is one namespace: an in-process [`l1::L1`] (moka) in front of a shared [`l2::L2`] (Postgres
//! or Redis), kept coherent across processes by the invalidation [`bus`], with single-flight loads in the process
//! ([`flight`]) and across processes (the L2's lock). [`registry`] shares stores between the threads of a process.

#![warn(missing_docs)]

pub mod bus;
pub mod config;
pub mod error;
pub mod flight;
pub mod key;
pub mod l1;
pub mod l2;
pub mod pattern;
pub mod registry;
pub mod runtime;
pub mod stats;
pub mod store;
pub mod ttl;
pub mod value;

pub use config::{Config, HandleConfig, StoreConfig};
pub use error::{CacheError, ErrorKind};
pub use store::{Json, LoadLease, LoadStep, Outcome, Store};
