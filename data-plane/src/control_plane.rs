//! The connection to the control plane: `http://` is plaintext, `https://`
//! is TLS (public roots from the system, or only `--control-plane-ca`), never
//! falling back to plaintext; with `--control-plane-cert/-key` the sidecar
//! presents a client certificate (mutual TLS). `--control-plane-token` rides
//! on every call as `authorization: Bearer …`.

use std::{path::Path, time::Duration};

use tonic::{
    Request, Status,
    metadata::{AsciiMetadataValue, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};

use crate::config::SidecarConfig;

/// A channel to the control plane that carries the sidecar's token.
pub type ControlPlaneChannel = InterceptedService<Channel, Bearer>;

/// Why the control-plane connection cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("invalid --control-plane url: {0}")]
    Url(#[from] http::uri::InvalidUri),
    #[error("--control-plane must start with http:// or https://")]
    Scheme,
    #[error("{0} needs an https:// --control-plane url")]
    TlsFlagWithoutHttps(&'static str),
    #[error("--control-plane-cert and --control-plane-key go together")]
    HalfIdentity,
    #[error("cannot read {flag} {path}: {source}")]
    Read {
        flag: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("--control-plane-token must be visible ASCII")]
    Token,
    #[error("control-plane tls: {0}")]
    Tls(#[from] tonic::transport::Error),
}

/// Adds `authorization: Bearer <token>` to every call (nothing without a
/// token). `Debug` never shows the token.
#[derive(Clone, Default)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Bearer(<redacted>)"
        } else {
            "Bearer(none)"
        })
    }
}

impl Bearer {
    pub fn new(token: Option<&str>) -> Result<Self, ChannelError> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Ok(Self(None));
        };
        let mut value: AsciiMetadataValue =
            MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| ChannelError::Token)?;
        value.set_sensitive(true);
        Ok(Self(Some(value)))
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// The lazily connected channels to the control plane(s) the sidecar's
/// config names: `--control-plane` is one URL or several, comma-separated
/// (replicas on one shared store), each with the same TLS and token.
pub fn channels(
    config: &SidecarConfig,
) -> Result<Vec<(String, ControlPlaneChannel)>, ChannelError> {
    let urls: Vec<&str> = config
        .control_plane
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        return Err(ChannelError::Scheme);
    }
    urls.into_iter()
        .map(|url| Ok((url.to_owned(), channel(config, url)?)))
        .collect()
}

/// The lazily connected channel to one control plane at `url`.
fn channel(config: &SidecarConfig, url: &str) -> Result<ControlPlaneChannel, ChannelError> {
    let https = if url.starts_with("https://") {
        true
    } else if url.starts_with("http://") {
        false
    } else {
        return Err(ChannelError::Scheme);
    };
    let mut endpoint = Endpoint::from_shared(url.to_owned())?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(1))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_while_idle(true)
        .executor(crate::link::OnLink);
    if https {
        endpoint = endpoint.tls_config(tls(config)?)?;
    } else {
        for (flag, set) in [
            ("--control-plane-ca", config.control_plane_ca.is_some()),
            ("--control-plane-cert", config.control_plane_cert.is_some()),
        ] {
            if set {
                return Err(ChannelError::TlsFlagWithoutHttps(flag));
            }
        }
        if config.control_plane_token.is_some() && !is_loopback_url(url) {
            tracing::warn!(
                "--control-plane-token over http:// crosses the network in clear; use https://"
            );
        }
    }
    let bearer = Bearer::new(config.control_plane_token.as_deref())?;
    Ok(InterceptedService::new(endpoint.connect_lazy(), bearer))
}

fn tls(config: &SidecarConfig) -> Result<ClientTlsConfig, ChannelError> {
    let mut tls = ClientTlsConfig::new();
    tls = match &config.control_plane_ca {
        // A private CA is trusted alone: the system's public roots could
        // vouch for a certificate the operator never issued.
        Some(ca) => tls.ca_certificate(Certificate::from_pem(read("--control-plane-ca", ca)?)),
        None => tls.with_native_roots(),
    };
    match (&config.control_plane_cert, &config.control_plane_key) {
        (Some(cert), Some(key)) => {
            let identity = Identity::from_pem(
                read("--control-plane-cert", cert)?,
                read("--control-plane-key", key)?,
            );
            tls = tls.identity(identity);
        }
        (None, None) => {}
        _ => return Err(ChannelError::HalfIdentity),
    }
    Ok(tls)
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, ChannelError> {
    std::fs::read(path).map_err(|source| ChannelError::Read {
        flag,
        path: path.display().to_string(),
        source,
    })
}

fn is_loopback_url(url: &str) -> bool {
    let host = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_are_recognised() {
        for url in [
            "http://127.0.0.1:50051",
            "http://localhost:1",
            "http://[::1]:9/",
        ] {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in ["http://10.0.0.1:50051", "http://cp.internal:50051"] {
            assert!(!is_loopback_url(url), "{url}");
        }
    }

    #[test]
    fn the_token_rides_on_every_call_and_never_in_debug() {
        let mut bearer = Bearer::new(Some("s3cret")).unwrap();
        let req = bearer.call(Request::new(())).unwrap();
        assert_eq!(
            req.metadata().get("authorization").unwrap(),
            "Bearer s3cret"
        );
        assert!(!format!("{bearer:?}").contains("s3cret"));
        let mut none = Bearer::new(None).unwrap();
        assert!(
            none.call(Request::new(()))
                .unwrap()
                .metadata()
                .get("authorization")
                .is_none()
        );
        assert!(Bearer::new(Some("bad\ntoken")).is_err());
    }
}
