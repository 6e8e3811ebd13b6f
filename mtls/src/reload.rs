//! Certificate rotation without restarts.
//!
//! A [`TlsSource`] is the one place a service's TLS material comes from: loaded once at start,
//! and, when it came from files, reloaded from those same files. A [`Reloadable`] holds the TLS configuration that *new* connections use; connections already
//! open keep the one they started with, so nothing in flight is dropped. A [`TlsReloader`]
//! re-reads the service's [`TlsFiles`] (on a timer, on SIGHUP, or when asked), and swaps in a
//! configuration built from them only if every file parses, the key matches the certificate and
//! the certificate is already valid; otherwise it logs why and the current material keeps
//! serving. It also warns when the certificate in use is close to expiry and publishes its
//! expiry time as the metric `tls_certificate_expiry_timestamp_seconds{service}`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::CertificateDer;

use crate::files::{TlsFileError, TlsFiles};
use crate::material::{Identity, TlsError, TrustAnchors};
use crate::reloadable::Reloadable;

/// Where a service's TLS files are and how it watches them.
#[derive(Debug, Clone)]
pub struct ReloadSettings {
    /// The CA bundle, certificate and key to watch.
    pub files: TlsFiles,
    /// How often to look for changes (SIGHUP also triggers a look).
    pub interval: Duration,
    /// Warn when the certificate in use expires within this.
    pub expiry_warning: Duration,
}

impl ReloadSettings {
    /// Settings from a service's flags: check every `interval_secs`, warn `warning_hours`
    /// before expiry.
    pub fn from_flags(files: TlsFiles, interval_secs: u64, warning_hours: u64) -> Self {
        Self {
            files,
            interval: Duration::from_secs(interval_secs),
            expiry_warning: Duration::from_secs(warning_hours.saturating_mul(3600)),
        }
    }
}

/// Where a service's TLS material comes from: loaded once, at start, and (for files) reloaded
/// from the same files when they change. The single source of truth a service is configured
/// with; it never holds loaded material and paths that could disagree.
#[derive(Debug, Clone)]
pub struct TlsSource {
    identity: Identity,
    anchors: TrustAnchors,
    watch: Option<Watch>,
}

#[derive(Debug, Clone)]
struct Watch {
    settings: ReloadSettings,
    /// Hash of the contents `identity` and `anchors` were parsed from.
    fingerprint: u64,
}

impl TlsSource {
    /// Material given in memory, never reloaded (tests, or an embedding that manages it).
    pub fn fixed(identity: Identity, anchors: TrustAnchors) -> Self {
        Self {
            identity,
            anchors,
            watch: None,
        }
    }

    /// Loads `settings.files` now; a [`TlsReloader`] started from this source watches them.
    pub fn from_files(settings: ReloadSettings) -> Result<Self, TlsFileError> {
        let (identity, anchors, fingerprint) = settings.files.load_with_fingerprint()?;
        Ok(Self {
            identity,
            anchors,
            watch: Some(Watch {
                settings,
                fingerprint,
            }),
        })
    }

    /// This service's certificate chain and key, as loaded at start.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The CA(s) peers must chain to, as loaded at start.
    pub fn anchors(&self) -> &TrustAnchors {
        &self.anchors
    }

