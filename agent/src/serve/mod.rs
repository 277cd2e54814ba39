//! Local credential endpoints for AWS SDKs on the device, so applications get the
//! agent's temporary credentials without a file. Only the temporary credentials from the
//! [`CredentialStore`] are served, because this module never has access to the private key.
//!
//! Two protocols on one listener:
//! - IMDSv2, for SDKs started with `AWS_EC2_METADATA_SERVICE_ENDPOINT=http://127.0.0.1:9911`:
//!   `PUT /latest/api/token` issues a session token, and
//!   `GET /latest/meta-data/iam/security-credentials/ROLE` returns the credentials.
//! - ECS container credentials, for SDKs started with
//!   `AWS_CONTAINER_CREDENTIALS_FULL_URI=http://127.0.0.1:9911/credentials` and
//!   `AWS_CONTAINER_AUTHORIZATION_TOKEN` (or `..._TOKEN_FILE`): `GET /credentials`.
//!
//! Responses go out with the IP TTL (IPv4) or hop limit (IPv6) set to
//! [`Settings::hop_limit`], 1 by default, so no router forwards them. Requests with
//! `X-Forwarded-For` are rejected, as EC2 does, so a proxy on the device cannot relay
//! the endpoint. The server uses blocking sockets and one thread per connection, at most
//! [`MAX_CONNECTIONS`] at a time.

mod request;
mod routes;
mod tokens;

use std::io::{self, Read as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ring::rand::SystemRandom;
use socket2::SockRef;
use zeroize::Zeroizing;

use crate::store::CredentialStore;
use routes::Endpoints;

pub use routes::{CREDENTIALS_PATH, ECS_PATH, MAX_TOKEN_TTL, TOKEN_PATH};
pub use tokens::MAX_TOKENS;

/// Default listen address: loopback only, port 9911.
pub const DEFAULT_BIND: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9911);
/// Default IP TTL / hop limit of responses: 1, so they never pass a router.
pub const DEFAULT_HOP_LIMIT: u8 = 1;
/// Maximum number of connections served at once. Further clients wait in the listen
/// backlog until one finishes.
pub const MAX_CONNECTIONS: usize = 16;
/// Time a client has to send its whole request, and the write timeout for the response.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Stack size of connection threads. A request needs a few KiB, so the default 2 MiB of
/// address space per thread would be wasted on small devices.
const THREAD_STACK: usize = 128 * 1024;
/// Time to wait between `accept` failures (for example, out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Limits for reading what a client sends after a rejected request.
const DRAIN_LIMIT: usize = 64 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(1);
/// Minimum time between two warnings about failing `accept` calls.
const ACCEPT_WARN_INTERVAL: Duration = Duration::from_secs(60);

/// Settings of the local endpoints.
#[derive(Clone)]
pub struct Settings {
    /// Listen address, IPv4 or IPv6. Use a loopback address. Other addresses expose the
    /// credentials to the local network segment, and the SDKs accept a plain-HTTP ECS
    /// endpoint only on loopback or the ECS and EKS link-local addresses (169.254.170.2,
    /// 169.254.170.23, fd00:ec2::23; see the `aws_config::ecs` documentation).
    pub bind: SocketAddr,
    /// IP TTL (IPv4) and unicast hop limit (IPv6) of every packet sent, 1 to 255.
    pub hop_limit: u8,
    /// The role name the IMDS endpoint lists: the last part of the role ARN's resource
    /// (`Example` in `arn:aws:iam::123456789012:role/path/Example`).
    pub role_name: String,
    /// The role ARN returned as `RoleArn` by the ECS endpoint, omitted when `None`.
    pub role_arn: Option<String>,
    /// The token ECS clients must send in `Authorization`. `None` disables the ECS
    /// endpoint (404).
    pub ecs_token: Option<Zeroizing<String>>,
}

