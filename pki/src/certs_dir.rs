//! Writing the PKI to a folder, as `cargo xtask gen-certs` does.
//!
//! - Files are written atomically (temporary file, then rename), so a service that reloads them
//!   never reads half a file.
//! - Key files are created owner-only (0600) from the start; certificates are 0644.
//! - An existing CA is reused unless `force` is set: only the leaf certificates are re-issued,
//!   so peers that trust the CA keep trusting the new leaves.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use time::OffsetDateTime;

use crate::issue::{CertificateAuthority, CertifiedKey, ServicePki, Validity};

/// The files every service set-up needs, relative to the folder.
pub const FILES: [&str; 8] = [
    "ca.pem",
    "ca.key",
    "discount.pem",
    "discount.key",
    "catalog.pem",
    "catalog.key",
    "postgres.pem",
    "postgres.key",
];

/// The names `gen-certs` writes itself, which no other certificate may take.
const RESERVED: [&str; 4] = ["ca", "discount", "catalog", "postgres"];

/// What `gen-certs` is asked to do.
#[derive(Debug, Clone)]
pub struct GenCerts {
    /// Output folder.
    pub dir: PathBuf,
    /// Validity of new certificates, in days.
    pub days: u32,
    /// Replace an existing CA.
    pub force: bool,
    /// Validity of the service (leaf) certificates in hours, instead of `days` (short-lived
    /// certificates for rotation; the CA, if one is made, still gets `days`).
    pub leaf_hours: Option<u32>,
    /// Issue client certificates for these services only (`<name>.pem`, `<name>.key`), leaving
    /// the CA's and the services' files alone.
    pub services: Vec<String>,
}

impl GenCerts {
    /// The default set (CA, Discount, Catalog, PostgreSQL) in `dir`, valid for `days` days.
    pub fn new(dir: impl Into<PathBuf>, days: u32) -> Self {
        Self {
            dir: dir.into(),
            days,
            force: false,
            leaf_hours: None,
            services: Vec::new(),
        }
    }

    fn leaf_validity(&self) -> Validity {
        match self.leaf_hours {
            Some(hours) => Validity::lasting(time::Duration::hours(i64::from(hours))),
            None => Validity::days(self.days),
        }
    }
}

/// One file written, for the report.
#[derive(Debug, Clone)]
pub struct Written {
    /// The certificate file.
    pub cert_path: PathBuf,
    /// The key file.
    pub key_path: PathBuf,
    /// What it is.
    pub what: &'static str,
    /// When the certificate expires.
    pub not_after: OffsetDateTime,
    /// Whether an existing file was kept rather than written.
    pub reused: bool,
}

/// Whether `dir` holds every file the services need.
pub fn is_complete(dir: &Path) -> bool {
    FILES.iter().all(|f| dir.join(f).is_file())
}

/// Creates (or re-issues) the CA and the service certificates in `opts.dir`.
pub fn gen_certs(opts: &GenCerts) -> anyhow::Result<Vec<Written>> {
    if opts.days == 0 {
        bail!("--days must be at least 1");
    }
    fs::create_dir_all(&opts.dir)
        .with_context(|| format!("cannot create {}", opts.dir.display()))?;
    let (ca_pem, ca_key) = (opts.dir.join("ca.pem"), opts.dir.join("ca.key"));

    let existing_ca = match (ca_pem.exists(), ca_key.exists(), opts.force) {
        (_, _, true) | (false, false, _) => None,
        (true, true, false) => Some(load_ca(&ca_pem, &ca_key)?),
        (has_cert, _, false) => bail!(
            "{} exists but {} does not: restore it, or pass --force to create a new CA \
             (every certificate it signed will then stop being trusted)",
            if has_cert {
                ca_pem.display()
            } else {
                ca_key.display()
            },
            if has_cert {
                ca_key.display()
            } else {
                ca_pem.display()
            },
        ),
    };
    if opts.leaf_hours == Some(0) {
        bail!("--hours must be at least 1");
    }
    for service in &opts.services {
        if RESERVED.contains(&service.as_str()) {
            bail!("--service {service}: that name is reserved (run without --service to renew it)");
        }
    }
    let reused = existing_ca.is_some();
    let ca = match existing_ca {
        Some(ca) => ca,
        None => CertificateAuthority::new("Shop Private CA", Validity::days(opts.days))?,
    };

    let mut written = Vec::new();
    if !reused {
        written.push(write_pair(
            &opts.dir,
            "ca",
            "private CA",
            ca.certified_key(),
        )?);
    } else {
        written.push(Written {
            cert_path: ca_pem,
            key_path: ca_key,
            what: "private CA (existing)",
            not_after: ca.certified_key().validity.not_after,
            reused: true,
        });
    }
    if !opts.services.is_empty() {
        for service in &opts.services {
            let cert = ca.issue_client(service, opts.leaf_validity())?;
            written.push(write_pair(&opts.dir, service, "client certificate", &cert)?);
        }
        return Ok(written);
    }
    let pki = ServicePki::from_ca_for(ca, opts.leaf_validity())?;
    written.push(write_pair(
        &opts.dir,
        "discount",
        "Discount server certificate",
        &pki.discount,
    )?);
    written.push(write_pair(
        &opts.dir,
        "catalog",
        "Catalog client certificate",
        &pki.catalog,
    )?);
    written.push(write_pair(
        &opts.dir,
        "postgres",
        "PostgreSQL server certificate",
        &pki.postgres,
    )?);
    Ok(written)
}

