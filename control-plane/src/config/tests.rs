use super::{Objective, parse};

const BASE: &str = r#"
[server]
grpc_listen = "127.0.0.1:0"
http_listen = "127.0.0.1:0"

[[providers]]
name = "alpha"
api = "openai"
base_url = "http://127.0.0.1:9/v1/"
keys = [{ ref = "alpha-main", rpm = 100 }]

[[models]]
name = "strong"
provider = "alpha"
upstream_model = "strong-up"
tier = 3
input_usd_per_mtok = 3.0
output_usd_per_mtok = 15.0
context_tokens = 200000
capabilities = ["tools", "vision"]
"#;

fn err(extra: &str) -> String {
    parse(&format!("{BASE}{extra}")).unwrap_err().to_string()
}

#[test]
fn valid_config_has_builtin_profiles_and_defaults() {
    let c = parse(BASE).unwrap();
    for p in ["CHAT", "AGENT", "BATCH", "SAVINGS"] {
        assert!(c.profiles.contains_key(p), "{p}");
    }
    assert!(c.profiles["AGENT"].session_lock);
    assert!(!c.profiles["CHAT"].session_lock);
    assert_eq!(c.profiles["SAVINGS"].objective, Objective::Savings);
    assert_eq!(c.profiles["BATCH"].shed_priority, 2);
    assert_eq!(c.profiles["AGENT"].shed_priority, 0);
    assert_eq!(c.routing.explore_every, 50);
    assert_eq!(c.routing.default_profile, "CHAT");
    assert_eq!(c.store.session_idle_ttl.as_secs(), 24 * 3600);
    assert_eq!(
        c.catalog.providers()[0].base_url,
        "http://127.0.0.1:9/v1",
        "trailing slash trimmed"
    );
}

#[test]
fn profiles_are_tuned_and_defined_in_config() {
    let c = parse(&format!(
        "{BASE}\n[profiles.AGENT]\nquality_floor = 3\n[profiles.NIGHTLY]\nobjective = \"cost\"\nallowed_models = [\"strong\"]\n"
    ))
    .unwrap();
    assert_eq!(c.profiles["AGENT"].quality_floor, 3);
    assert!(
        c.profiles["AGENT"].session_lock,
        "tuning keeps the built-in lock"
    );
    assert_eq!(c.profiles["NIGHTLY"].objective, Objective::Cost);
}

#[test]
fn bad_values_name_their_key() {
    assert!(
        err("\n[profiles.AGENT]\nquality_floor = 9\n").contains("profiles.AGENT.quality_floor")
    );
    assert!(err("\n[profiles.X]\nobjective = \"fastest\"\n").contains("profiles.X.objective"));
    assert!(
        err("\n[profiles.X]\nallowed_models = [\"nope\"]\n")
            .contains("profiles.X.allowed_models[0]")
    );
    assert!(err("\n[routing]\ndefault_profile = \"NOPE\"\n").contains("routing.default_profile"));
    assert!(err("\n[aliases]\nbest = \"nope\"\n").contains("aliases.best"));
    assert!(err("\n[store]\nsession_idle_ttl = \"soon\"\n").contains("session_idle_ttl"));
}

#[test]
fn bad_provider_and_model_entries_name_their_key() {
    let bad_api = BASE.replace("api = \"openai\"", "api = \"grpc\"");
    assert!(
        parse(&bad_api)
            .unwrap_err()
            .to_string()
            .contains("providers[0].api")
    );
    let responses_on_anthropic = BASE.replacen(
        "api = \"openai\"",
        "api = \"anthropic\"\nresponses = true",
        1,
    );
    assert!(
        parse(&responses_on_anthropic)
            .unwrap_err()
            .to_string()
            .contains("providers[0].responses")
    );
    let bad_url = BASE.replace("http://127.0.0.1:9/v1/", "ftp://x");
    assert!(
        parse(&bad_url)
            .unwrap_err()
            .to_string()
            .contains("providers[0].base_url")
    );
    let secret_like = BASE.replace("alpha-main", "sk live key");
    assert!(
        parse(&secret_like)
            .unwrap_err()
            .to_string()
            .contains("providers[0].keys[0].ref")
    );
    let bad_cap = BASE.replace("\"vision\"", "\"telepathy\"");
    assert!(
        parse(&bad_cap)
            .unwrap_err()
            .to_string()
            .contains("models[0].capabilities[1]")
    );
    let zero_ctx = BASE.replace("context_tokens = 200000", "context_tokens = 0");
    assert!(
        parse(&zero_ctx)
            .unwrap_err()
            .to_string()
            .contains("models[0].context_tokens")
    );
    let neg = BASE.replace("output_usd_per_mtok = 15.0", "output_usd_per_mtok = -1.0");
    assert!(
        parse(&neg)
            .unwrap_err()
            .to_string()
            .contains("models[0].output_usd_per_mtok")
    );
}