impl Settings {
    /// Returns default settings for the role `role_arn`, with the ECS endpoint disabled.
    pub fn for_role(role_arn: &str) -> Settings {
        Settings {
            bind: DEFAULT_BIND,
            hop_limit: DEFAULT_HOP_LIMIT,
            role_name: role_name_from_arn(role_arn).to_owned(),
            role_arn: Some(role_arn.to_owned()),
            ecs_token: None,
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("bind", &self.bind)
            .field("hop_limit", &self.hop_limit)
            .field("role_name", &self.role_name)
            .field("role_arn", &self.role_arn)
            .field("ecs_token", &self.ecs_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Returns the role name in a role ARN: the text after the last `/` of
/// `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`, or the whole value if it has no `/`.
pub fn role_name_from_arn(role_arn: &str) -> &str {
    role_arn.rsplit('/').next().unwrap_or(role_arn)
}

/// Generates a random ECS authorization token and writes it to `path` atomically with
/// mode 0600, without a trailing newline, for `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`.
/// Returns the token to pass as [`Settings::ecs_token`].
pub fn write_ecs_token_file(path: &Path) -> io::Result<Zeroizing<String>> {
    let token = tokens::random_token(&SystemRandom::new())
        .map_err(|_| io::Error::other("the system random number generator failed"))?;
    crate::atomic::write(path, token.as_bytes(), crate::atomic::FileMode::default()).map_err(
        |e| {
            let kind = match &e {
                crate::error::Error::Output { source, .. } => source.kind(),
                _ => io::ErrorKind::Other,
            };
            io::Error::new(kind, e)
        },
    )?;
    Ok(token)
}

/// A running server. Dropping it stops the server, as [`Handle::stop`] does.
#[derive(Debug)]
pub struct Handle {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    endpoints: Endpoints,
    hop_limit: u8,
    stopping: AtomicBool,
    /// Number of connection threads running. The acceptor waits on `slot_free` while it
    /// is at `MAX_CONNECTIONS`, and `stop` waits on it for zero.
    active: Mutex<usize>,
    slot_free: Condvar,
    /// The hop limit read back from the last accepted socket, for tests.
    #[cfg(test)]
    observed_hop_limit: Mutex<Option<u32>>,
}

/// Starts serving `store` with `settings` on a background thread and returns once the
/// listener is bound. Fails if the address cannot be bound, `hop_limit` is 0 or the role
/// name is empty or contains `/`.
pub fn start(settings: Settings, store: Arc<CredentialStore>) -> io::Result<Handle> {
    check_settings(&settings)?;
    let listener = TcpListener::bind(settings.bind).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "cannot listen on {}: {e} (is another agent running? choose a free address)",
                settings.bind
            ),
        )
    })?;
    let local_addr = listener.local_addr()?;
    // Also on the listener, so the SYN-ACK carries the limit.
    set_hop_limit(&listener, local_addr, settings.hop_limit)?;
    if !local_addr.ip().is_loopback() {
        log::warn!(
            "serve: listening on {local_addr}, which is not a loopback address, so hosts on \
             the same network segment can request credentials"
        );
    }

    let ecs_enabled = settings.ecs_token.is_some();
    let shared = Arc::new(Shared {
        endpoints: Endpoints {
            role_name: settings.role_name,
            role_arn: settings.role_arn,
            ecs_token: settings.ecs_token,
            store,
            tokens: tokens::TokenTable::default(),
        },
        hop_limit: settings.hop_limit,
        stopping: AtomicBool::new(false),
        active: Mutex::new(0),
        slot_free: Condvar::new(),
        #[cfg(test)]
        observed_hop_limit: Mutex::new(None),
    });
    let acceptor_shared = Arc::clone(&shared);
    let acceptor = thread::Builder::new()
        .name("serve-accept".into())
        .stack_size(THREAD_STACK)
        .spawn(move || accept_loop(&listener, &acceptor_shared))?;
    log::info!(
        "serve: listening on http://{local_addr} for IMDSv2 (role {}) and ECS \
         ({}), hop limit {}",
        shared.endpoints.role_name,
        if ecs_enabled { "enabled" } else { "disabled" },
        settings.hop_limit
    );
    Ok(Handle {
        local_addr,
        shared,
        acceptor: Some(acceptor),
    })
}

fn check_settings(settings: &Settings) -> io::Result<()> {
    let invalid = |message: String| Err(io::Error::new(io::ErrorKind::InvalidInput, message));
    if settings.hop_limit == 0 {
        return invalid(
            "invalid hop limit 0: expected 1 to 255 (1 keeps responses on the host)".into(),
        );
    }
    if settings.role_name.is_empty() || settings.role_name.contains('/') {
        return invalid(format!(
            "invalid role name {:?}: expected the last part of the role ARN, without '/'",
            settings.role_name
        ));
    }
    if settings.ecs_token.as_ref().is_some_and(|t| t.is_empty()) {
        return invalid("invalid ECS authorization token: it is empty".into());
    }
    Ok(())
}