    /// The files and watch settings, when the material came from files.
    pub fn reload_settings(&self) -> Option<&ReloadSettings> {
        self.watch.as_ref().map(|watch| &watch.settings)
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The files are the ones already in use.
    Unchanged,
    /// New material is in use; the new certificate's serial number, in hex.
    Reloaded { serial: String },
}

/// Why new material was refused (the current material stays in use).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Files(#[from] TlsFileError),
    #[error(transparent)]
    Config(#[from] TlsError),
    #[error("the new certificate is not valid until {0} (UTC)")]
    NotYetValid(String),
}

type Build<T> = dyn Fn(&Identity, &TrustAnchors) -> Result<Arc<T>, TlsError> + Send + Sync;

/// Re-reads a service's TLS files and swaps the configuration they make into a [`Reloadable`].
pub struct TlsReloader<T> {
    service: &'static str,
    /// What to watch; `None` for material given in memory (nothing to reload).
    watch: Option<ReloadSettings>,
    build: Box<Build<T>>,
    target: Arc<Reloadable<T>>,
    /// The gauge the certificate's expiry time is published under (label `service`).
    expiry_metric: &'static str,
    /// Hash of the files' contents last seen (good or bad), so each change is judged once.
    last_seen: Mutex<Option<u64>>,
    /// The expiry of the certificate in use, and whether its warning has been logged.
    expiry: Mutex<Expiry>,
}

#[derive(Debug, Default)]
struct Expiry {
    /// `notAfter` of the certificate in use, in Unix seconds.
    not_after: Option<i64>,
    /// The "expires soon" warning has been logged for this certificate.
    warned: bool,
}

impl<T> std::fmt::Debug for TlsReloader<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsReloader")
            .field("service", &self.service)
            .field("watch", &self.watch)
            .finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> TlsReloader<T> {
    /// Builds the first configuration from `source` with `build` (an error here is a start-up
    /// error) and returns the reloader with the [`Reloadable`] it feeds. The certificate's expiry
    /// time is published as the gauge `expiry_metric{service}`.
    pub fn start(
        service: &'static str,
        source: TlsSource,
        expiry_metric: &'static str,
        build: impl Fn(&Identity, &TrustAnchors) -> Result<Arc<T>, TlsError> + Send + Sync + 'static,
    ) -> Result<Arc<Self>, TlsError> {
        let config = build(&source.identity, &source.anchors)?;
        let (watch, fingerprint) = match source.watch {
            Some(watch) => (Some(watch.settings), Some(watch.fingerprint)),
            None => (None, None),
        };
        let reloader = Arc::new(Self {
            service,
            watch,
            build: Box::new(build),
            target: Reloadable::new(config),
            expiry_metric,
            last_seen: Mutex::new(fingerprint),
            expiry: Mutex::new(Expiry::default()),
        });
        reloader.watch_expiry(source.identity.leaf());
        Ok(reloader)
    }

    /// The configuration new connections use.
    pub fn config(&self) -> Arc<Reloadable<T>> {
        self.target.clone()
    }

    fn lock_seen(&self) -> std::sync::MutexGuard<'_, Option<u64>> {
        lock(&self.last_seen)
    }

    /// Re-reads the files; if they changed and are good, new connections use them from now on.
    /// A bad change is reported once, and the current material keeps serving.
    pub fn reload(&self) -> Result<ReloadOutcome, ReloadError> {
        let Some(watch) = &self.watch else {
            return Ok(ReloadOutcome::Unchanged);
        };
        let fingerprint = watch.files.fingerprint().ok();
        if fingerprint.is_some() && *self.lock_seen() == fingerprint {
            return Ok(ReloadOutcome::Unchanged);
        }
        *self.lock_seen() = fingerprint;
        let (identity, anchors) = watch.files.load()?;
        if let Some(not_before) = not_before_in_future(identity.leaf()) {
            return Err(ReloadError::NotYetValid(not_before));
        }
        let config = (self.build)(&identity, &anchors)?;
        self.target.replace(config);
        self.watch_expiry(identity.leaf());
        Ok(ReloadOutcome::Reloaded {
            serial: serial_hex(identity.leaf()),
        })
    }

    /// [`Self::reload`], logged: what an operator sees on each change.
    pub fn reload_and_log(&self) {
        match self.reload() {
            Ok(ReloadOutcome::Unchanged) => {}
            Ok(ReloadOutcome::Reloaded { serial }) => tracing::info!(
                service = self.service,
                serial,
                "TLS material reloaded: new connections use the new certificate"
            ),
            Err(err) => tracing::error!(
                service = self.service,
                "new TLS material rejected, the current certificate keeps serving: {err}"
            ),
        }
    }

    /// Reloads at the watch interval and on SIGHUP, until the process ends, when the material
    /// came from files (otherwise does nothing). Also re-checks how close the certificate in
    /// use is to expiry.
    pub fn spawn(self: &Arc<Self>) {
        let Some(interval) = self.watch.as_ref().map(|watch| watch.interval) else {
            return;
        };
        let this = self.clone();
        // Made before the task runs, so that a SIGHUP from now on is not missed.
        let mut looks = Looks::new(interval);
        tokio::spawn(async move {
            loop {
                if looks.next().await == Look::Hangup {
                    tracing::info!(service = this.service, "SIGHUP: reloading TLS material");
                }
                this.reload_and_log();
                this.check_expiry();
            }
        });
    }

    /// A new certificate is in use: publish its expiry and check it at once.
    fn watch_expiry(&self, leaf: &CertificateDer<'_>) {
        let Some(not_after) = not_after_unix(leaf) else {
            return;
        };
        metrics::gauge!(self.expiry_metric, "service" => self.service).set(not_after as f64);
        *lock(&self.expiry) = Expiry {
            not_after: Some(not_after),
            warned: false,
        };
        self.check_expiry();
    }