#[test]
fn missing_required_key_is_named() {
    let no_tier = BASE.replace("tier = 3\n", "");
    let e = parse(&no_tier).unwrap_err().to_string();
    assert!(e.contains("tier"), "{e}");
}

#[test]
fn divergence_table_is_optional_validated_and_strict() {
    let c = parse(BASE).unwrap();
    assert!(c.divergence.enabled, "on by default");
    assert_eq!(c.divergence.escalation, crate::divergence::Escalation::Off);
    let c = parse(&format!(
        "{BASE}\n[divergence]\nbackoff_turns = 6\nescalation = \"stop\"\n[divergence.thresholds]\nrepeated_action = 5\n"
    ))
    .unwrap();
    assert_eq!(c.divergence.backoff_turns, 6);
    assert_eq!(c.divergence.thresholds.repeated_action, 5);
    let e = err("\n[divergence.thresholds]\nrepeated_action = 1\n");
    assert!(e.contains("divergence.thresholds.repeated_action"), "{e}");
    let e = err("\n[divergence]\nescalation = \"explode\"\n");
    assert!(e.contains("escalation"), "{e}");
    let e = err("\n[divergence]\nbackof_turns = 3\n");
    assert!(e.contains("backof_turns"), "{e}");
}

#[test]
fn budgets_load_and_profiles_are_validated_naming_the_key() {
    let c = parse(&format!(
        "{BASE}\n[budgets]\nper_conversation_usd = 2.5\nper_conversation_turns = 40\n\
         [load]\nmax_in_flight_per_key = 8\nreserve = 0.25\n\
         [profiles.NIGHTLY]\nobjective = \"spread\"\nshed_priority = 2\n\
         [profiles.NIGHTLY.budgets]\nper_tenant_usd_per_day = 10.0\n"
    ))
    .unwrap();
    assert_eq!(c.budgets.per_conversation_usd, Some(2.5));
    assert_eq!(c.budgets.per_conversation_turns, Some(40));
    assert_eq!(c.load.max_in_flight_per_key, 8);
    let nightly = &c.profiles["NIGHTLY"];
    assert_eq!(nightly.shed_priority, 2);
    assert_eq!(nightly.budgets.per_tenant_usd_per_day, Some(10.0));

    assert!(
        err("[budgets]\nper_conversation_usd = -1.0\n").contains("`budgets.per_conversation_usd`")
    );
    assert!(
        err("[budgets]\nper_conversation_turns = 0\n").contains("`budgets.per_conversation_turns`")
    );
    assert!(err("[budgets]\nper_day = 1.0\n").contains("per_day"));
    assert!(err("[profiles.X]\nshed_priority = 3\n").contains("`profiles.X.shed_priority`"));
    assert!(
        err("[profiles.X.budgets]\nper_conversation_usd = 0.0\n")
            .contains("`profiles.X.budgets.per_conversation_usd`")
    );
    assert!(err("[load]\nreserve = 1.5\n").contains("`load.reserve`"));
    assert!(err("[routing]\nexplore_rate = 0.2\n").contains("`routing.explore_rate`"));
    assert!(
        err("[profiles.X]\nobjective = \"fastest\"\n").contains("savings"),
        "the message lists the known objectives"
    );
}

#[test]
fn server_worker_threads_is_optional_and_validated() {
    assert_eq!(parse(BASE).unwrap().worker_threads, None);
    let with = |n: &str| {
        BASE.replace(
            "http_listen = \"127.0.0.1:0\"\n",
            &format!("http_listen = \"127.0.0.1:0\"\nworker_threads = {n}\n"),
        )
    };
    assert_eq!(parse(&with("1")).unwrap().worker_threads, Some(1));
    let e = parse(&with("0")).unwrap_err().to_string();
    assert!(e.contains("server.worker_threads"), "{e}");
}

#[test]
fn store_session_cache_mb_has_a_default_and_is_validated() {
    assert_eq!(
        parse(BASE).unwrap().store.session_cache_bytes,
        crate::store::DEFAULT_SESSION_CACHE_BYTES
    );
    let set = parse(&format!("{BASE}\n[store]\nsession_cache_mb = 8\n")).unwrap();
    assert_eq!(set.store.session_cache_bytes, 8 * 1024 * 1024);
    let e = err("\n[store]\nsession_cache_mb = 0\n");
    assert!(e.contains("store.session_cache_mb"), "{e}");
    let e = err("\n[store]\nsession_cache_mb = -1\n");
    assert!(e.contains("session_cache_mb"), "{e}");
}

