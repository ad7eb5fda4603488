//! Configuration errors: each names the file and the offending key.

use std::path::PathBuf;

/// A configuration error; the binary prints it and exits with code 64.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}{message}", file_prefix(path))]
    Syntax {
        path: Option<PathBuf>,
        message: String,
    },
    #[error("{}invalid `{key}`: {message}", file_prefix(path))]
    Invalid {
        path: Option<PathBuf>,
        key: String,
        message: String,
    },
}

fn file_prefix(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!("{}: ", p.display()))
        .unwrap_or_default()
}

impl ConfigError {
    pub(crate) fn in_file(self, file: &std::path::Path) -> Self {
        match self {
            Self::Syntax { message, .. } => Self::Syntax {
                path: Some(file.to_owned()),
                message,
            },
            Self::Invalid { key, message, .. } => Self::Invalid {
                path: Some(file.to_owned()),
                key,
                message,
            },
            other => other,
        }
    }
}

pub(super) fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: None,
        key: key.into(),
        message: message.into(),
    }
}
