//! Compiles `proto/` with the pure-Rust `protox` (no system `protoc`) and
//! hands the descriptor set to tonic's code generator. The encoded descriptor
//! set is also written to `OUT_DIR` for gRPC server reflection.

use std::{env, fs, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files = ["proto/keel/v1/router.proto", "proto/keel/v1/admin.proto"];
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out.join("keel_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
