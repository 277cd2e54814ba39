//! systemd readiness notification (`sd_notify` protocol): one datagram per state change
//! to the socket in `NOTIFY_SOCKET`, written directly, no library.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends notifications when the service manager asked for them; does nothing otherwise.
#[derive(Debug, Default)]
pub struct Notifier {
    socket: Option<(UnixDatagram, String)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC` from the environment.
    pub fn from_env() -> Self {
        let path = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|p| !p.is_empty());
        let socket = path.and_then(|path| match UnixDatagram::unbound() {
            Ok(socket) => Some((socket, path)),
            Err(e) => {
                log::warn!("cannot create the systemd notification socket: {e}");
                None
            }
        });
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&usec| usec > 0)
            .map(Duration::from_micros);
        Notifier { socket, watchdog }
    }

    /// Returns how often to ping the watchdog: half its timeout, as systemd recommends.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }

    pub fn ready(&self) {
        self.send("READY=1");
    }

    pub fn reloading(&self) {
        self.send("RELOADING=1");
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    /// Sends a one-line status text that `systemctl status` shows.
    pub fn status(&self, text: &str) {
        self.send(&format!("STATUS={}", text.replace('\n', " ")));
    }

    fn send(&self, message: &str) {
        let Some((socket, path)) = &self.socket else {
            return;
        };
        let result = match path.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt as _;
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                    .and_then(|addr| socket.send_to_addr(message.as_bytes(), &addr))
            }
            None => socket.send_to(message.as_bytes(), path),
        };
        if let Err(e) = result {
            log::warn!("systemd notification to {path} failed: {e}");
        }
    }
}