/// Issues a server certificate for exactly `hosts` from the CA in `dir` and writes it there as
/// `<name>.pem` and `<name>.key`, leaving every other file alone: e.g. one for
/// `elsewhere.example`, which a client that checks host names must refuse on `localhost`. Its
/// identity is `spiffe://shop.local/<name>`; it lasts `days` days (at most as long as the CA).
pub fn issue_server(dir: &Path, name: &str, hosts: &[&str], days: u32) -> anyhow::Result<Written> {
    if RESERVED.contains(&name) {
        bail!("{name}: that name is reserved for the certificates gen-certs writes");
    }
    let ca = load_ca(&dir.join("ca.pem"), &dir.join("ca.key"))?;
    let cert = ca.issue_server(name, hosts, Validity::days(days))?;
    write_pair(dir, name, "server certificate", &cert)
}

fn load_ca(cert_path: &Path, key_path: &Path) -> anyhow::Result<CertificateAuthority> {
    let cert_pem = fs::read_to_string(cert_path)
        .with_context(|| format!("cannot read {}", cert_path.display()))?;
    let key_pem = fs::read_to_string(key_path)
        .with_context(|| format!("cannot read {}", key_path.display()))?;
    let validity = pem_validity(&cert_pem)
        .with_context(|| format!("{}: not a readable PEM certificate", cert_path.display()))?;
    if validity.not_after <= OffsetDateTime::now_utc() {
        bail!(
            "the CA in {} expired on {}: pass --force to create a new one",
            cert_path.display(),
            validity.not_after.date()
        );
    }
    CertificateAuthority::from_pem(&cert_pem, &key_pem, validity).with_context(|| {
        format!(
            "{} and {} are not a usable CA certificate and key",
            cert_path.display(),
            key_path.display()
        )
    })
}

/// The validity window of the first certificate in a PEM string.
pub fn pem_validity(pem: &str) -> anyhow::Result<Validity> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes())?;
    let cert = pem.parse_x509()?;
    Ok(Validity {
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
    })
}

fn write_pair(
    dir: &Path,
    name: &str,
    what: &'static str,
    cert: &CertifiedKey,
) -> anyhow::Result<Written> {
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}.key"));
    // Key first: a certificate on disk without its key would be useless to a reloading service.
    write_atomically(&key_path, cert.key_pem.as_bytes(), 0o600)?;
    write_atomically(&cert_path, cert.cert_pem.as_bytes(), 0o644)?;
    Ok(Written {
        cert_path,
        key_path,
        what,
        not_after: cert.validity.not_after,
        reused: false,
    })
}

