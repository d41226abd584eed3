//! `[[redirect]]`: an HTTP download redirector on a service's verified table. The TLS
//! certificate and key are read and checked here, so that `check` names a bad one and a
//! reload with a bad one is rejected while the last good one keeps serving.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use toml::Spanned;

use super::{Service, Validator, defaults, raw};

/// What the redirector does with a path that is in no manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlisted {
    /// 404.
    NotFound,
    /// Redirect to the origin, which has everything.
    Origin,
}

impl Unlisted {
    pub fn as_str(self) -> &'static str {
        match self {
            Unlisted::NotFound => "not-found",
            Unlisted::Origin => "origin",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Redirect {
    /// Index into `Config::services`.
    pub service: usize,
    pub listen: Vec<SocketAddr>,
    pub tls_listen: Vec<SocketAddr>,
    /// Built from `tls-cert` and `tls-key` when there are `tls-listen` addresses.
    pub tls: Option<Tls>,
    pub trusted_proxies: Vec<IpNet>,
    /// Without leading or trailing slashes, e.g. "tool/latest".
    pub latest: Option<String>,
    pub unlisted: Unlisted,
    /// Lower-case host names without port; empty: any.
    pub hosts: Vec<String>,
    pub max_connections: usize,
    pub idle_timeout: Duration,
}

/// A certificate and key as read at load time.
#[derive(Clone)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Validator<'_> {
    pub(super) fn redirects(
        &mut self,
        raw: Vec<Spanned<raw::RawRedirect>>,
        services: &[Service],
    ) -> Vec<Redirect> {
        let mut out = Vec::new();
        for r in raw {
            let raw::RawRedirect {
                service,
                listen,
                tls_listen,
                tls_cert,
                tls_key,
                trusted_proxies,
                latest,
                unlisted,
                hosts,
                max_connections,
                idle_timeout,
            } = r.into_inner();
            let name = service.get_ref().trim_end_matches('.').to_ascii_lowercase();
            let si = services.iter().position(|s| s.name == name);
            if si.is_none() {
                self.err(
                    &service,
                    "redirect.service",
                    format!("no [[service]] is named `{}`", service.get_ref()),
                );
            }
            let key = |k: &str| format!("redirect `{name}`: {k}");
            let listen = self.socket_addrs(&listen, &key("listen"));
            let tls_listen = self.socket_addrs(&tls_listen, &key("tls-listen"));
            if listen.is_empty() && tls_listen.is_empty() {
                self.err(
                    &service,
                    &key("listen"),
                    "needs `listen` or `tls-listen` addresses to answer on",
                );
            }
            let tls = match (&tls_cert, &tls_key) {
                (Some(c), Some(k)) => self.tls(c, k, &key("tls-cert"), &key("tls-key")),
                (None, None) => None,
                (Some(s), None) | (None, Some(s)) => {
                    self.err(s, &key("tls-cert"), "`tls-cert` and `tls-key` go together");
                    None
                }
            };
            if !tls_listen.is_empty() && tls_cert.is_none() && tls_key.is_none() {
                self.err(
                    &service,
                    &key("tls-listen"),
                    "needs `tls-cert` and `tls-key` (PEM files)",
                );
            }
            let trusted_proxies = self.networks(trusted_proxies, &key("trusted-proxies"));
            let latest = latest.and_then(|l| {
                let p = l.get_ref().trim_matches('/');
                if p.is_empty() || !super::is_safe_relative_path(p) {
                    self.err(
                        &l,
                        &key("latest"),
                        format!(
                            "`{}` is not a path prefix such as \"tool/latest\" (no .., not empty)",
                            l.get_ref()
                        ),
                    );
                    None
                } else {
                    Some(p.to_string())
                }
            });
            let unlisted = match unlisted {
                None => defaults::REDIRECT_UNLISTED,
                Some(u) => match u.get_ref().as_str() {
                    "not-found" => Unlisted::NotFound,
                    "origin" => Unlisted::Origin,
                    other => {
                        self.err(
                            &u,
                            &key("unlisted"),
                            format!("`{other}` is not one of \"not-found\", \"origin\""),
                        );
                        defaults::REDIRECT_UNLISTED
                    }
                },
            };
            let hosts = hosts
                .iter()
                .map(|h| h.get_ref().trim_end_matches('.').to_ascii_lowercase())
                .collect();
            let max_connections = match max_connections {
                Some(m) if *m.get_ref() == 0 => {
                    self.err(&m, &key("max-connections"), "must be at least 1");
                    defaults::REDIRECT_MAX_CONNECTIONS
                }
                Some(m) => *m.get_ref(),
                None => defaults::REDIRECT_MAX_CONNECTIONS,
            };
            let idle_timeout = self.duration(
                idle_timeout,
                &key("idle-timeout"),
                defaults::REDIRECT_IDLE_TIMEOUT,
            );
            if let Some(service) = si {
                out.push(Redirect {
                    service,
                    listen,
                    tls_listen,
                    tls,
                    trusted_proxies,
                    latest,
                    unlisted,
                    hosts,
                    max_connections,
                    idle_timeout,
                });
            }
        }
        out
    }

    fn socket_addrs(&mut self, list: &[Spanned<String>], key: &str) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        for a in list {
            match a.get_ref().parse::<SocketAddr>() {
                Ok(sa) => out.push(sa),
                Err(_) => self.err(
                    a,
                    key,
                    format!(
                        "`{}` is not an address with port: expected e.g. \"127.0.0.1:8080\" or \"[::1]:443\"",
                        a.get_ref()
                    ),
                ),
            }
        }
        out
    }

