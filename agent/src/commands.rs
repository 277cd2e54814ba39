//! The subcommands, called by `main` after parsing.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::atomic::FileMode;
use crate::cli::{Options, SignFormat};
use crate::client::Client;
use crate::credentials::{format_expiration, parse_expiration};
use crate::daemon::Refresher;
use crate::daemon::clock::Clock;
use crate::daemon::notify::Notifier;
use crate::daemon::policy::{Margin, Settings};
use crate::daemon::status::{self, Status};
use crate::error::Error;
use crate::outputs::{Format, Output};
use crate::signers;
use crate::store::CredentialStore;

/// `credential-process`: print one JSON object on stdout. With `--cache-file`, respond
/// from that file while its credentials have more than the refresh margin left.
pub fn credential_process(options: &Options) -> Result<(), Error> {
    if let Some(path) = &options.cache_file {
        if let Some(json) = cached_json(path, OffsetDateTime::now_utc()) {
            log::debug!("returning cached credentials from {}", path.display());
            return print_stdout(&json);
        }
        log::debug!(
            "{} is missing or stale; signing a new request",
            path.display()
        );
    }
    let client = Client::from_options(options)?;
    let credentials = client.fetch()?;
    print_stdout(&credentials.process_json())
}

/// Returns the cached `credential_process` JSON in `path` if it is complete and has more
/// than five minutes left at `now`.
pub fn cached_json(path: &Path, now: OffsetDateTime) -> Option<Zeroizing<String>> {
    let text = Zeroizing::new(std::fs::read_to_string(path).ok()?);
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    let complete = value["Version"] == 1
        && ["AccessKeyId", "SecretAccessKey", "SessionToken"]
            .iter()
            .all(|k| value[*k].as_str().is_some_and(|v| !v.is_empty()));
    let expiration = parse_expiration(value["Expiration"].as_str()?).ok()?;
    let fresh = (expiration - now).whole_seconds() > 300;
    (complete && fresh).then(|| Zeroizing::new(text.trim_end().to_owned()))
}

fn print_stdout(json: &str) -> Result<(), Error> {
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

/// `update`: write every output once (`--once`), or keep them fresh until stopped.
pub fn update(options: &Options, clock: &dyn Clock) -> Result<(), Error> {
    let outputs = outputs(options, true)?;
    if options.once {
        let client = Client::from_options(options)?;
        let credentials = client.fetch()?;
        crate::outputs::write_all(&outputs, &credentials)?;
        for output in &outputs {
            log::info!(
                "wrote {}, expiring {}",
                output.path.display(),
                format_expiration(credentials.expiration)
            );
        }
        return Ok(());
    }
    let mut refresher = refresher(options, outputs)?;
    refresher.run(clock)
}

/// Builds the refresh loop for `update` and `serve`.
pub fn refresher(options: &Options, outputs: Vec<Output>) -> Result<Refresher<'_>, Error> {
    let mut settings = Settings::default();
    if let Some(margin) = &options.refresh_margin {
        settings.margin = Margin::parse(margin)?;
    }
    if let Some(days) = options.cert_warning_days {
        settings.cert_warning = Duration::from_secs(u64::from(days) * 86400);
    }
    // Fail at start for what cannot work, before the loop turns errors into retries.
    drop(Client::from_options(options)?);
    let status_file = match (&options.status_file, outputs.first()) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(first)) => Some(status::default_path(&first.path)),
        (None, None) => None,
    };
    let mut refresher = Refresher::new(
        settings,
        Box::new(move || Client::from_options(options)),
        outputs,
    )
    .with_notifier(Notifier::from_env());
    if let Some(path) = status_file {
        refresher = refresher.with_status_file(path);
    }
    Ok(refresher)
}

/// Returns the outputs the options name: the configuration file's list, then
/// `--json-file`; `with_default` adds the shared-credentials file when nothing else is
/// named (as `update` does).
pub fn outputs(options: &Options, with_default: bool) -> Result<Vec<Output>, Error> {
    let cli_access = access(options.mode.as_deref(), options.group.as_deref())?;
    let mut outputs = Vec::new();
    for configured in &options.outputs {
        let format = match configured.kind.as_str() {
            "json" => Format::ProcessJson,
            _ => Format::SharedCredentials {
                profile: configured
                    .profile
                    .clone()
                    .unwrap_or_else(|| options.profile.clone()),
            },
        };
        outputs.push(Output {
            path: configured.path.clone(),
            format,
            access: access(
                configured.mode.as_deref().or(options.mode.as_deref()),
                configured.group.as_deref().or(options.group.as_deref()),
            )?,
        });
    }
    let has_credentials_file = outputs
        .iter()
        .any(|o| matches!(o.format, Format::SharedCredentials { .. }));
    if with_default && !has_credentials_file && options.outputs.is_empty() {
        outputs.insert(
            0,
            Output {
                path: credentials_path()?,
                format: Format::SharedCredentials {
                    profile: options.profile.clone(),
                },
                access: cli_access,
            },
        );
    }
    if let Some(path) = &options.json_file {
        outputs.push(Output {
            path: path.clone(),
            format: Format::ProcessJson,
            access: cli_access,
        });
    }
    Ok(outputs)
}

