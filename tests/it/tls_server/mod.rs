//! HTTPS for test mirrors: a test CA and certificates made with the openssl CLI, and a TLS
//! front that serves a plain file server's files over TLS. Used by hostile.rs.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Runs the openssl CLI (no certificate generator is among our dependencies).
fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command line tool runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `openssl req` arguments for a new unencrypted P-256 key.
const NEW_EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// A self-signed P-256 certificate valid for two days (a CA's, or one trusted by nobody).
fn self_signed_cert(dir: &Path, key: &str, pem: &str, subject: &str, extra: &[&str]) {
    let mut args = vec!["req", "-x509"];
    args.extend(NEW_EC_KEY);
    args.extend(["-keyout", key, "-out", pem, "-days", "2", "-subj", subject]);
    args.extend_from_slice(extra);
    openssl(dir, &args);
}

/// A test CA in `dir/<ca>/`, and certificates under it: `<name>.pem` / `<name>.key`.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path, ca: &str) -> Pki {
        let dir = dir.join(ca);
        std::fs::create_dir_all(&dir).unwrap();
        self_signed_cert(
            &dir,
            "ca.key",
            "ca.pem",
            &format!("/CN=mirrordns test CA {ca}"),
            &[],
        );
        Pki { dir }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A server certificate for `host` signed by the test CA.
    pub fn issue(&self, name: &str, host: &str) -> (PathBuf, PathBuf) {
        self.issue_for(name, host, &format!("DNS:{host}"))
    }

    /// A server certificate with subject CN `cn` for the subjectAltName list `san`
    /// (e.g. "IP:127.0.0.1,DNS:localhost"), signed by the test CA: `<name>.pem`, `<name>.key`.
    pub fn issue_for(&self, name: &str, cn: &str, san: &str) -> (PathBuf, PathBuf) {
        let (key, csr, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        std::fs::write(
            self.dir.join(&ext),
            format!(
                "subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            ),
        )
        .unwrap();
        let subject = format!("/CN={cn}");
        let mut req = vec!["req", "-new"];
        req.extend(NEW_EC_KEY);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
        openssl(&self.dir, &req);
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &pem,
                "-extfile",
                &ext,
            ],
        );
        (self.dir.join(pem), self.dir.join(key))
    }

    /// A self-signed certificate for `host`, trusted by nobody.
    pub fn self_signed(&self, name: &str, host: &str) -> (PathBuf, PathBuf) {
        let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
        let san = format!("subjectAltName=DNS:{host}");
        self_signed_cert(
            &self.dir,
            &key,
            &pem,
            &format!("/CN={host}"),
            &["-addext", &san],
        );
        (self.dir.join(pem), self.dir.join(key))
    }
}

/// A TLS front for a plain [`FileServer`](mirrordns::demo::files::FileServer): terminates TLS with the given certificate on a
/// loopback port and relays one request per connection to the file server, so an HTTPS
/// mirror serves real files with every knob of the plain one. Written here because no TLS
/// server is among the test dependencies; rustls (a dependency) does the TLS.
pub struct TlsFront {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl TlsFront {
    pub fn start(cert: &Path, key: &Path, backend: SocketAddr) -> TlsFront {
        mirrordns::health::http::install_crypto();
        let certs = CertificateDer::pem_file_iter(cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let config = Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Relaxed) {
                    break;
                }
                let Ok(tcp) = conn else { continue };
                let config = config.clone();
                std::thread::spawn(move || relay(tcp, config, backend));
            }
        });
        TlsFront { addr, stop }
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        // Wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn relay(tcp: TcpStream, config: Arc<rustls::ServerConfig>, backend: SocketAddr) {
    let _ = (|| -> std::io::Result<()> {
        // Bounded: a stuck peer ends the thread within seconds.
        tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
        tcp.set_write_timeout(Some(Duration::from_secs(5)))?;
        let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let mut head = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        // The first read drives the handshake: a client that rejects the certificate ends here.
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tls.read(&mut buf)?;
            if n == 0 || head.len() > 16 * 1024 {
                return Ok(());
            }
            head.extend_from_slice(&buf[..n]);
        }
        let mut up = TcpStream::connect(backend)?;
        up.set_read_timeout(Some(Duration::from_secs(5)))?;
        up.write_all(&head)?;
        loop {
            let n = up.read(&mut buf)?;
            if n == 0 {
                break;
            }
            tls.write_all(&buf[..n])?;
        }
        tls.conn.send_close_notify();
        tls.flush()
    })();
}
