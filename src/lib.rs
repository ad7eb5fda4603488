//! Keel's public gRPC contract, generated from `proto/keel/v1`, and the small
//! helpers both planes share.

pub mod fingerprint;
pub mod gencache;
pub mod keys;
pub mod metadata;
pub mod names;
pub mod semconv;
pub mod shutdown;
pub mod telemetry;

/// Generated types and gRPC stubs of package `keel.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("keel.v1");
}

/// Encoded `FileDescriptorSet` of `proto/`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("keel_descriptor");

/// Longest conversation id accepted, in bytes (the rule of [`names`]).
pub const MAX_CONVERSATION_ID_BYTES: usize = names::MAX_NAME_BYTES;

/// Tenant used when a request names none.
pub const DEFAULT_TENANT: &str = "default";

/// `tenant`, or [`DEFAULT_TENANT`] when it is empty (the proto's "none").
pub fn tenant_or_default(tenant: &str) -> &str {
    if tenant.is_empty() {
        DEFAULT_TENANT
    } else {
        tenant
    }
}