/// Writes `contents` to `path` through a temporary file in the same folder, created with `mode`
/// (Unix) so that a key is never readable by others, not even for an instant.
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(dir: &Path, force: bool) -> GenCerts {
        GenCerts {
            force,
            ..GenCerts::new(dir, 30)
        }
    }

    #[test]
    fn named_service_gets_a_client_certificate_from_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        gen_certs(&opts(dir.path(), false)).unwrap();
        let ca_before = fs::read(dir.path().join("ca.pem")).unwrap();
        let catalog_before = fs::read(dir.path().join("catalog.pem")).unwrap();
        let written = gen_certs(&GenCerts {
            services: vec!["reports".into()],
            ..GenCerts::new(dir.path(), 30)
        })
        .unwrap();
        assert_eq!(written.len(), 2);
        assert!(dir.path().join("reports.pem").is_file());
        assert!(dir.path().join("reports.key").is_file());
        assert_eq!(fs::read(dir.path().join("ca.pem")).unwrap(), ca_before);
        assert_eq!(
            fs::read(dir.path().join("catalog.pem")).unwrap(),
            catalog_before
        );
        let uri = crate::issue::spiffe_id("reports");
        let pem = fs::read_to_string(dir.path().join("reports.pem")).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert!(san.value.general_names.iter().any(|n| matches!(
            n,
            x509_parser::extensions::GeneralName::URI(u) if *u == uri
        )));
    }

    #[test]
    fn hours_make_short_lived_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let written = gen_certs(&GenCerts {
            leaf_hours: Some(2),
            ..GenCerts::new(dir.path(), 30)
        })
        .unwrap();
        let ca = written[0].not_after - time::OffsetDateTime::now_utc();
        let leaf = written[1].not_after - time::OffsetDateTime::now_utc();
        assert!(ca > time::Duration::days(29), "{ca}");
        assert!(
            leaf <= time::Duration::hours(2) && leaf > time::Duration::minutes(110),
            "{leaf}"
        );
    }

    #[test]
    fn writes_every_file_with_keys_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let written = gen_certs(&opts(dir.path(), false)).unwrap();
        let names: Vec<_> = written.iter().map(|w| w.cert_path.clone()).collect();
        let expected: Vec<_> = ["ca", "discount", "catalog", "postgres"]
            .map(|name| dir.path().join(format!("{name}.pem")))
            .into();
        assert_eq!(names, expected);
        assert!(is_complete(dir.path()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for key in ["ca.key", "discount.key", "catalog.key", "postgres.key"] {
                let mode = fs::metadata(dir.path().join(key))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{key}");
            }
        }
    }

    #[test]
    fn a_folder_without_the_postgres_files_is_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        gen_certs(&opts(dir.path(), false)).unwrap();
        fs::remove_file(dir.path().join("postgres.key")).unwrap();
        assert!(!is_complete(dir.path()));
    }

    #[test]
    fn a_server_certificate_for_another_host_comes_from_the_folder_ca() {
        let dir = tempfile::tempdir().unwrap();
        gen_certs(&opts(dir.path(), false)).unwrap();
        let before: Vec<_> = FILES.map(|f| fs::read(dir.path().join(f)).unwrap()).into();
        let w = issue_server(dir.path(), "elsewhere", &["elsewhere.example"], 1).unwrap();
        assert_eq!(w.key_path, dir.path().join("elsewhere.key"));
        let after: Vec<_> = FILES.map(|f| fs::read(dir.path().join(f)).unwrap()).into();
        assert_eq!(before, after, "issue_server changed a gen-certs file");
        let ca_pem = fs::read_to_string(dir.path().join("ca.pem")).unwrap();
        let leaf_pem = fs::read_to_string(&w.cert_path).unwrap();
        let (_, ca) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).unwrap();
        let (_, leaf) = x509_parser::pem::parse_x509_pem(leaf_pem.as_bytes()).unwrap();
        let (ca, leaf) = (ca.parse_x509().unwrap(), leaf.parse_x509().unwrap());
        leaf.verify_signature(Some(ca.public_key())).unwrap();
        let san = leaf.subject_alternative_name().unwrap().unwrap();
        assert!(san.value.general_names.iter().any(|n| matches!(
            n,
            x509_parser::extensions::GeneralName::DNSName("elsewhere.example")
        )));
        let err = issue_server(dir.path(), "postgres", &["x.example"], 1).unwrap_err();
        assert!(err.to_string().contains("reserved"), "{err}");
    }

    #[test]
    fn existing_ca_is_kept_without_force() {
        let dir = tempfile::tempdir().unwrap();
        gen_certs(&opts(dir.path(), false)).unwrap();
        let ca_before = fs::read(dir.path().join("ca.pem")).unwrap();
        let leaf_before = fs::read(dir.path().join("catalog.pem")).unwrap();

        let written = gen_certs(&opts(dir.path(), false)).unwrap();
        assert!(written[0].reused);
        assert_eq!(fs::read(dir.path().join("ca.pem")).unwrap(), ca_before);
        assert_ne!(
            fs::read(dir.path().join("catalog.pem")).unwrap(),
            leaf_before
        );
    }

    #[test]
    fn force_replaces_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        gen_certs(&opts(dir.path(), false)).unwrap();
        let ca_before = fs::read(dir.path().join("ca.pem")).unwrap();
        gen_certs(&opts(dir.path(), true)).unwrap();
        assert_ne!(fs::read(dir.path().join("ca.pem")).unwrap(), ca_before);
    }

    #[test]
    fn half_a_ca_is_an_error_not_an_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        gen_certs(&opts(dir.path(), false)).unwrap();
        fs::remove_file(dir.path().join("ca.key")).unwrap();
        let err = gen_certs(&opts(dir.path(), false)).unwrap_err().to_string();
        assert!(err.contains("--force"), "{err}");
    }

    #[test]
    fn zero_days_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path(), false);
        o.days = 0;
        assert!(gen_certs(&o).is_err());
    }
}
