//! `[[credentials]]` and the TLS / exposure keys of `[server]`, validated:
//! token hashes in hex, roles, a sidecar's tenant, the PEM files read (so a
//! missing file is a config error, exit 64), and no open control plane on a
//! non-loopback address unless `allow_unauthenticated` says so.

use std::{net::SocketAddr, path::Path};

use serde::Deserialize;

use super::error::{ConfigError, invalid};
use crate::auth::{Credential, Role};

/// One `[[credentials]]` entry as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredential {
    pub name: String,
    pub role: String,
    /// A sidecar's tenant (required for `sidecar`, refused for the others).
    pub tenant: Option<String>,
    /// SHA-256 of the token, 64 hex digits (the token is never in the file).
    pub token_sha256: String,
}

/// PEM bytes read from a configured file; never printed.
#[derive(Clone)]
pub struct Pem(pub Vec<u8>);

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pem({} bytes)", self.0.len())
    }
}

/// TLS on the gRPC port.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: Pem,
    pub key: Pem,
    /// Clients must present a certificate signed by this CA (mutual TLS).
    pub client_ca: Option<Pem>,
}

/// Who may call, and how the gRPC port is protected.
#[derive(Debug, Clone, Default)]
pub struct SecurityConfig {
    pub credentials: Vec<Credential>,
    pub tls: Option<TlsConfig>,
    /// No credentials on a non-loopback address was asked for.
    pub allow_unauthenticated: bool,
}

/// The `[server]` keys this module validates.
pub struct RawSecurity<'a> {
    pub credentials: Vec<RawCredential>,
    pub tls_cert: Option<&'a Path>,
    pub tls_key: Option<&'a Path>,
    pub client_ca: Option<&'a Path>,
    pub allow_unauthenticated: bool,
    pub listen: [SocketAddr; 2],
}

pub fn validate(raw: RawSecurity<'_>) -> Result<SecurityConfig, ConfigError> {
    let mut credentials = Vec::with_capacity(raw.credentials.len());
    for (i, c) in raw.credentials.into_iter().enumerate() {
        let credential = validate_credential(i, c)?;
        if let Some(j) = credentials
            .iter()
            .position(|p: &Credential| p.name == credential.name)
        {
            return Err(invalid(
                format!("credentials[{i}].name"),
                format!("duplicate of credentials[{j}].name"),
            ));
        }
        if let Some(j) = credentials
            .iter()
            .position(|p: &Credential| p.token_sha256 == credential.token_sha256)
        {
            return Err(invalid(
                format!("credentials[{i}].token_sha256"),
                format!("same token as credentials[{j}]"),
            ));
        }
        credentials.push(credential);
    }
    let exposed = raw.listen.iter().find(|a| !a.ip().is_loopback());
    if let Some(addr) = exposed
        && credentials.is_empty()
        && !raw.allow_unauthenticated
    {
        return Err(invalid(
            "credentials",
            format!(
                "the control plane listens on {addr}, which is not loopback, and no \
                 [[credentials]] are configured: anyone who can reach it could route, \
                 report and change budgets. Add credentials, or set \
                 [server] allow_unauthenticated = true"
            ),
        ));
    }
    Ok(SecurityConfig {
        credentials,
        tls: validate_tls(raw.tls_cert, raw.tls_key, raw.client_ca)?,
        allow_unauthenticated: raw.allow_unauthenticated,
    })
}

fn validate_credential(i: usize, c: RawCredential) -> Result<Credential, ConfigError> {
    let key = |field: &str| format!("credentials[{i}].{field}");
    if c.name.trim().is_empty() {
        return Err(invalid(key("name"), "must not be empty"));
    }
    keel::names::check("name", &c.name).map_err(|e| invalid(key("name"), e.to_string()))?;
    let role = Role::parse(&c.role)
        .ok_or_else(|| invalid(key("role"), "must be `sidecar`, `admin` or `viewer`"))?;
    let tenant = match (role, c.tenant) {
        (Role::Sidecar, Some(t)) if !t.is_empty() => {
            keel::names::check("tenant", &t).map_err(|e| invalid(key("tenant"), e.to_string()))?;
            Some(t)
        }
        (Role::Sidecar, _) => {
            return Err(invalid(
                key("tenant"),
                "a sidecar credential needs its tenant",
            ));
        }
        (_, Some(_)) => {
            return Err(invalid(
                key("tenant"),
                "only a sidecar credential has a tenant (admin and viewer see every tenant)",
            ));
        }
        (_, None) => None,
    };
    let token_sha256 = parse_sha256(&c.token_sha256).ok_or_else(|| {
        invalid(
            key("token_sha256"),
            "must be the token's SHA-256 as 64 hex digits (`printf %s \"$TOKEN\" | sha256sum`)",
        )
    })?;
    Ok(Credential {
        name: c.name,
        role,
        tenant,
        token_sha256,
    })
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let text = std::str::from_utf8(pair).ok()?;
        *byte = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

fn validate_tls(
    cert: Option<&Path>,
    key: Option<&Path>,
    client_ca: Option<&Path>,
) -> Result<Option<TlsConfig>, ConfigError> {
    let (cert, key) = match (cert, key) {
        (Some(c), Some(k)) => (c, k),
        (None, None) => {
            if client_ca.is_some() {
                return Err(invalid(
                    "server.client_ca",
                    "needs server.tls_cert and server.tls_key (mutual TLS is TLS)",
                ));
            }
            return Ok(None);
        }
        (Some(_), None) => return Err(invalid("server.tls_key", "needed with server.tls_cert")),
        (None, Some(_)) => return Err(invalid("server.tls_cert", "needed with server.tls_key")),
    };
    Ok(Some(TlsConfig {
        cert: read_pem("server.tls_cert", cert)?,
        key: read_pem("server.tls_key", key)?,
        client_ca: client_ca
            .map(|p| read_pem("server.client_ca", p))
            .transpose()?,
    }))
}

fn read_pem(key: &str, path: &Path) -> Result<Pem, ConfigError> {
    let bytes = std::fs::read(path)
        .map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(invalid(
            key,
            format!("{} is not a PEM file", path.display()),
        ));
    }
    Ok(Pem(bytes))
}

#[cfg(test)]
#[path = "security_tests.rs"]
mod tests;
