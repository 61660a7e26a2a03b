//! TLS for the RTMPS listener: an acceptor from the operator's PEM files, or a self-signed
//! development certificate. The ServerConfig is built with the aws-lc-rs provider explicitly,
//! so nothing depends on (or changes) the process-wide default provider.
//!
//! The certificate can be replaced while the listener runs ([`RtmpsTls::reload_files`], on
//! SIGHUP): the acceptor's `ServerConfig` asks a resolver for the certificate at each
//! handshake, and the resolver hands out whichever [`CertifiedKey`] is current. Connections
//! already established keep the session they negotiated; only new handshakes see the new
//! certificate. A certificate and key that cannot be read, parsed or do not match are refused
//! and the current pair stays.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::error::TlsError;

/// The RTMPS listener's TLS: the acceptor to give [`crate::serve`], and the handle that swaps
/// its certificate. Cheap to clone; every clone swaps the same certificate.
#[derive(Debug, Clone)]
pub struct RtmpsTls {
    config: Arc<ServerConfig>,
    current: Arc<CurrentCertificate>,
    provider: Arc<CryptoProvider>,
}

/// The certificate handed to each new handshake. A std `RwLock` around an `Arc`: the read
/// is a pointer copy, never held across an `.await`, and writes happen once per reload.
#[derive(Debug)]
struct CurrentCertificate(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.0.read().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

impl RtmpsTls {
    /// From a PEM certificate chain (leaf first) and a PEM private key (PKCS#8, PKCS#1 or
    /// SEC1); refused when the key does not match the certificate.
    pub fn from_files(
        cert_pem_path: impl AsRef<Path>,
        key_pem_path: impl AsRef<Path>,
    ) -> Result<Self, TlsError> {
        let provider = provider();
        let certified = read_pem_files(cert_pem_path.as_ref(), key_pem_path.as_ref(), &provider)?;
        RtmpsTls::new(certified, provider)
    }

    /// With a freshly generated self-signed certificate for `hostnames` (DNS names or IP
    /// addresses), for development (`--dev-tls`). Encoders must be told not to verify it
    /// (ffmpeg does not verify by default).
    pub fn dev<S: Into<String>>(hostnames: impl IntoIterator<Item = S>) -> Result<Self, TlsError> {
        let provider = provider();
        let names: Vec<String> = hostnames.into_iter().map(Into::into).collect();
        let generated = rcgen::generate_simple_self_signed(names)?;
        let cert = generated.cert.der().clone();
        let key =
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(generated.key_pair.serialize_der()));
        let certified = CertifiedKey::from_der(vec![cert], key, &provider)?;
        RtmpsTls::new(certified, provider)
    }

    fn new(certified: CertifiedKey, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let current = Arc::new(CurrentCertificate(RwLock::new(Arc::new(certified))));
        let config = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&current) as Arc<dyn ResolvesServerCert>);
        Ok(RtmpsTls {
            config: Arc::new(config),
            current,
            provider,
        })
    }

    /// The acceptor for [`crate::serve`]; it always presents the current certificate.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.config))
    }

    /// Reads the certificate and key files again and, when both are valid and match, makes
    /// them the certificate of every new handshake. On error the current certificate stays.
    pub fn reload_files(
        &self,
        cert_pem_path: impl AsRef<Path>,
        key_pem_path: impl AsRef<Path>,
    ) -> Result<(), TlsError> {
        let certified = read_pem_files(
            cert_pem_path.as_ref(),
            key_pem_path.as_ref(),
            &self.provider,
        )?;
        *self.current.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(certified);
        Ok(())
    }

    /// The current leaf certificate (DER), to log or compare.
    pub fn leaf(&self) -> CertificateDer<'static> {
        let current = self.current.0.read().unwrap_or_else(|e| e.into_inner());
        current.cert[0].clone()
    }

    /// The SHA-256 fingerprint of the current leaf certificate, in hex (as `openssl x509
    /// -fingerprint -sha256` prints it, without colons): names the certificate in logs.
    pub fn fingerprint(&self) -> String {
        let sha256 = rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256
            .tls13()
            .map(|suite| suite.common.hash_provider.hash(self.leaf().as_ref()));
        match sha256 {
            Some(digest) => digest.as_ref().iter().map(|b| format!("{b:02X}")).collect(),
            None => String::new(),
        }
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Builds the RTMPS acceptor from a PEM certificate chain (leaf first) and a PEM private key
/// (PKCS#8, PKCS#1 or SEC1), read once. [`RtmpsTls::from_files`] keeps a handle to reload it.
pub fn load_tls_acceptor(
    cert_pem_path: impl AsRef<Path>,
    key_pem_path: impl AsRef<Path>,
) -> Result<TlsAcceptor, TlsError> {
    RtmpsTls::from_files(cert_pem_path, key_pem_path).map(|tls| tls.acceptor())
}

/// Builds an RTMPS acceptor with a freshly generated self-signed certificate (see
/// [`RtmpsTls::dev`]).
pub fn dev_tls_acceptor<S: Into<String>>(
    hostnames: impl IntoIterator<Item = S>,
) -> Result<TlsAcceptor, TlsError> {
    RtmpsTls::dev(hostnames).map(|tls| tls.acceptor())
}

fn read_pem_files(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
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
    CertifiedKey::from_der(certs, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert: cert_path.display().to_string(),
            key: key_path.display().to_string(),
        },
        e => TlsError::Rustls(e),
    })
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

    #[test]
    fn reload_swaps_the_certificate_or_keeps_the_old_one() {
        let dir = std::env::temp_dir().join(format!("onair-rtmp-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: &str| {
            let c = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
            let (cert, key) = (
                dir.join(format!("{name}.crt")),
                dir.join(format!("{name}.key")),
            );
            std::fs::write(&cert, c.cert.pem()).unwrap();
            std::fs::write(&key, c.key_pair.serialize_pem()).unwrap();
            (cert, key, c.cert.der().clone())
        };
        let (old_cert, old_key, old_der) = write("old.example");
        let (new_cert, new_key, new_der) = write("new.example");
        let tls = RtmpsTls::from_files(&old_cert, &old_key).unwrap();
        assert_eq!(tls.leaf(), old_der);
        let old_fingerprint = tls.fingerprint();
        assert_eq!(old_fingerprint.len(), 64, "{old_fingerprint}");
        // A key that belongs to another certificate is refused; the old pair stays.
        assert!(matches!(
            tls.reload_files(&new_cert, &old_key),
            Err(TlsError::KeyMismatch { .. })
        ));
        assert!(tls
            .reload_files(&new_cert, dir.join("missing.key"))
            .is_err());
        assert_eq!(tls.leaf(), old_der);
        tls.reload_files(&new_cert, &new_key).unwrap();
        assert_eq!(tls.leaf(), new_der);
        assert_ne!(tls.fingerprint(), old_fingerprint);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
