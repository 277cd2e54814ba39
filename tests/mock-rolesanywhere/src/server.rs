//! The listener: one thread accepts, and one thread per connection reads one request,
//! runs the next script step, verifies the request and sends the response.

use std::collections::VecDeque;
use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ra_signer::Certificate;
use ring::rand::SystemRandom;
use rustls::{ServerConfig, ServerConnection, StreamOwned};

use crate::clock;
use crate::config::Config;
use crate::http::{self, ReadError, Request, Response};
use crate::responses::{self, IssuedCredentials, Rejection};
use crate::script::Scripted;
use crate::tls;
use crate::verify::{Anchor, Verifier};

/// How long a connection may wait for the client to send or receive bytes.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A running mock CreateSession endpoint. It stops accepting connections when dropped.
#[derive(Debug)]
pub struct Server {
    address: SocketAddr,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    verifier: Verifier,
    tls: Arc<ServerConfig>,
    ca_pem_path: Option<PathBuf>,
    clock_offset: AtomicI64,
    stopping: AtomicBool,
    rng: SystemRandom,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    requests: usize,
    issued: Vec<IssuedCredentials>,
    last_rejection: Option<Rejection>,
    script: VecDeque<Scripted>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while the lock was held leaves plain counters and lists, still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn now(&self, shift: i64) -> i64 {
        clock::system_now()
            .saturating_add(self.clock_offset.load(Ordering::Relaxed))
            .saturating_add(shift)
    }
}

impl Server {
    /// Starts a server on `127.0.0.1` with a port the system picks.
    pub fn start(config: Config) -> io::Result<Server> {
        Self::bind(config, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Starts a server on `address`; port 0 lets the system pick one.
    ///
    /// Fails when the region is empty, no trust anchor is configured, a root or the TLS
    /// certificate or key does not parse, or the address cannot be bound.
    pub fn bind(config: Config, address: SocketAddr) -> io::Result<Server> {
        let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
        if config.region.is_empty() {
            return Err(invalid(
                "the region is empty; set it, such as us-east-1".into(),
            ));
        }
        if config.trust_anchors.is_empty() {
            return Err(invalid(
                "no trust anchor is configured; add an (ARN, root certificate) pair".into(),
            ));
        }
        let anchors = config
            .trust_anchors
            .into_iter()
            .map(|(arn, der)| match Certificate::from_der(der, &arn) {
                Ok(root) => Ok(Anchor { arn, root }),
                Err(e) => Err(invalid(format!("root certificate of trust anchor: {e}"))),
            })
            .collect::<io::Result<Vec<_>>>()?;
        let tls = tls::server_config(&config.tls_cert_pem, &config.tls_key_pem)?;

        let listener = TcpListener::bind(address)?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            verifier: Verifier {
                region: config.region,
                anchors,
                profiles: config.profiles,
            },
            tls,
            ca_pem_path: config.tls_ca_pem_path,
            clock_offset: AtomicI64::new(config.clock_offset_secs),
            stopping: AtomicBool::new(false),
            rng: SystemRandom::new(),
            state: Mutex::new(State::default()),
        });
        let accept_shared = Arc::clone(&shared);
        let accept_thread = thread::Builder::new()
            .name("mock-ra-accept".into())
            .spawn(move || accept_loop(&listener, &accept_shared))?;
        log::info!("mock Roles Anywhere listening on https://{address}");
        Ok(Server {
            address,
            shared,
            accept_thread: Some(accept_thread),
        })
    }

