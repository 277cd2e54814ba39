//! The status file the daemon keeps and `ra-agent status` reads: no secrets, just what an
//! operator needs to see whether refreshing works.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::atomic::{self, FileMode};
use crate::error::Error;

/// The daemon's last recorded state. Times are `YYYY-MM-DDTHH:MM:SSZ`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub pid: u32,
    pub profile_arn: String,
    pub role_arn: String,
    pub outputs: Vec<String>,
    pub credentials_expiration: Option<String>,
    pub last_refresh: Option<String>,
    pub last_attempt: Option<String>,
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
    pub next_attempt: Option<String>,
    pub certificate_not_after: Option<String>,
}

impl Status {
    /// Writes the status atomically, mode 0640, because it contains no secret.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let mut json = serde_json::to_string_pretty(self).unwrap_or_default();
        json.push('\n');
        let access = FileMode {
            mode: 0o640,
            group: None,
        };
        atomic::write(path, json.as_bytes(), access)
    }

    /// Reads a status file.
    pub fn read(path: &Path) -> Result<Status, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Usage(format!(
                "cannot read status file {}: {e}; is `ra-agent update` running with this \
                 status file?",
                path.display()
            ))
        })?;
        serde_json::from_str(&text)
            .map_err(|e| Error::Usage(format!("status file {} is not valid: {e}", path.display())))
    }

    /// Returns whether the process that wrote the status is still running (Linux
    /// `/proc`). A stopped agent leaves its last status behind.
    pub fn is_running(&self) -> bool {
        self.pid != 0 && Path::new(&format!("/proc/{}", self.pid)).exists()
    }

    /// Renders the status for people.
    pub fn human(&self) -> String {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "never".into());
        let mut text = format!(
            "agent pid:            {}{}\nrole:                 {}\nprofile:              {}\n\
             outputs:              {}\ncredentials expire:   {}\nlast refresh:         {}\n\
             last attempt:         {}\nnext attempt:         {}\ncertificate expires:  {}\n",
            self.pid,
            if self.is_running() {
                " (running)"
            } else {
                " (NOT RUNNING)"
            },
            self.role_arn,
            self.profile_arn,
            self.outputs.join(", "),
            show(&self.credentials_expiration),
            show(&self.last_refresh),
            show(&self.last_attempt),
            show(&self.next_attempt),
            show(&self.certificate_not_after),
        );
        match &self.last_error {
            Some(e) => text.push_str(&format!(
                "last error:           {e} ({} consecutive failures)\n",
                self.consecutive_failures
            )),
            None => text.push_str("last error:           none\n"),
        }
        text
    }
}

/// Returns the default status file: `RA_AGENT_STATUS_FILE`, else `.ra-agent-status.json`
/// beside the first output.
pub fn default_path(first_output: &Path) -> PathBuf {
    if let Some(path) = std::env::var_os("RA_AGENT_STATUS_FILE").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    first_output
        .parent()
        .unwrap_or(Path::new("."))
        .join(".ra-agent-status.json")
}
