//! A real swtpm for the end-to-end tests: one process per test function, keys made with
//! tpm2-tools and the tpm2-openssl provider, certificates issued by the test CAs in
//! tests/vectors/pki, and a way to run `ra-agent` with a clean TPM environment.
#![allow(dead_code, clippy::unwrap_used)] // each test binary uses a different subset

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ra_signer_tpm::TpmAddress;

use crate::common::{TempDir, pki};

mod fixture;
pub use fixture::*;

/// How swtpm listens for TPM commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listen {
    /// TCP data port P and control port P+1 on 127.0.0.1.
    Tcp,
    /// Unix socket `tpm.sock` and control socket `tpm.sock.ctrl`.
    Unix,
}

/// A running swtpm with its state in its own directory, killed on drop.
pub struct Swtpm {
    child: Child,
    pub listen: Listen,
    pub port: u16,
    pub dir: TempDir,
}

/// Which test CA issues a certificate, and so which trust anchor accepts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

    /// Returns the PEM file with the intermediate CA certificate.
    pub fn chain(self) -> PathBuf {
        pki(&format!("{}/chain.pem", self.dir()))
    }

    /// Returns the trust anchor ARN of the verifying endpoint for this CA.
    pub fn anchor(self) -> &'static str {
        match self {
            Ca::Rsa => crate::common::RSA_TRUST_ANCHOR_ARN,
            Ca::Ec => crate::common::EC_TRUST_ANCHOR_ARN,
        }
    }
}

