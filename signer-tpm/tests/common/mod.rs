//! Test harness: one swtpm process per test, fixtures made with tpm2-tools and the
//! tpm2-openssl provider, and certificates issued by the test CA in tests/vectors/pki.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ra_signer::Certificate;
use ra_signer_tpm::transport::Transport;
use ra_signer_tpm::{Connect, TpmAddress, TpmError};

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A fresh temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = NEXT_DIR.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("ra-signer-tpm-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How swtpm listens for TPM commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// TCP data port P and control port P+1 on 127.0.0.1.
    Tcp,
    /// Unix socket `tpm.sock` and control socket `tpm.sock.ctrl`.
    Unix,
}

/// A running swtpm, killed on drop, with its state in its own directory.
pub struct Swtpm {
    child: Child,
    pub listen: Listen,
    pub port: u16,
    pub dir: TempDir,
}

fn free_port_pair() -> u16 {
    loop {
        let first = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        if port == u16::MAX {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

impl Swtpm {
    pub fn start(listen: Listen) -> Swtpm {
        let dir = TempDir::new("swtpm");
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        for _ in 0..5 {
            let port = free_port_pair();
            let mut child = spawn_swtpm(dir.path(), listen, port);
            if wait_ready(&mut child, dir.path(), listen, port) {
                return Swtpm {
                    child,
                    listen,
                    port,
                    dir,
                };
            }
            // The ports were taken in the meantime; try others.
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("swtpm did not start");
    }

    /// Stops swtpm and starts it again on the same state, listening as `listen`.
    /// Persistent objects and hierarchy seeds survive; transient objects do not.
    pub fn restart(&mut self, listen: Listen) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(self.socket_path());
        let _ = std::fs::remove_file(self.dir.path().join("tpm.sock.ctrl"));
        for _ in 0..5 {
            let port = free_port_pair();
            let mut child = spawn_swtpm(self.dir.path(), listen, port);
            if wait_ready(&mut child, self.dir.path(), listen, port) {
                self.child = child;
                self.port = port;
                self.listen = listen;
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("swtpm did not restart");
    }

    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("tpm.sock")
    }

    /// Returns the TCTI string for tpm2-tools and tpm2-openssl.
    pub fn tcti(&self) -> String {
        match self.listen {
            Listen::Tcp => format!("swtpm:host=127.0.0.1,port={}", self.port),
            Listen::Unix => format!("swtpm:path={}", self.socket_path().display()),
        }
    }

    /// Returns the `--tpm-device` string for this crate, the same as the TCTI string.
    pub fn device(&self) -> String {
        self.tcti()
    }

    pub fn address(&self) -> TpmAddress {
        TpmAddress::parse(&self.device()).unwrap()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs a tpm2-tools or openssl command against this TPM, panicking with its
    /// output on failure, then flushes what the tools left loaded.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let output = self.command(program, args).output().unwrap();
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        self.flush_tools();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs a command and returns whether it succeeded, with its stderr.
    pub fn try_run(&self, program: &str, args: &[&str]) -> (bool, String) {
        let output = self.command(program, args).output().unwrap();
        self.flush_tools();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("TPM2TOOLS_TCTI", self.tcti())
            .env("TPM2OPENSSL_TCTI", self.tcti())
            .env("TSS2_LOG", "all+none")
            .stdin(Stdio::null());
        command
    }

    fn flush_tools(&self) {
        for kind in ["-t", "-s"] {
            let status = self
                .command("tpm2_flushcontext", &[kind])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "tpm2_flushcontext {kind} failed");
        }
    }

    /// Creates a key with tpm2-tools under a fresh owner primary and makes it persistent
    /// at `handle`. `algorithm` is a tpm2-tools spec such as `rsa2048` or
    /// `ecc384:ecdsa-sha384`. Returns the path of its public key PEM.
    pub fn persistent_key(&self, algorithm: &str, handle: u32, password: Option<&str>) -> PathBuf {
        self.persistent_key_with_attributes(algorithm, handle, password, None)
    }

    /// [`Swtpm::persistent_key`] with tpm2-tools object attributes such as
    /// `fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign`.
    pub fn persistent_key_with_attributes(
        &self,
        algorithm: &str,
        handle: u32,
        password: Option<&str>,
        attributes: Option<&str>,
    ) -> PathBuf {
        let tag = format!("{handle:08x}");
        let primary = format!("primary-{tag}.ctx");
        let public = format!("key-{tag}.pub");
        let private = format!("key-{tag}.priv");
        let context = format!("key-{tag}.ctx");
        let pem = format!("key-{tag}.pem");
        let handle_text = format!("0x{handle:08x}");
        self.run(
            "tpm2_createprimary",
            &["-Q", "-C", "o", "-g", "sha256", "-G", "ecc", "-c", &primary],
        );
        let mut create = vec![
            "-Q", "-C", &primary, "-G", algorithm, "-u", &public, "-r", &private,
        ];
        let auth;
        if let Some(password) = password {
            auth = format!("str:{password}");
            create.extend(["-p", &auth]);
        }
        if let Some(attributes) = attributes {
            create.extend(["-a", attributes]);
        }
        self.run("tpm2_create", &create);
        self.run(
            "tpm2_load",
            &[
                "-Q", "-C", &primary, "-u", &public, "-r", &private, "-c", &context,
            ],
        );
        self.run(
            "tpm2_evictcontrol",
            &["-Q", "-C", "o", "-c", &context, &handle_text],
        );
        self.run(
            "tpm2_readpublic",
            &["-Q", "-c", &handle_text, "-f", "pem", "-o", &pem],
        );
        self.path(&pem)
    }

    /// Makes the standard ECC storage primary persistent at `handle`, as a parent for
    /// key files.
    pub fn persistent_parent(&self, handle: u32, password: Option<&str>) {
        let tag = format!("{handle:08x}");
        let context = format!("parent-{tag}.ctx");
        let mut create = vec!["-Q", "-C", "o", "-g", "sha256", "-G", "ecc", "-c", &context];
        let auth;
        if let Some(password) = password {
            auth = format!("str:{password}");
            create.extend(["-p", &auth]);
        }
        self.run("tpm2_createprimary", &create);
        let handle_text = format!("0x{handle:08x}");
        self.run(
            "tpm2_evictcontrol",
            &["-Q", "-C", "o", "-c", &context, &handle_text],
        );
    }

    /// Creates a TSS2 private key file with `openssl genpkey -provider tpm2`.
    /// `options` are `-pkeyopt` values such as `bits:2048` or `group:P-384`.
    /// `parent_password` is the password of the persistent parent or of the owner
    /// hierarchy. Returns the key file and its public key PEM.
    pub fn key_file(
        &self,
        name: &str,
        algorithm: &str,
        options: &[&str],
        password: Option<&str>,
        parent: Option<u32>,
    ) -> (PathBuf, PathBuf) {
        self.key_file_with_parent_password(name, algorithm, options, password, parent, None)
    }

    /// [`Swtpm::key_file`] with a parent or hierarchy password.
    pub fn key_file_with_parent_password(
        &self,
        name: &str,
        algorithm: &str,
        options: &[&str],
        password: Option<&str>,
        parent: Option<u32>,
        parent_password: Option<&str>,
    ) -> (PathBuf, PathBuf) {
        let key = format!("{name}.key.pem");
        let public = format!("{name}.pub.pem");
        let mut args = vec![
            "genpkey".to_owned(),
            "-provider".into(),
            "tpm2".into(),
            "-provider".into(),
            "base".into(),
            "-algorithm".into(),
            algorithm.into(),
        ];
        for option in options {
            args.extend(["-pkeyopt".into(), (*option).into()]);
        }
        if let Some(password) = password {
            args.extend(["-pkeyopt".into(), format!("user-auth:{password}")]);
        }
        if let Some(parent) = parent {
            args.extend(["-pkeyopt".into(), format!("parent:0x{parent:08x}")]);
        }
        if let Some(parent_password) = parent_password {
            args.extend(["-pkeyopt".into(), format!("parent-auth:{parent_password}")]);
        }
        args.extend(["-out".into(), key.clone()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run("openssl", &args);

        let passin = format!("pass:{}", password.unwrap_or(""));
        let pubout = [
            "pkey",
            "-provider",
            "tpm2",
            "-provider",
            "base",
            "-in",
            &key,
            "-passin",
            &passin,
            "-pubout",
            "-out",
            &public,
        ];
        let output = self
            .command("openssl", &pubout)
            .env("TPM2OPENSSL_PARENT_AUTH", parent_password.unwrap_or(""))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "openssl pkey -pubout failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        self.flush_tools();
        (self.path(&key), self.path(&public))
    }

    /// Issues a certificate for the public key in `public_pem` from the RSA or EC test
    /// intermediate CA, valid from a day ago for two days, keyUsage digitalSignature.
    pub fn issue_certificate(&self, public_pem: &Path, ca: Ca) -> (Certificate, Vec<Vec<u8>>) {
        let pki = pki_dir().join(ca.dir());
        let ext = self.path("leaf-ext.cnf");
        std::fs::write(
            &ext,
            "keyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        let cert = public_pem.with_extension("crt");
        let status = Command::new("openssl")
            .args([
                "x509",
                "-new",
                "-subj",
                "/CN=ra-signer-tpm test/O=Example Test",
            ])
            .arg("-force_pubkey")
            .arg(public_pem)
            .arg("-CA")
            .arg(pki.join("int.pem"))
            .arg("-CAkey")
            .arg(pki.join("int.key"))
            .args(["-days", "2", "-outform", "DER", "-extfile"])
            .arg(&ext)
            .arg("-out")
            .arg(&cert)
            .stderr(Stdio::inherit())
            .status()
            .unwrap();
        assert!(status.success(), "openssl x509 -new failed");
        let der = std::fs::read(&cert).unwrap();
        let certificate = Certificate::from_der(der, &cert.display().to_string()).unwrap();
        let intermediates = ra_signer::read_certificates(&pki.join("int.pem")).unwrap();
        let chain = ra_signer::build_chain(&certificate, &intermediates)
            .into_iter()
            .map(Certificate::into_der)
            .collect::<Vec<_>>();
        assert_eq!(chain.len(), 1, "the intermediate must issue the leaf");
        (certificate, chain)
    }
}

fn wait_ready(child: &mut Child, dir: &Path, listen: Listen, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        let ready = match listen {
            Listen::Tcp => TcpStream::connect(("127.0.0.1", port)).is_ok(),
            Listen::Unix => UnixStream::connect(dir.join("tpm.sock")).is_ok(),
        };
        if ready {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn spawn_swtpm(dir: &Path, listen: Listen, port: u16) -> Child {
    let state = format!("dir={}", dir.join("state").display());
    let (server, ctrl) = match listen {
        Listen::Tcp => (
            format!("type=tcp,port={port},bindaddr=127.0.0.1"),
            format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1),
        ),
        Listen::Unix => (
            format!("type=unixio,path={}", dir.join("tpm.sock").display()),
            format!("type=unixio,path={}", dir.join("tpm.sock.ctrl").display()),
        ),
    };
    Command::new("swtpm")
        .args(["socket", "--tpm2", "--flags", "not-need-init,startup-clear"])
        .args(["--tpmstate", &state, "--server", &server, "--ctrl", &ctrl])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("swtpm must be installed (apt-get install swtpm swtpm-tools)")
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which test CA issues a certificate.
#[derive(Debug, Clone, Copy)]
pub enum Ca {
    Rsa,
    Ec,
}

impl Ca {
    fn dir(self) -> &'static str {
        match self {
            Ca::Rsa => "rsa",
            Ca::Ec => "ec",
        }
    }
}

pub fn pki_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/pki")
}

/// A connector that counts the commands sent through it, by command code, and records
/// each command code with its response code.
#[derive(Debug, Clone)]
pub struct Counting {
    pub inner: TpmAddress,
    pub counts: Arc<Mutex<HashMap<u32, usize>>>,
    pub responses: Arc<Mutex<Vec<(u32, u32)>>>,
}

pub const CC_SIGN: u32 = 0x15D;
pub const CC_LOAD: u32 = 0x157;
pub const CC_CREATE_PRIMARY: u32 = 0x131;

impl Counting {
    pub fn new(inner: TpmAddress) -> Counting {
        Counting {
            inner,
            counts: Arc::default(),
            responses: Arc::default(),
        }
    }

    /// Returns the response codes the TPM sent for commands with code `cc`, in order.
    pub fn response_codes(&self, cc: u32) -> Vec<u32> {
        let responses = self.responses.lock().unwrap();
        responses
            .iter()
            .filter(|(command, _)| *command == cc)
            .map(|(_, rc)| *rc)
            .collect()
    }

    pub fn count(&self, cc: u32) -> usize {
        self.counts.lock().unwrap().get(&cc).copied().unwrap_or(0)
    }
}

#[derive(Debug)]
struct CountingTransport {
    inner: Box<dyn Transport>,
    counts: Arc<Mutex<HashMap<u32, usize>>>,
    responses: Arc<Mutex<Vec<(u32, u32)>>>,
}

impl Transport for CountingTransport {
    fn transact(&mut self, command: &[u8]) -> io::Result<Vec<u8>> {
        let cc = u32::from_be_bytes(command[6..10].try_into().unwrap());
        *self.counts.lock().unwrap().entry(cc).or_default() += 1;
        let response = self.inner.transact(command)?;
        let rc = u32::from_be_bytes(response[6..10].try_into().unwrap());
        self.responses.lock().unwrap().push((cc, rc));
        Ok(response)
    }
}

impl Connect for Counting {
    fn connect(&self) -> Result<Box<dyn Transport>, TpmError> {
        Ok(Box::new(CountingTransport {
            inner: self.inner.connect()?,
            counts: self.counts.clone(),
            responses: self.responses.clone(),
        }))
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

/// Asserts that no transient object is loaded in the TPM.
pub fn assert_no_transients(swtpm: &Swtpm) {
    let handles = ra_signer_tpm::transient_handles(&swtpm.address()).unwrap();
    assert!(
        handles.is_empty(),
        "transient objects left loaded: {handles:08x?}"
    );
}
