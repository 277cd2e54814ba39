//! Output files for credentials: the shared-credentials file and `credential_process` JSON files,
//! each written atomically under an exclusive lock so two agents never interleave.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::atomic::{self, FileMode};
use crate::credentials::Credentials;
use crate::error::Error;
use crate::shared_file;

/// The format of one output file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// The AWS shared-credentials file; only this profile's keys change.
    SharedCredentials { profile: String },
    /// One `credential_process` JSON object.
    ProcessJson,
}

/// One file the agent keeps fresh.
#[derive(Debug, Clone)]
pub struct Output {
    pub path: PathBuf,
    pub format: Format,
    pub access: FileMode,
}

impl Output {
    /// Writes `credentials` to this output, holding its lock for the whole
    /// read-merge-replace.
    pub fn write(&self, credentials: &Credentials) -> Result<(), Error> {
        let _lock = lock(&self.path, self.access)?;
        let contents = match &self.format {
            Format::SharedCredentials { profile } => {
                let existing = read_existing(&self.path)?;
                Zeroizing::new(shared_file::merge(&existing, profile, credentials))
            }
            Format::ProcessJson => {
                let mut json = credentials.process_json();
                json.push('\n');
                json
            }
        };
        atomic::write(&self.path, contents.as_bytes(), self.access)
    }
}

/// Writes every output; stops at the first failure (earlier outputs keep the new
/// credentials, later ones the old, each file whole).
pub fn write_all(outputs: &[Output], credentials: &Credentials) -> Result<(), Error> {
    outputs.iter().try_for_each(|o| o.write(credentials))
}

fn read_existing(path: &Path) -> Result<Zeroizing<String>, Error> {
    match std::fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map(Zeroizing::new).map_err(|_| {
            Error::Usage(format!(
                "{} is not UTF-8 text; fix or move it, it is left unchanged",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Zeroizing::new(String::new())),
        Err(source) => Err(Error::Output {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Takes an exclusive lock on `.NAME.lock` beside `path`, creating the directory (see
/// [`atomic::create_dir`]) and the lock file (0600) when missing. The lock is released when the file closes.
fn lock(path: &Path, access: FileMode) -> Result<File, Error> {
    let output_error = |source: std::io::Error| Error::Output {
        path: path.display().to_string(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    atomic::create_dir(dir, access).map_err(output_error)?;
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(".lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(dir.join(name))
        .map_err(output_error)?;
    file.lock().map_err(output_error)?;
    Ok(file)
}

/// Resolves a group given as a name or a numeric id, reading `/etc/group` for names.
pub fn resolve_group(group: &str) -> Result<u32, Error> {
    if let Ok(gid) = group.parse::<u32>() {
        return Ok(gid);
    }
    let table = std::fs::read_to_string("/etc/group").unwrap_or_default();
    table
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let gid = fields.nth(1)?.parse::<u32>().ok()?;
            (name == group).then_some(gid)
        })
        .next()
        .ok_or_else(|| {
            Error::Usage(format!(
                "unknown group {group:?}: not a number and not in /etc/group"
            ))
        })
}

/// Parses an octal mode such as `0640`. World bits are rejected: credentials are never
/// world-readable.
pub fn parse_mode(text: &str) -> Result<u32, Error> {
    let mode = u32::from_str_radix(text.trim_start_matches("0o"), 8).map_err(|_| {
        Error::Usage(format!(
            "invalid mode {text:?}: expected octal such as 0600 or 0640"
        ))
    })?;
    if mode & 0o007 != 0 || mode & !0o777 != 0 {
        return Err(Error::Usage(format!(
            "invalid mode {text:?}: credentials files must not be accessible to other users \
             (use 0600 or 0640)"
        )));
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_mode_rejects_world_bits() {
        assert_eq!(parse_mode("0640").unwrap(), 0o640);
        assert!(parse_mode("0644").is_err());
        assert!(parse_mode("rw").is_err());
    }

    #[test]
    fn resolve_group_reads_numbers_and_names() {
        assert_eq!(resolve_group("123").unwrap(), 123);
        assert_eq!(resolve_group("root").unwrap(), 0);
        assert!(resolve_group("no-such-group-here").is_err());
    }
}