fn access(mode: Option<&str>, group: Option<&str>) -> Result<FileMode, Error> {
    Ok(FileMode {
        mode: mode
            .map(crate::outputs::parse_mode)
            .transpose()?
            .unwrap_or(0o600),
        group: group.map(crate::outputs::resolve_group).transpose()?,
    })
}

/// `status`: print what the daemon wrote, for people or as JSON.
pub fn status(options: &Options) -> Result<(), Error> {
    let path = match &options.status_file {
        Some(path) => path.clone(),
        None => {
            let first = outputs(options, true)?;
            let first = first.first().map(|o| o.path.clone()).unwrap_or_default();
            status::default_path(&first)
        }
    };
    let status = Status::read(&path)?;
    let running = status.is_running();
    if options.json {
        let mut value = serde_json::to_value(&status).unwrap_or_default();
        value["running"] = running.into();
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        print!("{}", status.human());
    }
    if !running {
        return Err(Error::transient(format!(
            "the agent that wrote {} (pid {}) is not running",
            path.display(),
            status.pid
        )));
    }
    Ok(())
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

fn key_type(kind: ra_signer::KeyKind) -> String {
    match kind {
        ra_signer::KeyKind::Rsa { bits } => format!("RSA {bits}"),
        ra_signer::KeyKind::P256 => "EC P-256".into(),
        ra_signer::KeyKind::P384 => "EC P-384".into(),
        other => format!("{other:?}"),
    }
}

/// `read-certificate-data`: print facts about the certificate as JSON.
///
/// Without `--private-key` (and for a certificate file) only the certificate and any
/// certificates after it in the file are read, as `aws_signing_helper` does.
pub fn read_certificate_data(options: &Options) -> Result<(), Error> {
    let certificate = crate::cli::required(&options.certificate, "certificate")?;
    let file_only = options.private_key.is_none() && !certificate.starts_with("pkcs11:");
    let (cert, algorithm, chain_der) = if file_only {
        let mut certs = ra_signer::read_certificates(Path::new(certificate))?;
        let leaf = certs.remove(0);
        let chain = ra_signer::build_chain(&leaf, &certs)
            .into_iter()
            .map(ra_signer::Certificate::into_der)
            .collect::<Vec<_>>();
        let algorithm = leaf.key_kind().algorithm();
        (leaf, algorithm, chain)
    } else {
        let loaded = signers::open(options)?;
        let algorithm = loaded.signer.algorithm();
        let chain = loaded.signer.chain().to_vec();
        (loaded.certificate, algorithm, chain)
    };
    let cert = &cert;
    let time = |t: i64| {
        OffsetDateTime::from_unix_timestamp(t)
            .map(format_expiration)
            .unwrap_or_default()
    };
    let chain: Vec<String> = chain_der
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
        "keyType": key_type(cert.key_kind()),
        "algorithm": algorithm.aws_name(),
        "chain": chain,
    });
    let text = serde_json::to_string_pretty(&data).unwrap_or_default();
    println!("{text}");
    Ok(())
}

/// `serve`: keep credentials fresh (and any named outputs written) and serve them to local SDKs
/// through the IMDSv2- and ECS-compatible endpoints until stopped.
pub fn serve(options: &Options, clock: &dyn Clock) -> Result<(), Error> {
    let role_arn = crate::cli::required(&options.role_arn, "role-arn")?;
    let mut settings = crate::serve::Settings::for_role(role_arn);
    settings.bind = match &options.bind {
        Some(text) => text.parse().map_err(|_| {
            Error::Usage(format!(
                "invalid --bind {text:?}: expected ADDRESS:PORT such as 127.0.0.1:9911 or [::1]:9911"
            ))
        })?,
        None => std::net::SocketAddr::from(([127, 0, 0, 1], options.port)),
    };
    settings.hop_limit = options.hop_limit;
    if let Some(path) = &options.ecs_token_file {
        let token = crate::serve::write_ecs_token_file(path).map_err(|source| Error::Output {
            path: path.display().to_string(),
            source,
        })?;
        settings.ecs_token = Some(token);
    }

    let store = Arc::new(CredentialStore::default());
    let mut refresher =
        refresher(options, outputs(options, false)?)?.with_store(Arc::clone(&store));
    let bind = settings.bind;
    let handle = crate::serve::start(settings, store)
        .map_err(|e| Error::Usage(format!("cannot serve on {bind}: {e}")))?;
    log::info!("serving credentials on http://{}", handle.local_addr());
    let result = refresher.run(clock);
    handle.stop();
    result
}
