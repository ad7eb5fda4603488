//! Who is calling: bearer tokens resolved to a [`Principal`] (a configured
//! credential with a role, and for a sidecar its tenant), and what each role
//! may do. The gRPC side is in grpc.rs, the HTTP side is [`check_http`].
//!
//! Tokens are never held: the config carries each token's SHA-256, and a
//! presented token is hashed and looked up. Without credentials configured
//! the control plane is open (every caller is [`Principal::Anonymous`]);
//! config validation refuses that on a non-loopback address unless
//! `allow_unauthenticated` says so.

mod grpc;
#[cfg(test)]
mod tests;

use std::{collections::HashMap, sync::Arc};

use http::HeaderMap;
use sha2::{Digest, Sha256};

pub use grpc::{
    Authenticate, MAX_REPORT_OUTCOMES, check_names, principal, scope_report, scope_route,
};

/// A credential's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A sidecar: `Route`, `RouteStream`, `Report` and the catalog, for its
    /// own tenant only.
    Sidecar,
    /// Operators: every `Admin` call, reads and writes, any tenant.
    Admin,
    /// Read-only operators: `Admin` reads (and `/metrics`), any tenant.
    Viewer,
}

impl Role {
    /// Parses a config value (`sidecar`, `admin`, `viewer`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sidecar" => Some(Self::Sidecar),
            "admin" => Some(Self::Admin),
            "viewer" => Some(Self::Viewer),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Sidecar => "sidecar",
            Self::Admin => "admin",
            Self::Viewer => "viewer",
        }
    }
}

/// What a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// `Route`, `RouteStream`, `Report`: a sidecar.
    Route,
    /// The catalog snapshot: any credential (it holds no tenant's data).
    Catalog,
    /// `Admin` reads, `/metrics`: viewer or admin.
    Read,
    /// `Admin` writes: admin.
    Write,
}

/// The caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No credentials are configured: everything is allowed.
    Anonymous,
    /// A configured credential.
    Credential {
        name: Arc<str>,
        role: Role,
        /// A sidecar's tenant (`None` for admin and viewer).
        tenant: Option<Arc<str>>,
    },
}

/// Why a caller was turned away. Messages name the credential and the role,
/// never a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token, or one that matches no credential (→ UNAUTHENTICATED, 401).
    #[error("a valid bearer token is required")]
    Unauthenticated,
    /// A valid token used outside its role or tenant (→ PERMISSION_DENIED, 403).
    #[error("{0}")]
    Forbidden(String),
}

/// One configured credential, as validated from `[[credentials]]`.
#[derive(Debug, Clone)]
pub struct Credential {
    pub name: String,
    pub role: Role,
    pub tenant: Option<String>,
    /// SHA-256 of the token.
    pub token_sha256: [u8; 32],
}

/// The credentials the control plane accepts, by token hash.
#[derive(Debug, Default)]
pub struct Credentials {
    by_hash: HashMap<[u8; 32], Principal>,
}

impl Credentials {
    pub fn new(list: &[Credential]) -> Self {
        let by_hash = list
            .iter()
            .map(|c| {
                let principal = Principal::Credential {
                    name: Arc::from(c.name.as_str()),
                    role: c.role,
                    tenant: c.tenant.as_deref().map(Arc::from),
                };
                (c.token_sha256, principal)
            })
            .collect();
        Self { by_hash }
    }

    /// No credentials configured: every caller is anonymous.
    pub fn is_open(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The principal of an `authorization` header value (`Bearer <token>`).
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Principal, AuthError> {
        if self.is_open() {
            return Ok(Principal::Anonymous);
        }
        let token = authorization
            .and_then(bearer_token)
            .ok_or(AuthError::Unauthenticated)?;
        let hash: [u8; 32] = Sha256::digest(token).into();
        self.by_hash
            .get(&hash)
            .cloned()
            .ok_or(AuthError::Unauthenticated)
    }

    /// Authenticates an HTTP request and checks that its principal may do
    /// `need`: the one check for every protected HTTP endpoint.
    pub fn check_http(&self, headers: &HeaderMap, need: Need) -> Result<Principal, AuthError> {
        let authorization = headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        let principal = self.authenticate(authorization)?;
        principal.allow(need)?;
        Ok(principal)
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    (scheme.eq_ignore_ascii_case(b"bearer ") && !token.is_empty()).then_some(token)
}

impl Principal {
    /// Whether this principal may do `need`.
    pub fn allow(&self, need: Need) -> Result<(), AuthError> {
        let Self::Credential { name, role, .. } = self else {
            return Ok(());
        };
        let allowed = match need {
            Need::Route => *role == Role::Sidecar,
            Need::Catalog => true,
            Need::Read => matches!(role, Role::Viewer | Role::Admin),
            Need::Write => *role == Role::Admin,
        };
        if allowed {
            Ok(())
        } else {
            Err(AuthError::Forbidden(format!(
                "credential `{name}` has role `{}`, which may not {}",
                role.as_str(),
                match need {
                    Need::Route => "route or report (needs `sidecar`)",
                    Need::Catalog => "read the catalog",
                    Need::Read => "read admin data (needs `viewer` or `admin`)",
                    Need::Write => "change admin data (needs `admin`)",
                }
            )))
        }
    }

    /// The tenant a request of this principal acts for: a sidecar's own
    /// tenant (a request naming another one is refused), else the request's
    /// (empty: the default tenant). `requested` must have passed
    /// [`keel::names::check`], since it may appear in the message.
    pub fn tenant<'a>(&'a self, requested: &'a str) -> Result<&'a str, AuthError> {
        match self {
            Self::Credential {
                name,
                tenant: Some(own),
                ..
            } => {
                if requested.is_empty() || requested == &**own {
                    Ok(own)
                } else {
                    Err(AuthError::Forbidden(format!(
                        "credential `{name}` is for tenant `{own}`, not `{requested}`"
                    )))
                }
            }
            _ => Ok(keel::tenant_or_default(requested)),
        }
    }
}

impl From<AuthError> for tonic::Status {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Unauthenticated => tonic::Status::unauthenticated(e.to_string()),
            AuthError::Forbidden(m) => tonic::Status::permission_denied(m),
        }
    }
}

impl AuthError {
    /// The HTTP status of this refusal.
    pub fn http_status(&self) -> http::StatusCode {
        match self {
            Self::Unauthenticated => http::StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => http::StatusCode::FORBIDDEN,
        }
    }
}

/// Lower-case hex SHA-256 of `token`, as `[[credentials]] token_sha256`
/// expects it.
pub fn token_sha256_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