impl Handle {
    /// Returns the bound address, with the port the system chose for port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections and waits up to [`IO_TIMEOUT`] for requests in
    /// progress to finish.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.slot_free.notify_all();
        // `accept` blocks until a client connects, so connect once to wake it.
        match TcpStream::connect_timeout(&wake_address(self.local_addr), IO_TIMEOUT) {
            Ok(_) => {
                if acceptor.join().is_err() {
                    log::error!("serve: the accept thread panicked");
                }
            }
            Err(e) => log::warn!(
                "serve: cannot connect to {} to stop the accept thread, so it keeps running: {e}",
                self.local_addr
            ),
        }
        self.wait_for_connections(Instant::now() + IO_TIMEOUT);
        log::info!("serve: stopped listening on http://{}", self.local_addr);
    }

    fn wait_for_connections(&self, deadline: Instant) {
        let mut active = lock(&self.shared.active);
        while *active > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::warn!("serve: stopped with {} requests still in progress", *active);
                return;
            }
            active = match self.shared.slot_free.wait_timeout(active, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Returns an address that reaches a listener bound to `local`: loopback of the same
/// family when it is bound to the unspecified address.
fn wake_address(local: SocketAddr) -> SocketAddr {
    let ip = match local.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, local.port())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    let mut last_warning: Option<Instant> = None;
    let mut suppressed = 0u32;
    loop {
        {
            let mut active = lock(&shared.active);
            while *active >= MAX_CONNECTIONS && !shared.stopping.load(Ordering::SeqCst) {
                active = shared
                    .slot_free
                    .wait(active)
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let (stream, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(e) if shared.stopping.load(Ordering::SeqCst) => {
                log::debug!("serve: accept failed while stopping: {e}");
                return;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                if last_warning.is_none_or(|t| t.elapsed() >= ACCEPT_WARN_INTERVAL) {
                    log::warn!(
                        "serve: accept failed: {e} ({suppressed} more failures since the last warning)"
                    );
                    last_warning = Some(Instant::now());
                    suppressed = 0;
                } else {
                    suppressed = suppressed.saturating_add(1);
                }
                thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        *lock(&shared.active) += 1;
        let worker_shared = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name("serve-conn".into())
            .stack_size(THREAD_STACK)
            .spawn(move || {
                let _slot = Slot(&worker_shared);
                serve_connection(stream, peer, &worker_shared);
            });
        if let Err(e) = spawned {
            // The closure, and with it the stream, was dropped without running.
            log::warn!(
                "serve: closing the connection from {peer} because starting a thread failed: {e}"
            );
            release_slot(shared);
        }
    }
}

/// Releases a connection slot when the connection thread ends, also on panic.
struct Slot<'a>(&'a Shared);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        release_slot(self.0);
    }
}

fn release_slot(shared: &Shared) {
    let mut active = lock(&shared.active);
    *active = active.saturating_sub(1);
    shared.slot_free.notify_all();
}

fn serve_connection(mut stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    let local = match stream.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            log::debug!("serve: {peer}: cannot read the local address: {e}");
            return;
        }
    };
    // Without the hop limit a response could leave the host, so none is sent.
    if let Err(e) = set_hop_limit(&stream, local, shared.hop_limit) {
        log::warn!(
            "serve: {peer}: closing the connection because setting the hop limit failed: {e}"
        );
        return;
    }
    #[cfg(test)]
    {
        *lock(&shared.observed_hop_limit) = read_hop_limit(&stream, local).ok();
    }
    if let Err(e) = stream.set_write_timeout(Some(IO_TIMEOUT)) {
        log::debug!("serve: {peer}: cannot set the write timeout: {e}");
        return;
    }

    let mut unread_input = false;
    let response = match request::read(&mut stream, Instant::now() + IO_TIMEOUT) {
        Ok(request) => {
            let response = shared.endpoints.respond(&request);
            log::debug!(
                "serve: {peer} {} {:?} {}",
                request.method,
                request.path,
                response.status
            );
            response
        }
        Err(request::ReadError::Closed) => return,
        Err(request::ReadError::Io(e)) => {
            log::debug!("serve: {peer}: reading the request failed: {e}");
            return;
        }
        Err(request::ReadError::Invalid(status, reason)) => {
            log::debug!("serve: {peer}: invalid request: {reason}: {status}");
            unread_input = true;
            request::Response::text(status, &format!("{reason}\n"))
        }
    };
    if let Err(e) = response.write_to(&mut stream) {
        log::debug!("serve: {peer}: writing the response failed: {e}");
    }
    let _ = stream.shutdown(Shutdown::Write);
    if unread_input {
        discard_input(&mut stream);
    }
}

/// Reads and drops what the client still sends, up to [`DRAIN_LIMIT`] bytes or
/// [`DRAIN_TIME`]. Closing a socket with unread input makes the kernel send a reset,
/// which can destroy the error response before the client reads it.
fn discard_input(stream: &mut TcpStream) {
    let deadline = Instant::now() + DRAIN_TIME;
    let mut buffer = [0u8; 1024];
    let mut total = 0;
    while total < DRAIN_LIMIT {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}

/// Sets the IPv4 TTL or IPv6 unicast hop limit of `socket`, bound to `local`. An IPv6
/// socket also gets the IPv4 TTL, which applies to IPv4 peers of a dual-stack socket.
/// Setting it must succeed when `local` is an IPv4-mapped address.
fn set_hop_limit<'s, S>(socket: &'s S, local: SocketAddr, hop_limit: u8) -> io::Result<()>
where
    SockRef<'s>: From<&'s S>,
{
    let socket = SockRef::from(socket);
    let hops = u32::from(hop_limit);
    match local {
        SocketAddr::V4(_) => socket.set_ttl_v4(hops),
        SocketAddr::V6(v6) => {
            socket.set_unicast_hops_v6(hops)?;
            let ttl = socket.set_ttl_v4(hops);
            if v6.ip().to_ipv4_mapped().is_some() {
                ttl?;
            }
            Ok(())
        }
    }
}

/// Reads back the limit [`set_hop_limit`] applies to packets to and from `local`.
#[cfg(test)]
fn read_hop_limit(stream: &TcpStream, local: SocketAddr) -> io::Result<u32> {
    let socket = SockRef::from(stream);
    match local {
        SocketAddr::V4(_) => socket.ttl_v4(),
        SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_some() => socket.ttl_v4(),
        SocketAddr::V6(_) => socket.unicast_hops_v6(),
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
