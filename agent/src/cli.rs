//! Command-line parsing. Subcommands and flags follow AWS's `aws_signing_helper` so the
//! binaries can be swapped; `--flag value` and `--flag=value` both work.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::error::Error;

/// The subcommand to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Print one `credential_process` JSON object.
    CredentialProcess,
    /// Write the shared-credentials file, once or in a refresh loop.
    Update,
    /// Sign standard input with the key and print the signature.
    SignString,
    /// Print facts about the certificate.
    ReadCertificateData,
    /// Print what the running daemon last did.
    Status,
    /// Refresh in the background and serve credentials to local SDKs.
    Serve,
    /// Print the version.
    Version,
    /// Print usage.
    Help,
}

/// Output format of `sign-string`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignFormat {
    Text,
    Json,
    Binary,
}

/// Everything the command line sets.
#[derive(Debug, Clone)]
pub struct Options {
    pub command: Command,
    pub certificate: Option<String>,
    pub private_key: Option<String>,
    pub intermediates: Option<PathBuf>,
    pub trust_anchor_arn: Option<String>,
    pub profile_arn: Option<String>,
    pub role_arn: Option<String>,
    pub session_duration: u32,
    pub role_session_name: Option<String>,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub ca_bundle: Option<PathBuf>,
    pub pkcs11_lib: Option<PathBuf>,
    pub reuse_pin: bool,
    pub no_verify_ssl: bool,
    pub debug: bool,
    pub profile: String,
    pub once: bool,
    pub json_file: Option<PathBuf>,
    pub format: SignFormat,
    pub refresh_margin: Option<String>,
    pub cert_warning_days: Option<u32>,
    pub status_file: Option<PathBuf>,
    pub json: bool,
    pub mode: Option<String>,
    pub group: Option<String>,
    pub cache_file: Option<PathBuf>,
    pub request_timeout: Option<u64>,
    pub outputs: Vec<ConfigOutput>,
    pub port: u16,
    pub bind: Option<String>,
    pub hop_limit: u8,
    pub ecs_token_file: Option<PathBuf>,
    pub tpm_device: Option<String>,
    pub tpm_key_password: Option<Secret>,
    pub tpm_key_password_file: Option<PathBuf>,
    pub no_tpm_key_password: bool,
    pub tpm_parent_password_file: Option<PathBuf>,
    pub tpm_hierarchy_password_file: Option<PathBuf>,
}

/// A secret from the command line or configuration, zeroized on drop and redacted from
/// `Debug`.
#[derive(Clone)]
pub struct Secret(pub zeroize::Zeroizing<String>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// One output file named in the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigOutput {
    /// `credentials` (shared-credentials file) or `json` (`credential_process` JSON).
    #[serde(rename = "type")]
    pub kind: String,
    pub path: PathBuf,
    pub profile: Option<String>,
    pub mode: Option<String>,
    pub group: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            command: Command::Help,
            certificate: None,
            private_key: None,
            intermediates: None,
            trust_anchor_arn: None,
            profile_arn: None,
            role_arn: None,
            session_duration: 3600,
            role_session_name: None,
            region: None,
            endpoint: None,
            ca_bundle: None,
            pkcs11_lib: None,
            reuse_pin: false,
            no_verify_ssl: false,
            debug: false,
            profile: "default".into(),
            once: false,
            json_file: None,
            format: SignFormat::Text,
            refresh_margin: None,
            cert_warning_days: None,
            status_file: None,
            json: false,
            mode: None,
            group: None,
            cache_file: None,
            request_timeout: None,
            outputs: Vec::new(),
            port: 9911,
            bind: None,
            hop_limit: 1,
            ecs_token_file: None,
            tpm_device: None,
            tpm_key_password: None,
            tpm_key_password_file: None,
            no_tpm_key_password: false,
            tpm_parent_password_file: None,
            tpm_hierarchy_password_file: None,
        }
    }
}

pub const USAGE: &str = "\
Usage: ra-agent COMMAND [OPTIONS]

Gets temporary AWS credentials from IAM Roles Anywhere with an X.509 certificate whose
private key stays in a PKCS#11 token, a TPM or a file.

Commands:
  credential-process     print one credential_process JSON object on stdout
  update                 write the shared credentials file and keep it fresh
  sign-string            sign standard input and print the signature
  read-certificate-data  print facts about the certificate
  serve                  refresh in the background and serve credentials to local SDKs
                         (IMDSv2 and ECS container-credentials compatible)
  status                 print what the running agent last did (never touches the key)
  version                print the version