    fn tls(
        &mut self,
        cert: &Spanned<String>,
        key: &Spanned<String>,
        cert_key: &str,
        key_key: &str,
    ) -> Option<Tls> {
        let (cp, kp) = (self.resolve(cert.get_ref()), self.resolve(key.get_ref()));
        let certs = match read_certs(&cp) {
            Ok(c) => c,
            Err(e) => {
                self.err(cert, cert_key, e.to_string());
                return None;
            }
        };
        let pkey = match read_key(&kp) {
            Ok(k) => k,
            Err(e) => {
                self.err(key, key_key, e.to_string());
                return None;
            }
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let built = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())
            .and_then(|b| {
                b.with_no_client_auth()
                    .with_single_cert(certs, pkey)
                    .map_err(|e| e.to_string())
            });
        match built {
            Ok(mut c) => {
                c.alpn_protocols = vec![b"http/1.1".to_vec()];
                Some(Tls {
                    cert: cp,
                    key: kp,
                    config: Arc::new(c),
                })
            }
            Err(e) => {
                self.err(
                    key,
                    key_key,
                    format!("the key does not go with the certificate: {e}"),
                );
                None
            }
        }
    }
}

/// A certificate or key file that cannot be used.
#[derive(Debug, thiserror::Error)]
enum PemError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0}: not a PEM certificate chain: {1}")]
    Certs(String, rustls::pki_types::pem::Error),
    #[error("{0}: no certificate in it: expected PEM \"BEGIN CERTIFICATE\" blocks")]
    NoCert(String),
    #[error("{0}: no private key in it ({1}): expected a PEM PKCS#8, PKCS#1 or SEC1 key")]
    Key(String, rustls::pki_types::pem::Error),
}

fn read_certs(p: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, PemError> {
    use rustls::pki_types::pem::PemObject;
    let name = p.display().to_string();
    let bytes = std::fs::read(p).map_err(|e| PemError::Read(name.clone(), e))?;
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| PemError::Certs(name.clone(), e))?;
    if certs.is_empty() {
        return Err(PemError::NoCert(name));
    }
    Ok(certs)
}

fn read_key(p: &Path) -> Result<rustls::pki_types::PrivateKeyDer<'static>, PemError> {
    use rustls::pki_types::pem::PemObject;
    let name = p.display().to_string();
    let bytes = std::fs::read(p).map_err(|e| PemError::Read(name.clone(), e))?;
    rustls::pki_types::PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| PemError::Key(name, e))
}
