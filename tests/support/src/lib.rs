//! Test support for Keel's end-to-end tests: a fake provider that speaks the
//! OpenAI and Anthropic wire formats (replaying recorded fixtures), and a
//! harness that runs the real `keel-control-plane` and `keel-sidecar`
//! binaries on ephemeral ports.

pub mod fake_provider;
pub mod harness;
mod pki;
pub mod redis_server;
mod replay;
pub mod script;
pub mod scripted;

pub use fake_provider::{Behavior, FakeProvider, Recorded};
pub use harness::{ControlPlane, Sidecar, bin_path};
pub use pki::Pki;
pub use redis_server::RedisServer;
pub use scripted::ScriptedCall;