Identity:
  --certificate FILE|URI      end-entity certificate: PEM/DER file or pkcs11: URI
  --private-key FILE|URI      private key: PEM file or pkcs11: URI
  --intermediates FILE        PEM file of intermediate CA certificates
  --trust-anchor-arn ARN      trust anchor; its region is the default region
  --profile-arn ARN           Roles Anywhere profile
  --role-arn ARN              IAM role to assume
  --session-duration SECONDS  900 to 43200 (default 3600)
  --role-session-name NAME    session name shown in CloudTrail
  --region REGION             override the region taken from the trust anchor
  --endpoint URL              override https://rolesanywhere.REGION.amazonaws.com

Connection:
  --ca-bundle FILE            extra trusted CA certificates (also AWS_CA_BUNDLE)
  --no-verify-ssl             do not verify the server certificate (testing only)
  --with-proxy                accepted for compatibility; HTTPS_PROXY is always honoured

PKCS#11:
  --pkcs11-lib FILE           PKCS#11 module (default: the p11-kit proxy)
  --reuse-pin                 log in again with the same PIN for keys that require it
                              before every signature (CKA_ALWAYS_AUTHENTICATE)
  The PIN comes from the URI's pin-source=FILE (or pin-value) or the environment
  variable RA_AGENT_PKCS11_PIN; it is never prompted for.

TPM 2.0:
  --tpm-device ADDRESS        /dev/tpmrm0 (default; also TPM_DEVICE), /dev/tpm0,
                              unix:/PATH, swtpm:host=H,port=P, mssim:host=H,port=P
  --private-key handle:0x81000101 or a TSS2 PRIVATE KEY file selects the TPM
  --tpm-key-password-file F   key password from a file (or RA_AGENT_TPM_KEY_PASSWORD)
  --tpm-key-password PASS     key password on the command line (visible in ps; avoid)
  --no-tpm-key-password       the key has no password
  --tpm-parent-password-file F     password of the persistent parent key
  --tpm-hierarchy-password-file F  password of the owner/endorsement hierarchy

