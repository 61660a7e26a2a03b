//! TLS for the RTMPS listener: an acceptor from the operator's PEM files, or a self-signed
//! development certificate. The ServerConfig is built with the aws-lc-rs provider explicitly,
//! so nothing depends on (or changes) the process-wide default provider.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::error::TlsError;

/// Builds the RTMPS acceptor from a PEM certificate chain (leaf first) and a PEM private key
/// (PKCS#8, PKCS#1 or SEC1). Reads the files once, at startup.
pub fn load_tls_acceptor(
    cert_pem_path: impl AsRef<Path>,
    key_pem_path: impl AsRef<Path>,
) -> Result<TlsAcceptor, TlsError> {
    let cert_path = cert_pem_path.as_ref();
    let key_path = key_pem_path.as_ref();
    let open = |path: &Path| {
        File::open(path)
            .map(BufReader::new)
            .map_err(|source| TlsError::Read {
                path: path.display().to_string(),
                source,
            })
    };
    let certs = rustls_pemfile::certs(&mut open(cert_path)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Read {
            path: cert_path.display().to_string(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.display().to_string(),
        });
    }
    let key = rustls_pemfile::private_key(&mut open(key_path)?)
        .map_err(|source| TlsError::Read {
            path: key_path.display().to_string(),
            source,
        })?
        .ok_or_else(|| TlsError::NoPrivateKey {
            path: key_path.display().to_string(),
        })?;
    acceptor(certs, key)
}

/// Builds an RTMPS acceptor with a freshly generated self-signed certificate for `hostnames`
/// (DNS names or IP addresses), for development (`--dev-tls`). Encoders must be told not to
/// verify it (ffmpeg does not verify by default).
pub fn dev_tls_acceptor<S: Into<String>>(
    hostnames: impl IntoIterator<Item = S>,
) -> Result<TlsAcceptor, TlsError> {
    let names: Vec<String> = hostnames.into_iter().map(Into::into).collect();
    let certified = rcgen::generate_simple_self_signed(names)?;
    let cert = certified.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    acceptor(vec![cert], key)
}

fn acceptor(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn dev_certificate_builds() {
        dev_tls_acceptor(["localhost", "127.0.0.1"]).unwrap();
    }

    #[test]
    fn loads_pem_files_and_reports_missing_parts() {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let dir = std::env::temp_dir().join(format!("onair-rtmp-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
        load_tls_acceptor(&cert, &key).unwrap();
        assert!(matches!(
            load_tls_acceptor(&key, &key),
            Err(TlsError::NoCertificate { .. })
        ));
        assert!(matches!(
            load_tls_acceptor(&cert, &cert),
            Err(TlsError::NoPrivateKey { .. })
        ));
        assert!(matches!(
            load_tls_acceptor(dir.join("missing.pem"), &key),
            Err(TlsError::Read { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
