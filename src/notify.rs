//! systemd's readiness protocol (`sd_notify`): tells a `Type=notify` service manager when the
//! server answers, reloads and stops, and pings its watchdog while DNS is being served.
//!
//! Written here rather than taken from a crate: the whole protocol is one datagram of
//! `KEY=value` lines to the socket named in `NOTIFY_SOCKET`, and nothing else needs libsystemd.
//! Without `NOTIFY_SOCKET` (not started by systemd) every call is a no-op.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use tracing::warn;

/// The service manager's notification socket.
pub struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// The socket systemd named, if any. A name we cannot use is logged, not fatal: the
    /// server still serves, and systemd reports the start as timed out, naming the unit.
    pub fn from_env() -> Option<Notifier> {
        let name = std::env::var_os("NOTIFY_SOCKET")?;
        match Self::open(name.as_encoded_bytes()) {
            Ok(n) => Some(n),
            Err(e) => {
                warn!(socket = %name.to_string_lossy(), error = %e, "NOTIFY_SOCKET is set but unusable; systemd will not hear that the server is ready");
                None
            }
        }
    }

    fn open(name: &[u8]) -> std::io::Result<Notifier> {
        let addr = match name.split_first() {
            // A leading '@' names a socket in the abstract namespace.
            Some((b'@', rest)) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(rest)?
            }
            Some((b'/', _)) => {
                use std::os::unix::ffi::OsStrExt;
                SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(name))?
            }
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "expected an absolute path or @abstract-name",
                ));
            }
        };
        let sock = UnixDatagram::unbound()?;
        // Never block the runtime on a service manager that is slow to read its queue.
        sock.set_nonblocking(true)?;
        Ok(Notifier { sock, addr })
    }

    /// Sends newline-separated `KEY=value` assignments. A lost notification is logged only:
    /// the service manager's own timeouts cover it.
    pub fn send(&self, state: &str) {
        if let Err(e) = self.sock.send_to_addr(state.as_bytes(), &self.addr) {
            warn!(error = %e, "cannot notify systemd");
        }
    }

    /// `RELOADING=1` with the timestamp that `Type=notify-reload` (systemd 253+) requires.
    pub fn reloading(&self) {
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
    }
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC`, when it is set for this process.
pub fn watchdog_interval() -> Option<Duration> {
    if let Some(pid) = std::env::var_os("WATCHDOG_PID")
        && pid.to_str().and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id())
    {
        return None;
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

/// CLOCK_MONOTONIC in microseconds, the clock systemd compares reload timestamps against.
fn monotonic_usec() -> u64 {
    // SAFETY: all-zero is a valid timespec, and clock_gettime only writes to it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock id and a pointer to a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_not_sockets_are_refused() {
        assert!(Notifier::open(b"relative/path").is_err());
        assert!(Notifier::open(b"").is_err());
        assert!(Notifier::open(b"/run/systemd/notify").is_ok());
        assert!(Notifier::open(b"@abstract").is_ok());
    }
}
