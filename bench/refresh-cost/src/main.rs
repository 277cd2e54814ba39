//! Measures the work of one refresh outside the signer (canonical request, string to
//! sign, headers, credentials file merge, JSON, atomic write) next to the signature
//! itself, with a PEM key and with a SoftHSM2 token.
//!
//! Usage: refresh-cost PKI_DIR PIN_FILE SOFTHSM_MODULE OUTPUT_DIR...
//!
//! PKI_DIR is tests/vectors/pki. SOFTHSM2_CONF must name a token made by
//! tests/softhsm/setup-token.sh, whose user PIN is in PIN_FILE. Each OUTPUT_DIR gets a
//! credentials file written atomically, to compare file systems (tmpfs and disk).
//!
//! Prints one line per measurement: `name<TAB>median microseconds<TAB>runs`.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ra_agent::arn::Identity;
use ra_agent::atomic::{self, FileMode};
use ra_agent::credentials::Credentials;
use ra_agent::session::{Endpoint, SessionRequest, sign_request};
use ra_agent::shared_file;
use ra_signer::file::FileSigner;
use ra_signer::{Certificate, Signer};
use ra_signer_pkcs11::{Pkcs11Config, Pkcs11Signer, Pkcs11Uri};
use time::OffsetDateTime;
use zeroize::Zeroizing;

const RUNS: usize = 201;
const TRUST_ANCHOR: &str = "arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/11111111-2222-3333-4444-555555555555";
const PROFILE: &str =
    "arn:aws:rolesanywhere:us-east-1:123456789012:profile/66666666-7777-8888-9999-000000000000";
const ROLE: &str = "arn:aws:iam::123456789012:role/ExampleRole";

type Failure = Box<dyn std::error::Error>;

/// Runs `work` RUNS times and returns the median duration.
fn median(mut work: impl FnMut() -> Result<(), Failure>) -> Result<Duration, Failure> {
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now();
        work()?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok(times[RUNS / 2])
}

fn report(name: &str, duration: Duration) {
    println!("{name}\t{:.1}\t{RUNS}", duration.as_secs_f64() * 1e6);
}

/// Measures `sign_request` as a whole and the signer's `sign` alone on a string to sign
/// of the same length, and reports both and their difference.
fn measure_signer(name: &str, signer: &dyn Signer) -> Result<(), Failure> {
    let certificate = Certificate::from_der(signer.certificate().to_vec(), "certificate")?;
    let identity = Identity::new(TRUST_ANCHOR, PROFILE, ROLE, None)?;
    let request = SessionRequest::new(identity, 3600, None)?;
    let endpoint = Endpoint::parse("https://rolesanywhere.us-east-1.amazonaws.com")?;
    let now = OffsetDateTime::now_utc();
    let sample = sign_request(signer, &certificate, &request, &endpoint, now)?;

    let whole = median(|| {
        sign_request(signer, &certificate, &request, &endpoint, now)?;
        Ok(())
    })?;
    let sign_only = median(|| {
        signer.sign(sample.string_to_sign.as_bytes())?;
        Ok(())
    })?;
    report(&format!("{name}: sign_request"), whole);
    report(&format!("{name}: signer.sign"), sign_only);
    report(
        &format!("{name}: sign_request outside the signer"),
        whole.saturating_sub(sign_only),
    );
    Ok(())
}

fn sample_credentials() -> Credentials {
    Credentials {
        access_key_id: "ASIAEXAMPLEEXAMPLE12".into(),
        secret_access_key: Zeroizing::new("x".repeat(40)),
        // An estimate of a session token's length; real ones vary in size.
        session_token: Zeroizing::new("t".repeat(900)),
        expiration: OffsetDateTime::now_utc() + time::Duration::hours(1),
    }
}

fn measure_outputs(dirs: &[PathBuf]) -> Result<(), Failure> {
    let credentials = sample_credentials();
    let existing = "[other]\naws_access_key_id = A\n\n[default]\nregion = us-east-1\n\
                    aws_access_key_id = OLD\naws_secret_access_key = OLD\n";
    report(
        "credentials file merge",
        median(|| {
            shared_file::merge(existing, "default", &credentials);
            Ok(())
        })?,
    );
    report(
        "credential_process JSON",
        median(|| {
            credentials.process_json();
            Ok(())
        })?,
    );
    let contents = shared_file::merge(existing, "default", &credentials);
    for dir in dirs {
        let path = dir.join("credentials");
        report(
            &format!("atomic write with fsync, {}", describe(dir)),
            median(|| {
                atomic::write(&path, contents.as_bytes(), FileMode::default())?;
                Ok(())
            })?,
        );
    }
    Ok(())
}

/// Names the file system a directory is on and where it is mounted, from
/// /proc/self/mounts.
fn describe(dir: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let _device = fields.next()?;
            let mount_point = fields.next()?;
            let fs_type = fields.next()?;
            dir.starts_with(mount_point)
                .then(|| (mount_point.len(), format!("{fs_type} at {mount_point}")))
        })
        .max()
        .map(|(_, text)| text)
        .unwrap_or_else(|| "unknown file system".into())
}

fn main() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        return Err("usage: refresh-cost PKI_DIR PIN_FILE SOFTHSM_MODULE OUTPUT_DIR...".into());
    }
    let pki = Path::new(&args[0]);
    let pin = Zeroizing::new(std::fs::read_to_string(&args[1])?.trim().to_owned());
    let module = &args[2];
    let output_dirs: Vec<PathBuf> = args[3..].iter().map(PathBuf::from).collect();

    for kind in ["rsa", "ec"] {
        let dir = pki.join(kind);
        let signer = FileSigner::open(
            &dir.join("leaf.pem"),
            &dir.join("leaf.key"),
            Some(&dir.join("chain.pem")),
        )?;
        measure_signer(&format!("{kind} PEM key"), &signer)?;
    }
    for (kind, object) in [("rsa", "rsa-cert"), ("ec", "ec256")] {
        let uri: Pkcs11Uri = format!("pkcs11:token=ra-test;object={object};type=cert").parse()?;
        let config = Pkcs11Config::new(uri)
            .with_module_path(module)
            .with_pin(pin.clone());
        let signer = Pkcs11Signer::open(config)?;
        measure_signer(&format!("{kind} SoftHSM2 key"), &signer)?;
    }
    measure_outputs(&output_dirs)?;
    Ok(())
}
