//! `tls:`: the listener's certificate chain and private key, as PEM files. Read and checked here (a chain,
//! a key, and the key the chain's leaf certifies) when the config is resolved, so `check` and a reload
//! catch a bad pair; the gateway reads them again whenever the files change.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::ring::default_provider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// What is wrong with the files, by the field that names the file to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsFileError {
    #[error("`tls.cert` {0}")]
    Cert(String),
    #[error("`tls.key` {0}")]
    Key(String),
}

/// Where the listener's certificate and key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the leaf.
    pub key: PathBuf,
}

impl ListenerTls {
    /// The chain and key as the TLS stack serves them, or what is wrong with the files.
    pub fn load(&self) -> Result<Arc<CertifiedKey>, TlsFileError> {
        let shown = |p: &PathBuf| p.display().to_string();
        let chain = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsFileError::Cert(format!("{}: {e}", shown(&self.cert))))?;
        if chain.is_empty() {
            return Err(TlsFileError::Cert(format!(
                "{}: no certificate in it; give a PEM file with `-----BEGIN CERTIFICATE-----` blocks, leaf first",
                shown(&self.cert)
            )));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| {
            TlsFileError::Key(format!(
                "{}: {e}; give a PEM private key (PKCS#8, PKCS#1 or SEC1)",
                shown(&self.key)
            ))
        })?;
        CertifiedKey::from_der(chain, key, &default_provider())
            .map(Arc::new)
            .map_err(|e| {
                TlsFileError::Key(format!(
                    "{} does not go with the certificate in {}: {e}",
                    shown(&self.key),
                    shown(&self.cert)
                ))
            })
    }
}
