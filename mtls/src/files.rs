//! Where a service's TLS material lives on disk ([`TlsFiles`]), reading it with errors that name
//! the file and the fix, and a warning when a private key is readable by every user.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};

use crate::material::{Identity, TlsError, TrustAnchors};

/// Where a service finds its TLS material on disk: the CA bundle it trusts, and its own
/// certificate chain and private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM CA certificate(s) that peers' certificates must chain to.
    pub ca: PathBuf,
    /// PEM certificate chain of this service, leaf first.
    pub cert: PathBuf,
    /// PEM private key of this service.
    pub key: PathBuf,
}

/// Why TLS files could not be loaded; the message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    #[error("cannot read {role} file {}: {cause}{}", path.display(), hint(cause))]
    Read {
        role: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
    #[error("{role} file {}: {cause}", path.display())]
    Invalid {
        role: &'static str,
        path: PathBuf,
        cause: TlsError,
    },
}

fn hint(err: &io::Error) -> &'static str {
    if err.kind() == io::ErrorKind::NotFound {
        " (run `cargo xtask gen-certs` to create the certificates, or point the flag at yours)"
    } else {
        ""
    }
}

impl TlsFiles {
    /// The files `gen-certs` writes for `service` in `dir`: `ca.pem`, `<service>.pem` and
    /// `<service>.key`.
    pub fn in_dir(dir: &Path, service: &str) -> Self {
        Self {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("{service}.pem")),
            key: dir.join(format!("{service}.key")),
        }
    }

    /// Reads and parses the three files.
    pub fn load(&self) -> Result<(Identity, TrustAnchors), TlsFileError> {
        self.load_with_fingerprint()
            .map(|(identity, anchors, _)| (identity, anchors))
    }

    /// [`Self::load`], plus a hash of the bytes it parsed ([`Self::fingerprint`]'s), so a
    /// watcher knows exactly which contents are in use.
    pub(crate) fn load_with_fingerprint(
        &self,
    ) -> Result<(Identity, TrustAnchors, u64), TlsFileError> {
        let read = |role, path: &Path| {
            std::fs::read(path).map_err(|cause| TlsFileError::Read {
                role,
                path: path.to_owned(),
                cause,
            })
        };
        let invalid = |role, path: &Path| {
            let path = path.to_owned();
            move |cause| TlsFileError::Invalid { role, path, cause }
        };
        let ca_pem = read("CA", &self.ca)?;
        let ca = TrustAnchors::from_pem(&ca_pem).map_err(invalid("CA", &self.ca))?;
        let cert_pem = read("certificate", &self.cert)?;
        let key_pem = read("private key", &self.key)?;
        warn_if_key_readable_by_others(&self.key);
        let identity = Identity::from_pem(&cert_pem, &key_pem)
            .map_err(invalid("certificate/key", &self.cert))?;
        let mut hasher = DefaultHasher::new();
        for contents in [&ca_pem, &cert_pem, &key_pem] {
            contents.hash(&mut hasher);
        }
        Ok((identity, ca, hasher.finish()))
    }

    /// A hash of the three files' contents, to tell cheaply whether any of them changed.
    pub fn fingerprint(&self) -> io::Result<u64> {
        let mut hasher = DefaultHasher::new();
        for path in [&self.ca, &self.cert, &self.key] {
            std::fs::read(path)?.hash(&mut hasher);
        }
        Ok(hasher.finish())
    }
}

#[cfg(unix)]
fn warn_if_key_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode();
        // Group-readable is how Kubernetes mounts a Secret for a non-root user (fsGroup), so
        // only a key every user may read is worth a warning.
        if mode & 0o007 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{:o}", mode & 0o777),
                "private key file is readable by every user; it should be mode 0600 (or 0640 \
                 for a group that needs it)"
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_key_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_files_name_the_missing_file_and_the_fix() {
        let files = TlsFiles::in_dir(Path::new("/nonexistent"), "catalog");
        let err = files.load().unwrap_err().to_string();
        assert!(
            err.contains("/nonexistent/ca.pem") && err.contains("gen-certs"),
            "{err}"
        );
    }
}
