//! TLS on the gRPC port (tonic over rustls): the configured certificate and
//! key, and with `client_ca` mutual TLS (clients without a certificate signed
//! by it are refused in the handshake).

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::TlsConfig;

/// tonic's server TLS settings from the validated config.
pub fn server_config(tls: &TlsConfig) -> ServerTlsConfig {
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(&tls.cert.0, &tls.key.0));
    if let Some(ca) = &tls.client_ca {
        config = config.client_ca_root(Certificate::from_pem(&ca.0));
    }
    config
}
