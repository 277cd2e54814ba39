//! The optional JSON configuration file (`--config`), for daemon settings and several
//! outputs. Keys are the long flag names in camelCase; flags on the command line win.
//!
//! ```json
//! {
//!   "certificate": "pkcs11:token=device;object=identity;type=cert",
//!   "trustAnchorArn": "arn:aws:rolesanywhere:...", "profileArn": "...", "roleArn": "...",
//!   "outputs": [
//!     {"type": "credentials", "path": "/run/ra-agent/credentials", "mode": "0640", "group": "pos"},
//!     {"type": "json", "path": "/run/ra-agent/credentials.json"}
//!   ]
//! }
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cli::{ConfigOutput, Options};
use crate::error::Error;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct File {
    certificate: Option<String>,
    private_key: Option<String>,
    intermediates: Option<PathBuf>,
    trust_anchor_arn: Option<String>,
    profile_arn: Option<String>,
    role_arn: Option<String>,
    session_duration: Option<u32>,
    role_session_name: Option<String>,
    region: Option<String>,
    endpoint: Option<String>,
    ca_bundle: Option<PathBuf>,
    pkcs11_lib: Option<PathBuf>,
    reuse_pin: Option<bool>,
    tpm_device: Option<String>,
    tpm_key_password_file: Option<PathBuf>,
    no_tpm_key_password: Option<bool>,
    tpm_parent_password_file: Option<PathBuf>,
    tpm_hierarchy_password_file: Option<PathBuf>,
    refresh_margin: Option<serde_json::Value>,
    cert_warning_days: Option<u32>,
    status_file: Option<PathBuf>,
    request_timeout: Option<u64>,
    outputs: Option<Vec<ConfigOutput>>,
    port: Option<u16>,
    bind: Option<String>,
    hop_limit: Option<u8>,
    ecs_token_file: Option<PathBuf>,
    debug: Option<bool>,
    profile: Option<String>,
    json_file: Option<PathBuf>,
    mode: Option<String>,
    group: Option<String>,
    no_verify_ssl: Option<bool>,
}

/// Reads `path` and sets the options it names.
pub fn apply(path: &Path, options: &mut Options) -> Result<(), Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Usage(format!(
            "cannot read configuration file {}: {e}",
            path.display()
        ))
    })?;
    let file: File = serde_json::from_str(&text).map_err(|e| {
        Error::Usage(format!(
            "invalid configuration file {}: {e}",
            path.display()
        ))
    })?;

    macro_rules! take {
        ($($field:ident),*) => { $( if file.$field.is_some() { options.$field = file.$field; } )* };
    }
    take!(
        certificate,
        private_key,
        intermediates,
        trust_anchor_arn,
        profile_arn,
        role_arn,
        role_session_name,
        region,
        endpoint,
        ca_bundle,
        pkcs11_lib,
        tpm_device,
        tpm_key_password_file,
        tpm_parent_password_file,
        tpm_hierarchy_password_file,
        cert_warning_days,
        status_file,
        request_timeout,
        bind,
        ecs_token_file,
        json_file,
        mode,
        group
    );
    if let Some(v) = file.profile {
        options.profile = v;
    }
    if let Some(v) = file.no_verify_ssl {
        options.no_verify_ssl = v;
    }
    if let Some(v) = file.session_duration {
        options.session_duration = v;
    }
    if let Some(v) = file.reuse_pin {
        options.reuse_pin = v;
    }
    if let Some(v) = file.no_tpm_key_password {
        options.no_tpm_key_password = v;
    }
    if let Some(v) = file.port {
        options.port = v;
    }
    if let Some(v) = file.hop_limit {
        options.hop_limit = v;
    }
    if let Some(v) = file.debug {
        options.debug = v;
    }
    if let Some(margin) = file.refresh_margin {
        options.refresh_margin = Some(match margin {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        });
    }
    if let Some(outputs) = file.outputs {
        for output in &outputs {
            if output.kind != "credentials" && output.kind != "json" {
                return Err(Error::Usage(format!(
                    "invalid output type {:?} in {}: use \"credentials\" or \"json\"",
                    output.kind,
                    path.display()
                )));
            }
        }
        options.outputs = outputs;
    }
    Ok(())
}
