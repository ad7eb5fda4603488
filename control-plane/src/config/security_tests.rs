use crate::config::parse;

const SHA: &str = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";

fn server(listen: &str, extra: &str) -> String {
    format!("[server]\ngrpc_listen = \"{listen}\"\nhttp_listen = \"127.0.0.1:0\"\n{extra}\n")
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn an_exposed_open_control_plane_is_refused_unless_allowed() {
    let e = err(&server("0.0.0.0:50051", ""));
    assert!(
        e.contains("`credentials`") && e.contains("0.0.0.0:50051"),
        "{e}"
    );
    assert!(e.contains("allow_unauthenticated"), "{e}");
    let open = parse(&server("0.0.0.0:50051", "allow_unauthenticated = true")).unwrap();
    assert!(open.security.allow_unauthenticated);
    assert!(parse(&server("127.0.0.1:0", "")).is_ok());
    assert!(parse(&server("[::1]:0", "")).is_ok());
    let guarded = format!(
        "{}[[credentials]]\nname = \"ops\"\nrole = \"admin\"\ntoken_sha256 = \"{SHA}\"\n",
        server("0.0.0.0:50051", "")
    );
    assert_eq!(parse(&guarded).unwrap().security.credentials.len(), 1);
}

#[test]
fn bad_credentials_name_their_key() {
    let cred = |body: &str| format!("{}[[credentials]]\n{body}\n", server("127.0.0.1:0", ""));
    for (body, key) in [
        (
            format!("name = \"a\"\nrole = \"root\"\ntoken_sha256 = \"{SHA}\""),
            "credentials[0].role",
        ),
        (
            format!("name = \"a\"\nrole = \"sidecar\"\ntoken_sha256 = \"{SHA}\""),
            "credentials[0].tenant",
        ),
        (
            format!("name = \"a\"\nrole = \"admin\"\ntenant = \"t\"\ntoken_sha256 = \"{SHA}\""),
            "credentials[0].tenant",
        ),
        (
            "name = \"a\"\nrole = \"admin\"\ntoken_sha256 = \"secret\"".to_owned(),
            "credentials[0].token_sha256",
        ),
        (
            format!(
                "name = \"a\"\nrole = \"sidecar\"\ntenant = \"{}\"\ntoken_sha256 = \"{SHA}\"",
                "t".repeat(300)
            ),
            "credentials[0].tenant",
        ),
    ] {
        let e = err(&cred(&body));
        assert!(e.contains(&format!("`{key}`")), "{key}: {e}");
    }
    let twice = format!(
        "{}[[credentials]]\nname = \"a\"\nrole = \"admin\"\ntoken_sha256 = \"{SHA}\"\n\
         [[credentials]]\nname = \"b\"\nrole = \"viewer\"\ntoken_sha256 = \"{SHA}\"\n",
        server("127.0.0.1:0", "")
    );
    assert!(err(&twice).contains("`credentials[1].token_sha256`"));
}

#[test]
fn tls_needs_cert_and_key_and_readable_pem() {
    let e = err(&server(
        "127.0.0.1:0",
        "tls_cert = \"/nonexistent/cert.pem\"",
    ));
    assert!(e.contains("`server.tls_key`"), "{e}");
    let e = err(&server(
        "127.0.0.1:0",
        "client_ca = \"/nonexistent/ca.pem\"",
    ));
    assert!(e.contains("`server.client_ca`"), "{e}");
    let e = err(&server(
        "127.0.0.1:0",
        "tls_cert = \"/nonexistent/cert.pem\"\ntls_key = \"/nonexistent/key.pem\"",
    ));
    assert!(
        e.contains("`server.tls_cert`") && e.contains("/nonexistent/cert.pem"),
        "{e}"
    );
}

#[test]
fn config_names_follow_the_one_rule() {
    let model = |name: &str| {
        format!(
            "{}[[providers]]\nname = \"p\"\napi = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nkeys = [{{ ref = \"k\" }}]\n\
             [[models]]\nname = \"{name}\"\nprovider = \"p\"\nupstream_model = \"u\"\ntier = 1\n\
             input_usd_per_mtok = 1.0\noutput_usd_per_mtok = 1.0\ncontext_tokens = 1000\n",
            server("127.0.0.1:0", "")
        )
    };
    assert!(parse(&model("fine-model")).is_ok());
    let e = err(&model(&"m".repeat(300)));
    assert!(
        e.contains("`models[0].name`") && e.contains("300 bytes"),
        "{e}"
    );
    assert!(!e.contains(&"m".repeat(300)));
    let e = err(&model("tab\\there"));
    assert!(e.contains("control characters"), "{e}");
}