update and serve:
  --config FILE               JSON configuration; command-line flags override it
  --profile NAME              profile in the credentials file (default \"default\")
  --once                      write once and exit instead of refreshing before expiry
  --json-file FILE            also write credential_process JSON to FILE
  --mode OCTAL                mode of written files (default 0600; never world bits)
  --group NAME|GID            group of written files, for example the apps' group
  --refresh-margin S|P%       refresh this long before expiry (default: the larger of
                              300 seconds and 10% of the session)
  --cert-warning-days DAYS    warn this long before the certificate expires (default 30)
  --status-file FILE          where the daemon records its state (default: beside the
                              credentials file, or RA_AGENT_STATUS_FILE)
  --request-timeout SECONDS   limit for one CreateSession request (default 30)

serve:
  --port PORT                 port on 127.0.0.1 (default 9911)
  --bind ADDR:PORT            address to listen on instead, IPv6 in brackets
  --hop-limit N               IP TTL of responses (default 1: they cannot leave the host)
  --ecs-token-file FILE       enable the ECS endpoint; its token is written here (0600)

credential-process:
  --cache-file FILE           answer from this JSON file (a running `update --json-file`
                              keeps it fresh) while it is valid; sign only when it is not

status:
  --json                      print the status as JSON

sign-string:
  --format text|json|bin      output format (default text: lowercase hex)
  --digest SHA256             the only digest Roles Anywhere uses

  --debug                     log details at debug level (never secrets)
  -h, --help                  print this help
";

/// Parses the arguments after the program name. A `--config FILE` is read first, so
/// that flags given on the command line override it.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Options, Error> {
    use lexopt::prelude::*;

    let args: Vec<OsString> = args.into_iter().collect();
    let mut options = Options::default();
    if let Some(config) = config_path(&args) {
        crate::config::apply(&config, &mut options)?;
    }
    let mut parser = lexopt::Parser::from_args(args);
    let mut command: Option<Command> = None;
    while let Some(arg) = parser.next().map_err(usage_error)? {
        match arg {
            Value(value) if command.is_none() => {
                let name = value.to_string_lossy().into_owned();
                command = Some(parse_command(&name)?);
            }
            Value(value) => {
                return Err(Error::Usage(format!(
                    "unexpected argument {:?}; see ra-agent --help",
                    value.to_string_lossy()
                )));
            }
            Short('h') | Long("help") => command = Some(Command::Help),
            Long("version") => command = Some(Command::Version),
            Long("certificate") => options.certificate = Some(string(&mut parser, "certificate")?),
            Long("private-key") => options.private_key = Some(string(&mut parser, "private-key")?),
            Long("intermediates") => options.intermediates = Some(path(&mut parser)?),
            Long("trust-anchor-arn") => {
                options.trust_anchor_arn = Some(string(&mut parser, "trust-anchor-arn")?)
            }
            Long("profile-arn") => options.profile_arn = Some(string(&mut parser, "profile-arn")?),
            Long("role-arn") => options.role_arn = Some(string(&mut parser, "role-arn")?),
            Long("session-duration") => {
                let text = string(&mut parser, "session-duration")?;
                options.session_duration = text.parse().map_err(|_| {
                    Error::Usage(format!(
                        "invalid --session-duration {text:?}: expected whole seconds, 900 to 43200"
                    ))
                })?;
            }
            Long("role-session-name") => {
                options.role_session_name = Some(string(&mut parser, "role-session-name")?)
            }
            Long("region") => options.region = Some(string(&mut parser, "region")?),
            Long("endpoint") => options.endpoint = Some(string(&mut parser, "endpoint")?),
            Long("ca-bundle") => options.ca_bundle = Some(path(&mut parser)?),
            Long("pkcs11-lib") => options.pkcs11_lib = Some(path(&mut parser)?),
            Long("reuse-pin") => options.reuse_pin = true,
            Long("no-verify-ssl") => options.no_verify_ssl = true,
            Long("with-proxy") => {}
            Long("debug") => options.debug = true,
            Long("profile") => options.profile = string(&mut parser, "profile")?,
            Long("once") => options.once = true,
            Long("json-file") => options.json_file = Some(path(&mut parser)?),
            Long("config") => {
                let _ = path(&mut parser)?; // read before parsing, see `parse`
            }
            Long("refresh-margin") => {
                options.refresh_margin = Some(string(&mut parser, "refresh-margin")?)
            }
            Long("cert-warning-days") => {
                options.cert_warning_days = Some(number(&mut parser, "cert-warning-days")?)
            }
            Long("status-file") => options.status_file = Some(path(&mut parser)?),
            Long("json") => options.json = true,
            Long("mode") => options.mode = Some(string(&mut parser, "mode")?),
            Long("group") => options.group = Some(string(&mut parser, "group")?),
            Long("cache-file") => options.cache_file = Some(path(&mut parser)?),
            Long("request-timeout") => {
                options.request_timeout = Some(number(&mut parser, "request-timeout")?)
            }
            Long("port") => options.port = number(&mut parser, "port")?,
            Long("bind") => options.bind = Some(string(&mut parser, "bind")?),
            Long("hop-limit") => options.hop_limit = number(&mut parser, "hop-limit")?,
            Long("ecs-token-file") => options.ecs_token_file = Some(path(&mut parser)?),
            Long("tpm-device") => options.tpm_device = Some(string(&mut parser, "tpm-device")?),
            Long("tpm-key-password") => {
                let password = string(&mut parser, "tpm-key-password")?;
                log::warn!(
                    "--tpm-key-password puts the password where every user can read it (ps); prefer --tpm-key-password-file"
                );
                options.tpm_key_password = Some(Secret(zeroize::Zeroizing::new(password)));
            }
            Long("tpm-key-password-file") => {
                options.tpm_key_password_file = Some(path(&mut parser)?)
            }
            Long("no-tpm-key-password") => options.no_tpm_key_password = true,
            Long("tpm-parent-password-file") => {
                options.tpm_parent_password_file = Some(path(&mut parser)?)
            }
            Long("tpm-hierarchy-password-file") => {
                options.tpm_hierarchy_password_file = Some(path(&mut parser)?)
            }
            Long("format") => {
                let text = string(&mut parser, "format")?;
                options.format = match text.as_str() {
                    "text" => SignFormat::Text,
                    "json" => SignFormat::Json,
                    "bin" => SignFormat::Binary,
                    _ => {
                        return Err(Error::Usage(format!(
                            "invalid --format {text:?}: expected text, json or bin"
                        )));
                    }
                };
            }
            Long("digest") => {
                let text = string(&mut parser, "digest")?;
                if !text.eq_ignore_ascii_case("sha256") {
                    return Err(Error::Usage(format!(
                        "unsupported --digest {text:?}: Roles Anywhere signs with SHA256 only"
                    )));
                }
            }
            Long(
                name @ ("cert-selector" | "system-store-name" | "use-latest-expiring-certificate"),
            ) => {
                return Err(Error::Usage(format!(
                    "--{name} selects from the Windows or macOS certificate store, which this \
                     agent does not support; use --certificate with a file or pkcs11: URI"
                )));
            }
            _ => return Err(usage_error(arg.unexpected())),
        }
    }
    options.command = command.unwrap_or(Command::Help);
    Ok(options)
}

