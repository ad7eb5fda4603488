//! The one rule for the names callers choose: tenants, conversation ids,
//! profiles and model names. Checked at every entry (the control plane's
//! `Route`, `Report` and `Admin`, the sidecar's headers and flags), so that
//! nothing unbounded reaches a store key, a log line or an error message.

/// Longest name accepted, in bytes (the same for every kind of name).
pub const MAX_NAME_BYTES: usize = 256;

/// Why a name was refused. The message names the field and the length, never
/// the name itself (it may be megabytes of anything).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{what} is {len} bytes; at most {max} allowed", max = MAX_NAME_BYTES)]
    TooLong { what: &'static str, len: usize },
    #[error("{what} must not contain control characters")]
    Control { what: &'static str },
}

/// Checks `name` (the field `what`) against the rule: at most
/// [`MAX_NAME_BYTES`] bytes and no control characters (NUL, newlines, escape
/// sequences). An empty name passes: it means "none" or "the default".
pub fn check(what: &'static str, name: &str) -> Result<(), NameError> {
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong {
            what,
            len: name.len(),
        });
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::Control { what });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_and_control_characters_are_refused_without_echo() {
        assert!(check("tenant", "acme-prod_1.eu").is_ok());
        assert!(check("tenant", "").is_ok());
        assert!(check("model", "claude-sonnet-4 (eu) ü").is_ok());
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        let e = check("tenant", &long).unwrap_err();
        assert_eq!(e.to_string(), "tenant is 257 bytes; at most 256 allowed");
        assert!(check("tenant", &"x".repeat(MAX_NAME_BYTES)).is_ok());
        for bad in ["a\0b", "a\nb", "\u{1b}[31m", "a\u{7f}"] {
            let e = check("conversation id", bad).unwrap_err();
            assert!(!e.to_string().contains(bad));
        }
    }
}
