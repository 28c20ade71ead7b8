//! TLS on the listener (`tls:`): the certificate Pingora's rustls acceptor serves, held here and swapped
//! whole when its files change (checked on the reloader's tick and on SIGHUP, so a renewed certificate,
//! or a Kubernetes Secret's symlink swap, is served without a restart). A pair that does not load is
//! logged and counted; the running certificate stays. Connections already open keep the one they began
//! with.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use pingora::listeners::tls::TlsSettings;
use pingora::protocols::ALPN;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use crate::config::{ListenerTls, TlsFileError};

/// The listener's certificate, as currently served.
#[derive(Debug)]
pub struct Certificate {
    files: ListenerTls,
    current: ArcSwap<CertifiedKey>,
    /// What the two files hashed to when `current` was read from them.
    seen: Mutex<Option<[u8; 32]>>,
}

/// What a look at the files found.
#[derive(Debug, PartialEq, Eq)]
pub enum Refresh {
    Unchanged,
    Replaced,
    /// The files changed but do not load; the running certificate stays.
    Failed(TlsFileError),
}

/// Both files' bytes hashed together, or `None` when either cannot be read (mid-swap).
fn digest(files: &ListenerTls) -> Option<[u8; 32]> {
    let (cert, key) = (std::fs::read(&files.cert).ok()?, std::fs::read(&files.key).ok()?);
    let mut h = Sha256::new();
    h.update((cert.len() as u64).to_be_bytes());
    h.update(cert);
    h.update(key);
    Some(h.finalize().into())
}

impl Certificate {
    /// Reads the pair; an error names the file to fix.
    pub fn load(files: &ListenerTls) -> Result<Arc<Certificate>, TlsFileError> {
        let seen = digest(files);
        Ok(Arc::new(Certificate {
            current: ArcSwap::new(files.load()?),
            files: files.clone(),
            seen: Mutex::new(seen),
        }))
    }

    /// Pingora's settings for a listener that serves this certificate, HTTP/2 or HTTP/1.1 by ALPN.
    pub fn settings(self: &Arc<Self>) -> pingora::Result<TlsSettings> {
        // No paths: the resolver is asked on every handshake instead.
        let mut s = TlsSettings::intermediate("", "")?;
        s.set_cert_resolver(self.clone());
        s.set_alpn(ALPN::H2H1);
        Ok(s)
    }

    /// Reads the files again if their content changed, and serves the new pair if it loads.
    pub fn refresh(&self) -> Refresh {
        let now = digest(&self.files);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if now.is_none() || now == *seen {
            return Refresh::Unchanged;
        }
        // Whatever the outcome, this content is not looked at again until it changes.
        *seen = now;
        match self.files.load() {
            Ok(pair) => {
                self.current.store(pair);
                Refresh::Replaced
            }
            Err(e) => Refresh::Failed(e),
        }
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}