/// Finds `--config FILE` or `--config=FILE` before full parsing.
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let text = arg.to_string_lossy();
        if text == "--config" {
            return iter.next().map(PathBuf::from);
        }
        if let Some(value) = text.strip_prefix("--config=") {
            return Some(PathBuf::from(value));
        }
    }
    None
}

fn parse_command(name: &str) -> Result<Command, Error> {
    Ok(match name {
        "credential-process" => Command::CredentialProcess,
        "update" => Command::Update,
        "sign-string" => Command::SignString,
        "read-certificate-data" => Command::ReadCertificateData,
        "version" => Command::Version,
        "status" => Command::Status,
        "serve" => Command::Serve,
        "help" => Command::Help,
        _ => {
            return Err(Error::Usage(format!(
                "unknown command {name:?}; see ra-agent --help"
            )));
        }
    })
}

/// Reads an option's value; an empty value is an error naming the option, so that an unset
/// shell variable never turns into a guessed identity.
fn string(parser: &mut lexopt::Parser, option: &str) -> Result<String, Error> {
    let value = parser.value().map_err(usage_error)?;
    let text = value.into_string().map_err(|v| {
        Error::Usage(format!(
            "--{option} {:?} is not valid UTF-8",
            v.to_string_lossy()
        ))
    })?;
    if text.trim().is_empty() {
        return Err(Error::Usage(format!(
            "--{option} is empty; give it a value"
        )));
    }
    Ok(text)
}

fn number<T: std::str::FromStr>(parser: &mut lexopt::Parser, option: &str) -> Result<T, Error> {
    let text = string(parser, option)?;
    text.parse().map_err(|_| {
        Error::Usage(format!(
            "invalid --{option} {text:?}: expected a whole number"
        ))
    })
}

fn path(parser: &mut lexopt::Parser) -> Result<PathBuf, Error> {
    let value = parser.value().map_err(usage_error)?;
    if value.is_empty() {
        return Err(Error::Usage(
            "a path option is empty; give it a value".into(),
        ));
    }
    Ok(PathBuf::from(value))
}

fn usage_error(e: lexopt::Error) -> Error {
    Error::Usage(format!("{e}; see ra-agent --help"))
}

/// Returns the value of a required option or an error naming it.
pub fn required<'a>(value: &'a Option<String>, option: &str) -> Result<&'a str, Error> {
    value.as_deref().ok_or_else(|| {
        Error::Usage(format!(
            "missing --{option}; it is required for this command"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_strs(args: &[&str]) -> Result<Options, Error> {
        parse(args.iter().map(OsString::from))
    }

    #[test]
    fn parse_reads_go_helper_flags() {
        let o = parse_strs(&[
            "credential-process",
            "--certificate",
            "c.pem",
            "--private-key=k.pem",
            "--session-duration",
            "900",
            "--with-proxy",
        ])
        .unwrap();
        assert_eq!(o.command, Command::CredentialProcess);
        assert_eq!(o.certificate.as_deref(), Some("c.pem"));
        assert_eq!(o.private_key.as_deref(), Some("k.pem"));
        assert_eq!(o.session_duration, 900);
    }

    #[test]
    fn parse_rejects_empty_identity_option() {
        let err = parse_strs(&["update", "--role-arn", ""]).unwrap_err();
        assert!(err.to_string().contains("--role-arn is empty"), "{err}");
    }

    #[test]
    fn parse_rejects_unknown_flag_and_command() {
        assert!(parse_strs(&["update", "--bogus"]).is_err());
        assert!(parse_strs(&["frobnicate"]).is_err());
    }
}