    /// Whether the certificate in use expires within the warning time. The first time it does,
    /// logs a warning (once per certificate: the check runs at every watch interval).
    pub fn check_expiry(&self) -> bool {
        let mut expiry = lock(&self.expiry);
        let Some(not_after) = expiry.not_after else {
            return false;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let left = not_after - now;
        let warning = self
            .watch
            .as_ref()
            .map_or(Duration::ZERO, |w| w.expiry_warning);
        let soon = left < warning.as_secs() as i64;
        if soon && !expiry.warned {
            expiry.warned = true;
            tracing::warn!(
                service = self.service,
                seconds_left = left,
                "the TLS certificate in use expires soon: rotate it (cargo xtask gen-certs, or your certificate manager)"
            );
        }
        soon
    }
}

/// Why it is time to look at watched files again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Look {
    /// The interval passed (the first one at once).
    Timer,
    /// The process got SIGHUP.
    Hangup,
}

/// The times to look at watched files again: every interval, and on SIGHUP. TLS files are
/// watched with it, and so can be any other files a service reloads. Needs a Tokio runtime;
/// make it before spawning the task that waits on it, so that no SIGHUP is missed.
#[derive(Debug)]
pub struct Looks {
    ticker: tokio::time::Interval,
    #[cfg(unix)]
    hangup: Option<tokio::signal::unix::Signal>,
}

impl Looks {
    /// Every `interval` (the first tick at once), and on SIGHUP.
    pub fn new(interval: Duration) -> Self {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            ticker,
            #[cfg(unix)]
            hangup: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
        }
    }

    /// Waits for the next time to look.
    pub async fn next(&mut self) -> Look {
        #[cfg(unix)]
        {
            let hangup = async {
                match self.hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.ticker.tick() => Look::Timer,
                _ = hangup => Look::Hangup,
            }
        }
        #[cfg(not(unix))]
        {
            self.ticker.tick().await;
            Look::Timer
        }
    }
}

/// Locks `mutex`, recovering from a panic elsewhere (the state stays consistent).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn parse<'a>(
    leaf: &'a CertificateDer<'_>,
) -> Option<x509_parser::certificate::X509Certificate<'a>> {
    x509_parser::parse_x509_certificate(leaf.as_ref())
        .ok()
        .map(|(_, cert)| cert)
}

fn not_after_unix(leaf: &CertificateDer<'_>) -> Option<i64> {
    parse(leaf).map(|cert| cert.validity().not_after.timestamp())
}

fn not_before_in_future(leaf: &CertificateDer<'_>) -> Option<String> {
    let cert = parse(leaf)?;
    let now = x509_parser::time::ASN1Time::now();
    (cert.validity().not_before > now).then(|| cert.validity().not_before.to_string())
}

/// The serial number of a DER certificate, in hex.
pub fn serial_hex(leaf: &CertificateDer<'_>) -> String {
    parse(leaf).map_or_else(String::new, |cert| cert.raw_serial_as_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(dir: &std::path::Path, warning_hours: u64) -> TlsSource {
        pki::certs_dir::gen_certs(&pki::certs_dir::GenCerts::new(dir, 1)).unwrap();
        let files = TlsFiles::in_dir(dir, "catalog");
        TlsSource::from_files(ReloadSettings::from_flags(files, 10, warning_hours)).unwrap()
    }

    fn start(source: TlsSource) -> Arc<TlsReloader<()>> {
        TlsReloader::start("catalog", source, "expiry", |_, _| Ok(Arc::new(()))).unwrap()
    }

    #[test]
    fn a_certificate_inside_the_warning_window_expires_soon() {
        let dir = tempfile::tempdir().unwrap();
        // One day left, warned 48 hours ahead.
        let reloader = start(source(dir.path(), 48));
        assert!(reloader.check_expiry());
        // Checked again at every interval: still soon, logged only once.
        assert!(reloader.check_expiry());
        assert!(lock(&reloader.expiry).warned);
    }

    #[test]
    fn a_certificate_outside_the_warning_window_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let reloader = start(source(dir.path(), 12));
        assert!(!reloader.check_expiry());
        assert!(!lock(&reloader.expiry).warned);
    }

    #[test]
    fn unchanged_files_are_not_reloaded_and_a_change_is() {
        let dir = tempfile::tempdir().unwrap();
        let reloader = start(source(dir.path(), 12));
        assert_eq!(reloader.reload().unwrap(), ReloadOutcome::Unchanged);
        let mut opts = pki::certs_dir::GenCerts::new(dir.path(), 1);
        opts.force = true;
        pki::certs_dir::gen_certs(&opts).unwrap();
        assert!(matches!(
            reloader.reload().unwrap(),
            ReloadOutcome::Reloaded { .. }
        ));
    }
}
