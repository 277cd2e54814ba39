//! `mock-rolesanywhere`: runs the verifying CreateSession mock until killed.
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use lexopt::prelude::*;
use mock_rolesanywhere::{Config, Server, read_root_der};

const USAGE: &str = "\
Usage: mock-rolesanywhere [OPTIONS]

Serves a verifying IAM Roles Anywhere CreateSession endpoint (POST /sessions) over TLS.
With no options it uses the test PKI in tests/vectors/pki.

Options:
  --listen ADDR:PORT       address to listen on; port 0 picks a free one [127.0.0.1:0]
  --tls-cert PATH          TLS server certificate chain, PEM (needs --tls-key)
  --tls-key PATH           TLS server private key, PEM (needs --tls-cert)
  --trust-anchor ARN=PATH  a trust anchor ARN and its root certificate (PEM or DER);
                           repeat for more; replaces the test PKI anchors
  --region REGION          region the credential scope must name [us-east-1]
  -h, --help               print this help

Prints `listening on https://ADDR:PORT` on stdout, then logs one line per request on
stderr (status and reason, never credentials).";

struct Options {
    listen: SocketAddr,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    trust_anchors: Vec<(String, PathBuf)>,
    region: Option<String>,
}

fn main() -> ExitCode {
    log::set_logger(&STDERR_LOGGER).ok();
    log::set_max_level(log::LevelFilter::Info);

    let options = match parse_args() {
        Ok(Some(options)) => options,
        Ok(None) => {
            // A closed stdout, as with `| head`, is no reason to fail.
            let _ = writeln!(std::io::stdout(), "{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("mock-rolesanywhere: {message}\nRun with --help for usage.");
            return ExitCode::from(2);
        }
    };
    match run(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mock-rolesanywhere: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args() -> Result<Option<Options>, String> {
    let mut options = Options {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls_cert: None,
        tls_key: None,
        trust_anchors: Vec::new(),
        region: None,
    };
    let mut parser = lexopt::Parser::from_env();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Long("listen") => {
                let text = string_value(&mut parser, "--listen")?;
                options.listen = text.parse().map_err(|_| {
                    format!("--listen {text:?} is not an ADDR:PORT such as 127.0.0.1:8443")
                })?;
            }
            Long("tls-cert") => {
                options.tls_cert = Some(string_value(&mut parser, "--tls-cert")?.into())
            }
            Long("tls-key") => {
                options.tls_key = Some(string_value(&mut parser, "--tls-key")?.into())
            }
            Long("trust-anchor") => {
                let text = string_value(&mut parser, "--trust-anchor")?;
                // The ARN contains ':' but never '=', so the first '=' separates the two.
                let (arn, path) = text.split_once('=').ok_or_else(|| {
                    format!("--trust-anchor {text:?} is not ARN=PATH to the root certificate")
                })?;
                options.trust_anchors.push((arn.to_owned(), path.into()));
            }
            Long("region") => options.region = Some(string_value(&mut parser, "--region")?),
            Short('h') | Long("help") => return Ok(None),
            other => return Err(other.unexpected().to_string()),
        }
    }
    Ok(Some(options))
}

fn string_value(parser: &mut lexopt::Parser, flag: &str) -> Result<String, String> {
    parser
        .value()
        .map_err(|e| e.to_string())?
        .string()
        .map_err(|_| format!("{flag} needs a UTF-8 value"))
}

fn run(options: Options) -> Result<(), String> {
    let mut config = Config::test_pki().map_err(|e| format!("cannot load the test PKI: {e}"))?;
    match (&options.tls_cert, &options.tls_key) {
        (Some(cert), Some(key)) => {
            config
                .read_tls_files(cert, key)
                .map_err(|e| e.to_string())?;
            config.tls_ca_pem_path = None;
        }
        (None, None) => {}
        _ => return Err("--tls-cert and --tls-key go together; give both or neither".into()),
    }
    if !options.trust_anchors.is_empty() {
        config.trust_anchors = options
            .trust_anchors
            .iter()
            .map(|(arn, path)| {
                read_root_der(path)
                    .map(|der| (arn.clone(), der))
                    .map_err(|e| format!("--trust-anchor {arn}: {e}"))
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(region) = options.region {
        config.region = region;
    }

    let server = Server::bind(config, options.listen).map_err(|e| e.to_string())?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {}", server.url())
        .and_then(|()| stdout.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))?;
    drop(stdout);

    // The server threads do the work; this thread only keeps the process alive.
    loop {
        std::thread::park();
    }
}

/// Writes log records to stderr, one line each.
struct StderrLogger;

static STDERR_LOGGER: StderrLogger = StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!("mock-rolesanywhere {}: {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}
