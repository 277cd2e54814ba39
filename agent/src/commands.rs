//! The subcommands, called by `main` after parsing.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::atomic::{self, FileMode};
use crate::cli::{Options, SignFormat};
use crate::client::Client;
use crate::credentials::{Credentials, format_expiration};
use crate::error::Error;
use crate::shared_file;
use crate::signers;

/// Refresh when less than this share of the session lifetime is left, and no later than
/// `MIN_MARGIN` before expiry.
const MARGIN_PERCENT: i64 = 10;
const MIN_MARGIN: i64 = 5 * 60;
/// Wait after a failed refresh in the `update` loop.
const FAILURE_WAIT: Duration = Duration::from_secs(60);

/// `credential-process`: print one JSON object on stdout.
pub fn credential_process(options: &Options) -> Result<(), Error> {
    let client = Client::from_options(options)?;
    let credentials = client.fetch()?;
    let json = credentials.process_json();
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(json.as_bytes())
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush())
        .map_err(|source| Error::Output {
            path: "standard output".into(),
            source,
        })
}

/// `update`: write the shared-credentials file (and the JSON file), then, unless `--once`,
/// refresh before expiry forever.
pub fn update(options: &Options) -> Result<(), Error> {
    let client = Client::from_options(options)?;
    let target = credentials_path()?;
    loop {
        let credentials = match client.fetch() {
            Ok(c) => c,
            Err(e) if options.once => return Err(e),
            Err(e) if matches!(e, Error::Usage(_)) => return Err(e),
            Err(e) => {
                log::error!(
                    "refresh failed: {}; the credentials file is unchanged; next try in {}s",
                    crate::error::report(&e),
                    FAILURE_WAIT.as_secs()
                );
                std::thread::sleep(FAILURE_WAIT);
                continue;
            }
        };
        write_outputs(
            &target,
            &options.profile,
            options.json_file.as_ref(),
            &credentials,
        )?;
        log::info!(
            "wrote profile {} to {}, expiring {}",
            options.profile,
            target.display(),
            format_expiration(credentials.expiration)
        );
        if options.once {
            return Ok(());
        }
        let wait = refresh_wait(
            &credentials,
            client.request.duration_seconds,
            OffsetDateTime::now_utc(),
        );
        log::info!("next refresh in {}s", wait.as_secs());
        std::thread::sleep(wait);
    }
}

/// Returns how long to wait before refreshing `credentials`.
pub fn refresh_wait(credentials: &Credentials, duration: u32, now: OffsetDateTime) -> Duration {
    let margin = (i64::from(duration) * MARGIN_PERCENT / 100).max(MIN_MARGIN);
    let wait = credentials.seconds_left(now) - margin;
    // Never a busy loop, even when the service returns an expiration in the past.
    Duration::from_secs(wait.max(60) as u64)
}

/// Writes the shared-credentials file and, when asked, the JSON file, each atomically.
pub fn write_outputs(
    target: &std::path::Path,
    profile: &str,
    json_file: Option<&PathBuf>,
    credentials: &Credentials,
) -> Result<(), Error> {
    let existing = match std::fs::read(target) {
        Ok(bytes) => Zeroizing::new(String::from_utf8(bytes).map_err(|_| {
            Error::Usage(format!(
                "{} is not UTF-8 text; fix or move it, it is left unchanged",
                target.display()
            ))
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Zeroizing::new(String::new()),
        Err(source) => {
            return Err(Error::Output {
                path: target.display().to_string(),
                source,
            });
        }
    };
    let merged = Zeroizing::new(shared_file::merge(&existing, profile, credentials));
    if let Some(path) = json_file {
        let mut json = credentials.process_json();
        json.push('\n');
        atomic::write(path, json.as_bytes(), FileMode::default())?;
    }
    atomic::write(target, merged.as_bytes(), FileMode::default())
}

/// Returns `AWS_SHARED_CREDENTIALS_FILE`, or `~/.aws/credentials`.
pub fn credentials_path() -> Result<PathBuf, Error> {
    if let Some(path) = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            Error::Usage(
                "HOME is not set; set AWS_SHARED_CREDENTIALS_FILE to the credentials file path"
                    .into(),
            )
        })?;
    Ok(PathBuf::from(home).join(".aws").join("credentials"))
}

/// `sign-string`: sign standard input with the key and print the signature.
pub fn sign_string(options: &Options) -> Result<(), Error> {
    let loaded = signers::open(options)?;
    let mut message = Vec::new();
    std::io::stdin()
        .read_to_end(&mut message)
        .map_err(|e| Error::Usage(format!("cannot read standard input: {e}")))?;
    let signature = loaded.signer.sign(&message)?;
    let mut stdout = std::io::stdout().lock();
    let written = match options.format {
        SignFormat::Text => writeln!(stdout, "{}", crate::sigv4::hex(&signature)),
        SignFormat::Json => writeln!(
            stdout,
            "{}",
            serde_json::json!({
                "algorithm": loaded.signer.algorithm().aws_name(),
                "signature": base64::engine::general_purpose::STANDARD.encode(&signature),
            })
        ),
        SignFormat::Binary => stdout.write_all(&signature),
    };
    written.map_err(|source| Error::Output {
        path: "standard output".into(),
        source,
    })
}

/// `read-certificate-data`: print facts about the certificate as JSON.
pub fn read_certificate_data(options: &Options) -> Result<(), Error> {
    let loaded = signers::open(options)?;
    let cert = &loaded.certificate;
    let time = |t: i64| {
        OffsetDateTime::from_unix_timestamp(t)
            .map(format_expiration)
            .unwrap_or_default()
    };
    let chain: Vec<String> = loaded
        .signer
        .chain()
        .iter()
        .filter_map(|der| ra_signer::Certificate::from_der(der.clone(), "chain").ok())
        .map(|c| c.subject().to_owned())
        .collect();
    let data = serde_json::json!({
        "subject": cert.subject(),
        "issuer": cert.issuer(),
        "serialNumber": cert.serial_decimal(),
        "notBefore": time(cert.not_before()),
        "notAfter": time(cert.not_after()),
        "keyType": format!("{:?}", cert.key_kind()),
        "algorithm": loaded.signer.algorithm().aws_name(),
        "chain": chain,
    });
    let text = serde_json::to_string_pretty(&data).unwrap_or_default();
    println!("{text}");
    Ok(())
}
