//! A bad config fails start-up with exit code 64 and a message naming the
//! file and the key.

use std::process::Command;

use keel_testkit::bin_path;

fn start_with(config: &str) -> (Option<i32>, String) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("keel.toml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(bin_path("keel-control-plane"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const SERVER: &str = r#"
[server]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"
"#;

const PROVIDER: &str = r#"
[[providers]]
name = "alpha"
api = "openai"
base_url = "http://127.0.0.1:9/v1"
keys = [{ ref = "alpha-main" }]
"#;

fn model(provider: &str, price: &str) -> String {
    format!(
        r#"
[[models]]
name = "m"
provider = "{provider}"
upstream_model = "m-up"
tier = 2
input_usd_per_mtok = {price}
output_usd_per_mtok = 1.0
context_tokens = 1000
"#
    )
}

#[test]
fn unknown_key_is_named() {
    let (code, err) = start_with(&format!(
        "{SERVER}bogus_key = 1\n{PROVIDER}{}",
        model("alpha", "1.0")
    ));
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("bogus_key"), "{err}");
    assert!(err.contains("keel.toml"), "names the file: {err}");
}

#[test]
fn model_with_unknown_provider_is_named() {
    let (code, err) = start_with(&format!("{SERVER}{PROVIDER}{}", model("nope", "1.0")));
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("models[0].provider"), "{err}");
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn negative_price_is_named() {
    let (code, err) = start_with(&format!("{SERVER}{PROVIDER}{}", model("alpha", "-3.0")));
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("models[0].input_usd_per_mtok"), "{err}");
}

#[test]
fn missing_file_is_a_config_error() {
    let out = Command::new(bin_path("keel-control-plane"))
        .args(["--config", "/nonexistent/keel.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/keel.toml"));
}