#[test]
fn aliases_may_be_patterns_and_name_auto() {
    let c = parse(&format!(
        "{BASE}\n[aliases]\n\"claude-*\" = \"auto\"\n\"gpt-5*\" = \"strong\"\n\"best\" = \"strong\"\n"
    ))
    .unwrap();
    assert_eq!(c.catalog.resolve("claude-opus-4-5"), "auto");
    assert_eq!(c.catalog.resolve("gpt-5.1-codex"), "strong");
    assert_eq!(c.catalog.resolve("best"), "strong");
    assert_eq!(c.catalog.resolve("gpt-4o"), "gpt-4o");
    assert!(err("\n[aliases]\nauto = \"strong\"\n").contains("aliases.auto"));
    assert!(err("\n[aliases]\n\"\" = \"strong\"\n").contains("aliases."));
    assert!(err("\n[aliases]\nstrong = \"auto\"\n").contains("aliases.strong"));
}

#[test]
fn telemetry_takes_a_collector_url() {
    assert!(
        err("\n[telemetry]\notlp_endpoint = \"collector:4318\"\n")
            .contains("telemetry.otlp_endpoint")
    );
    assert!(err("\n[telemetry]\nendpoint = \"http://c\"\n").contains("endpoint"));
    let c = parse(&format!(
        "{BASE}\n[telemetry]\notlp_endpoint = \"http://collector:4318\"\n"
    ))
    .unwrap();
    assert_eq!(c.otlp_endpoint.as_deref(), Some("http://collector:4318"));
}

#[test]
fn the_redis_backend_takes_a_url_without_a_password_and_sentinel_with_a_name() {
    let redis = |keys: &str| format!("{BASE}\n[store]\nbackend = \"redis\"\n{keys}");
    let c = parse(&redis("redis_url = \"rediss://cache.internal:6380/2\"")).unwrap();
    let settings = c.store.redis.expect("redis settings");
    assert_eq!(settings.url, "rediss://cache.internal:6380/2");
    assert_eq!(settings.durability, crate::store::Durability::Strict);
    assert!(
        parse(BASE).unwrap().store.redis.is_none(),
        "sled by default"
    );
    let e = |keys: &str| parse(&redis(keys)).unwrap_err().to_string();
    assert!(e("").contains("store.redis_url"));
    assert!(e("redis_url = \"http://x:1\"").contains("redis://"));
    let leaked = e("redis_url = \"redis://u:hunter2@x:1/0\"");
    assert!(leaked.contains("redis_password_env"), "{leaked}");
    assert!(!leaked.contains("hunter2"), "the password is never echoed");
    assert!(
        e("redis_url = \"redis://x\"\nredis_sentinel = [\"s1:26379\"]").contains("redis_master")
    );
    assert!(
        e("redis_url = \"redis://x\"\nredis_password_env = \"KEEL_TEST_NO_SUCH_VAR\"")
            .contains("KEEL_TEST_NO_SUCH_VAR")
    );
    let sentinel = parse(&redis(
        "redis_url = \"redis://x/0\"\nredis_sentinel = [\"s1:26379\", \"s2:26379\"]\n\
         redis_master = \"keel\"\ndurability = \"best-effort\"",
    ))
    .unwrap()
    .store
    .redis
    .unwrap();
    assert_eq!(sentinel.sentinels.len(), 2);
    assert_eq!(sentinel.durability, crate::store::Durability::BestEffort);
    let sled_with_url = parse(&format!("{BASE}\n[store]\nredis_url = \"redis://x\"\n"));
    assert!(
        sled_with_url
            .unwrap_err()
            .to_string()
            .contains("store.backend")
    );
}

#[test]
fn gen_ai_provider_name_is_by_api_unless_a_provider_names_it() {
    let by_api = parse(BASE).unwrap();
    assert_eq!(by_api.catalog.target(0, 0).gen_ai_provider_name, "openai");
    let anthropic = parse(&BASE.replacen("api = \"openai\"", "api = \"anthropic\"", 1)).unwrap();
    assert_eq!(
        anthropic.catalog.target(0, 0).gen_ai_provider_name,
        "anthropic"
    );
    let named = BASE.replacen(
        "api = \"openai\"",
        "api = \"openai\"\ngen_ai_provider_name = \"azure.ai.openai\"",
        1,
    );
    let t = parse(&named).unwrap().catalog.target(0, 0);
    assert_eq!(
        (t.gen_ai_provider_name.as_str(), t.provider.as_str()),
        ("azure.ai.openai", "alpha")
    );
    let bad = BASE.replacen(
        "api = \"openai\"",
        "api = \"openai\"\ngen_ai_provider_name = \"Azure OpenAI\"",
        1,
    );
    assert!(
        parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("providers[0].gen_ai_provider_name")
    );
}