/// Returns a port P with P and P+1 free on 127.0.0.1 at the time of the call.
fn free_port_pair() -> u16 {
    loop {
        let first = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

impl Swtpm {
    /// Starts swtpm on fresh state, retrying with other ports if another process takes
    /// the chosen ones first.
    pub fn start(listen: Listen) -> Swtpm {
        let dir = TempDir::new("swtpm");
        std::fs::create_dir_all(dir.path("state")).unwrap();
        for _ in 0..5 {
            let port = free_port_pair();
            let mut child = spawn(&dir, listen, port);
            if wait_ready(&mut child, &dir, listen, port) {
                return Swtpm {
                    child,
                    listen,
                    port,
                    dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("swtpm did not start");
    }

    pub fn socket_path(&self) -> PathBuf {
        self.dir.path("tpm.sock")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path(name)
    }

    /// Returns the tpm2-tss TCTI string for tpm2-tools and tpm2-openssl.
    pub fn tcti(&self) -> String {
        match self.listen {
            Listen::Tcp => format!("swtpm:host=127.0.0.1,port={}", self.port),
            Listen::Unix => format!("swtpm:path={}", self.socket_path().display()),
        }
    }

    /// Returns the `--tpm-device` value: `swtpm:host=127.0.0.1,port=P` or `unix:PATH`.
    pub fn device(&self) -> String {
        match self.listen {
            Listen::Tcp => self.tcti(),
            Listen::Unix => format!("unix:{}", self.socket_path().display()),
        }
    }

    pub fn address(&self) -> TpmAddress {
        TpmAddress::parse(&self.device()).unwrap()
    }

    /// Returns the handles of the transient objects loaded in the TPM.
    pub fn transient_handles(&self) -> Vec<u32> {
        ra_signer_tpm::transient_handles(&self.address()).unwrap()
    }

    /// Returns the dictionary-attack failure counter.
    pub fn lockout_counter(&self) -> u32 {
        ra_signer_tpm::lockout_counter(&self.address()).unwrap()
    }

    /// Runs a tpm2-tools or openssl command against this TPM, panicking with its output
    /// on failure, then flushes what the tool left loaded (swtpm has no resource
    /// manager).
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

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(&self.dir.0)
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
    /// at `handle`. `algorithm` is a tpm2-tools spec such as `rsa2048` or `ecc384`.
    /// Returns the path of its public key PEM.
    pub fn persistent_key(&self, algorithm: &str, handle: u32, password: Option<&str>) -> PathBuf {
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

    /// Makes the standard ECC storage primary key persistent at `handle`, as the parent
    /// of key files.
    pub fn persistent_parent(&self, handle: u32, password: Option<&str>) {
        let context = format!("parent-{handle:08x}.ctx");
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

    /// Creates a TSS2 private key file with `openssl genpkey -provider tpm2` under the
    /// owner hierarchy or the persistent `parent`. `options` are `-pkeyopt` values such
    /// as `bits:2048` or `group:P-384`. Returns the key file and its public key PEM.
    pub fn key_file(
        &self,
        name: &str,
        algorithm: &str,
        options: &[&str],
        password: Option<&str>,
        parent: Option<(u32, Option<&str>)>,
    ) -> (PathBuf, PathBuf) {
        let key = format!("{name}.key.pem");
        let public = format!("{name}.pub.pem");
        let mut args: Vec<String> = ["genpkey", "-provider", "tpm2", "-provider", "base"]
            .map(String::from)
            .to_vec();
        args.extend(["-algorithm".into(), algorithm.into()]);
        for option in options {
            args.extend(["-pkeyopt".into(), (*option).into()]);
        }
        if let Some(password) = password {
            args.extend(["-pkeyopt".into(), format!("user-auth:{password}")]);
        }
        let parent_password = parent.and_then(|(_, password)| password).unwrap_or("");
        if let Some((handle, password)) = parent {
            args.extend(["-pkeyopt".into(), format!("parent:0x{handle:08x}")]);
            if let Some(password) = password {
                args.extend(["-pkeyopt".into(), format!("parent-auth:{password}")]);
            }
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
            .env("TPM2OPENSSL_PARENT_AUTH", parent_password)
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

    /// Issues a PEM certificate with the subject `CN=<common_name>` for the public key in
    /// `public_pem` from the RSA or EC test intermediate CA, valid from now for two
    /// days, keyUsage digitalSignature. With `with_chain` the intermediate certificate
    /// follows the leaf in the file. Returns the certificate file.
    pub fn issue_certificate(
        &self,
        public_pem: &Path,
        ca: Ca,
        common_name: &str,
        with_chain: bool,
    ) -> PathBuf {
        let ca_dir = pki(ca.dir());
        let extensions = self.path("leaf-ext.cnf");
        std::fs::write(
            &extensions,
            "keyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        let certificate = self.path(&format!("{common_name}.crt.pem"));
        let output = Command::new("openssl")
            .args(["x509", "-new", "-subj"])
            .arg(format!("/CN={common_name}/O=Example Test"))
            .arg("-force_pubkey")
            .arg(public_pem)
            .arg("-CA")
            .arg(ca_dir.join("int.pem"))
            .arg("-CAkey")
            .arg(ca_dir.join("int.key"))
            .args(["-days", "2", "-extfile"])
            .arg(&extensions)
            .arg("-out")
            .arg(&certificate)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "openssl x509 -new failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        if with_chain {
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(&certificate)
                .unwrap();
            file.write_all(&std::fs::read(ca.chain()).unwrap()).unwrap();
        }
        certificate
    }

    /// Asserts that no transient object is loaded, so the agent flushed every key it
    /// loaded (swtpm has no resource manager to do it).
    pub fn assert_no_transients(&self, context: &str) {
        let handles = self.transient_handles();
        assert!(
            handles.is_empty(),
            "{context}: transient objects left loaded: {handles:08x?}"
        );
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(dir: &TempDir, listen: Listen, port: u16) -> Child {
    let state = format!("dir={}", dir.path("state").display());
    let (server, control) = match listen {
        Listen::Tcp => (
            format!("type=tcp,port={port},bindaddr=127.0.0.1"),
            format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1),
        ),
        Listen::Unix => (
            format!("type=unixio,path={}", dir.path("tpm.sock").display()),
            format!("type=unixio,path={}", dir.path("tpm.sock.ctrl").display()),
        ),
    };
    Command::new("swtpm")
        .args(["socket", "--tpm2", "--flags", "not-need-init,startup-clear"])
        .args([
            "--tpmstate",
            &state,
            "--server",
            &server,
            "--ctrl",
            &control,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("swtpm must be installed (apt-get install swtpm swtpm-tools)")
}

fn wait_ready(child: &mut Child, dir: &TempDir, listen: Listen, port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        let ready = match listen {
            Listen::Tcp => TcpStream::connect(("127.0.0.1", port)).is_ok(),
            Listen::Unix => UnixStream::connect(dir.path("tpm.sock")).is_ok(),
        };
        if ready {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Runs `ra-agent` like `common::run`, with the TPM variables of the test process
/// removed so that only `env` sets them, and `stdin` as standard input.
pub fn run_agent(
    args: &[String],
    credentials: &Path,
    env: &[(&str, &str)],
    stdin: &[u8],
) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ra-agent"));
    command
        .args(args)
        .env("AWS_SHARED_CREDENTIALS_FILE", credentials)
        .env_remove("AWS_CA_BUNDLE")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("TPM_DEVICE")
        .env_remove("RA_AGENT_TPM_KEY_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}
