//! Key references: the control plane names keys, the host that forwards the
//! request holds the secrets.

/// Environment variable that holds the secret for key reference `key_ref`:
/// `KEEL_KEY_` + the reference in upper case with every non-alphanumeric
/// character turned into `_` (`alpha-main` → `KEEL_KEY_ALPHA_MAIN`).
pub fn env_var_for(key_ref: &str) -> String {
    let mut name = String::with_capacity(9 + key_ref.len());
    name.push_str("KEEL_KEY_");
    name.extend(key_ref.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    name
}

#[cfg(test)]
mod tests {
    use super::env_var_for;

    #[test]
    fn key_reference_maps_to_upper_snake_env_var() {
        assert_eq!(env_var_for("alpha-main"), "KEEL_KEY_ALPHA_MAIN");
        assert_eq!(
            env_var_for("anthropic.backup/2"),
            "KEEL_KEY_ANTHROPIC_BACKUP_2"
        );
    }
}