    /// Returns the bound address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Returns the bound port.
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// Returns the endpoint URL, such as `https://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("https://{}", self.address)
    }

    /// Returns the CA file that issued the TLS certificate, from
    /// [`Config::tls_ca_pem_path`]: `tests/vectors/pki/tls/ca.pem` with
    /// [`Config::test_pki`].
    pub fn ca_pem_path(&self) -> Option<&Path> {
        self.shared.ca_pem_path.as_deref()
    }

    /// Returns how many requests were read, whatever the response (malformed and scripted
    /// ones included). A connection closed before a complete request does not count.
    pub fn request_count(&self) -> usize {
        self.shared.state().requests
    }

    /// Returns every credential set issued so far, oldest first.
    pub fn issued(&self) -> Vec<IssuedCredentials> {
        self.shared.state().issued.clone()
    }

    /// Returns the last error response sent (status 400 or more), scripted ones included.
    pub fn last_rejection(&self) -> Option<Rejection> {
        self.shared.state().last_rejection.clone()
    }

    /// Appends a step to the script. Each well-formed request takes the oldest step, and
    /// a request that fails HTTP parsing takes none.
    pub fn push_script(&self, step: Scripted) {
        self.shared.state().script.push_back(step);
    }

    /// Returns how many script steps no request has taken yet.
    pub fn pending_script(&self) -> usize {
        self.shared.state().script.len()
    }

    /// Sets the seconds added to the system clock for every later request: the `Date`
    /// header, the `X-Amz-Date` window, certificate validity and the expiration.
    pub fn set_clock_offset(&self, seconds: i64) {
        self.shared.clock_offset.store(seconds, Ordering::Relaxed);
    }

    /// Returns the current clock offset in seconds.
    pub fn clock_offset(&self) -> i64 {
        self.shared.clock_offset.load(Ordering::Relaxed)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // A blocking accept returns only for a connection, so the server connects to
        // itself to wake the loop, which then reads `stopping`.
        let mut wake = self.address;
        if wake.ip().is_unspecified() {
            wake.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let woke = TcpStream::connect_timeout(&wake, Duration::from_secs(1)).is_ok();
        if let Some(handle) = self.accept_thread.take()
            && woke
        {
            let _ = handle.join();
        }
        // Connection threads finish on their own: each handles one request, and stalls
        // end early once `stopping` is set.
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        match stream {
            Ok(stream) => {
                let connection_shared = Arc::clone(shared);
                let spawned = thread::Builder::new()
                    .name("mock-ra-connection".into())
                    .spawn(move || handle_connection(&connection_shared, stream));
                if let Err(e) = spawned {
                    log::warn!("cannot start a connection thread: {e}");
                }
            }
            Err(e) => {
                log::warn!("accept failed: {e}");
                // Errors such as EMFILE repeat at once; pause instead of spinning.
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn handle_connection(shared: &Shared, stream: TcpStream) {
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "unknown peer".to_owned(), |a| a.to_string());
    if let Err(e) = stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(IO_TIMEOUT)))
    {
        log::warn!("{peer}: cannot set socket timeouts: {e}");
    }
    let connection = match ServerConnection::new(Arc::clone(&shared.tls)) {
        Ok(connection) => connection,
        Err(e) => {
            log::warn!("{peer}: cannot start TLS: {e}");
            return;
        }
    };
    let mut tls = StreamOwned::new(connection, stream);

    let request = match http::read_request(&mut tls) {
        Ok(request) => request,
        Err(ReadError::Closed) => {
            log::debug!("{peer}: closed before sending a request");
            return;
        }
        Err(ReadError::Io(e)) => {
            log::warn!("{peer}: reading the request failed: {e}");
            return;
        }
        Err(ReadError::Malformed(reason)) => {
            shared.state().requests += 1;
            let rejection = Rejection::validation(format!("malformed HTTP request: {reason}"));
            let response = reject(shared, &peer, "(malformed)", &rejection, shared.now(0));
            send(&mut tls, &response, &peer);
            return;
        }
    };
    let route = format!("{} {}", request.method, request.target);

    let step = {
        let mut state = shared.state();
        state.requests += 1;
        state.script.pop_front()
    };
    let mut shift = 0;
    let mut expiration_override = None;
    match step {
        Some(Scripted::Status {
            status,
            error_type,
            message,
        }) => {
            let rejection = Rejection {
                status,
                error_type,
                message,
                reason: "scripted response".into(),
            };
            let response = reject(shared, &peer, &route, &rejection, shared.now(0));
            send(&mut tls, &response, &peer);
            return;
        }
        Some(Scripted::Reset) => {
            log::info!("{peer} {route} -> connection closed without a response (scripted)");
            return;
        }
        Some(Scripted::Stall(duration)) => {
            log::info!(
                "{peer} {route} -> stalling {} ms (scripted)",
                duration.as_millis()
            );
            if !sleep_unless_stopping(shared, duration) {
                return;
            }
        }
        Some(Scripted::Expiration(text)) => expiration_override = Some(text),
        Some(Scripted::DateOffset(seconds)) => shift = seconds,
        None => {}
    }

    let now = shared.now(shift);
    let response = respond(shared, &peer, &route, &request, now, expiration_override);
    send(&mut tls, &response, &peer);
}

/// Verifies `request` and builds the 201 or the error response.
fn respond(
    shared: &Shared,
    peer: &str,
    route: &str,
    request: &Request,
    now: i64,
    expiration_override: Option<String>,
) -> Response {
    let accepted = match shared.verifier.verify(request, now) {
        Ok(accepted) => accepted,
        Err(rejection) => return reject(shared, peer, route, &rejection, now),
    };
    let duration = i64::try_from(accepted.duration_seconds).unwrap_or(i64::MAX);
    let expiration =
        expiration_override.unwrap_or_else(|| clock::format_iso8601(now.saturating_add(duration)));
    let credentials = match responses::generate_credentials(&shared.rng, expiration) {
        Ok(credentials) => credentials,
        Err(_) => {
            let rejection = Rejection {
                status: 500,
                error_type: "InternalServerException".into(),
                message: "Internal error".into(),
                reason: "the system random number generator failed".into(),
            };
            return reject(shared, peer, route, &rejection, now);
        }
    };
    log::info!(
        "{peer} {route} -> 201 credentials for {} (session {}), expiration {}",
        accepted.session.role_arn,
        accepted.session.role_session_name,
        credentials.expiration
    );
    let response = responses::success_response(&accepted.session, &credentials, now);
    shared.state().issued.push(credentials);
    response
}

/// Logs and records `rejection`, and returns its response.
fn reject(shared: &Shared, peer: &str, route: &str, rejection: &Rejection, now: i64) -> Response {
    log::info!(
        "{peer} {route} -> {} {}: {}",
        rejection.status,
        rejection.error_type,
        rejection.reason
    );
    if rejection.status >= 400 {
        shared.state().last_rejection = Some(rejection.clone());
    }
    rejection.to_response(now)
}

/// Writes `response`, then a TLS `close_notify`.
fn send(tls: &mut StreamOwned<ServerConnection, TcpStream>, response: &Response, peer: &str) {
    let result = http::write_response(tls, response).and_then(|()| {
        tls.conn.send_close_notify();
        tls.flush()
    });
    if let Err(e) = result {
        log::warn!(
            "{peer}: writing the {} response failed: {e}",
            response.status
        );
    }
}

/// Sleeps for `duration` in short steps; returns false if the server began stopping.
fn sleep_unless_stopping(shared: &Shared, duration: Duration) -> bool {
    let deadline = Instant::now() + duration;
    loop {
        if shared.stopping.load(Ordering::SeqCst) {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        thread::sleep(left.min(Duration::from_millis(50)));
    }
}
