//! Keel's sidecar: speaks the OpenAI and Anthropic HTTP APIs to the app next
//! to it, asks the control plane which target serves each request, forwards
//! the request with this host's provider key, streams the answer back and
//! reports the outcome.

pub mod bare_errors;
pub mod body;
pub mod chat;
pub mod chat_body;
pub mod config;
pub mod control_plane;
pub mod cooldown;
pub mod count_tokens;
pub mod cues;
pub mod error;
pub mod facts;
pub mod features;
pub mod format;
pub mod forward;
pub mod genai_span;
pub mod handler;
pub mod headers;
pub mod identity;
pub mod inbound;
pub mod keys;
pub mod link;
pub mod listener;
pub mod metrics;
pub mod outcome;
pub mod overhead;
pub mod passthrough;
pub mod refusal;
pub mod relay;
pub mod replicas;
pub mod report;
pub mod respond;
pub mod responses;
pub mod rewrite;
pub mod route;
pub mod route_stream;
pub mod scan;
pub mod server;
pub mod side;
pub mod state;
pub mod translate;
pub mod upstream;
