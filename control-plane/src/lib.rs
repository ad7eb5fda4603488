//! Keel's control plane: owns the catalog, router profiles, routing policy,
//! live signals and the session store, and answers `keel.v1.Router` and
//! `keel.v1.Admin` over gRPC.

pub mod admin;
pub mod auth;
pub mod breaker;
pub mod budget;
pub mod capacity;
pub mod catalog;
pub mod config;
pub mod console;
pub mod decisions;
pub mod difficulty;
pub mod divergence;
pub mod http;
pub mod metrics;
pub mod policy;
pub mod refusal;
pub mod router;
pub mod server;
pub mod signals;
pub mod store;
pub mod store_guard;
pub mod tls;
