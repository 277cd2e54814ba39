//! Atomic file replacement: readers see the old file or the new one, never a mix, and a
//! failure leaves the old file as it was.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use crate::error::Error;

/// Access settings for written files.
#[derive(Debug, Clone, Copy)]
pub struct FileMode {
    /// Permission bits; the world bits are always cleared.
    pub mode: u32,
    /// Group to give the file, for example the group device apps run as.
    pub group: Option<u32>,
}

impl Default for FileMode {
    fn default() -> Self {
        FileMode {
            mode: 0o600,
            group: None,
        }
    }
}

/// Replaces `path` with `contents`: a temporary file in the same directory is written,
/// flushed to disk and renamed over the target, then the directory is flushed. Missing
/// parent directories are created as [`create_dir`] describes.
pub fn write(path: &Path, contents: &[u8], access: FileMode) -> Result<(), Error> {
    let output_error = |source: std::io::Error| Error::Output {
        path: path.display().to_string(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    create_dir(dir, access).map_err(output_error)?;
    let file_name = path
        .file_name()
        .ok_or_else(|| output_error(std::io::Error::other("the path names no file")))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(".tmp.{}", std::process::id()));
    let temp = dir.join(temp_name);

    let result = write_and_rename(&temp, path, dir, contents, access);
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(output_error)
}

/// Creates `dir` and its missing parents when absent: mode 0700, or 0750 with the group
/// when `access` names one, so the group's apps can reach the files inside. An existing
/// directory is left as it is.
pub fn create_dir(dir: &Path, access: FileMode) -> std::io::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    let mode = if access.group.is_some() { 0o750 } else { 0o700 };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)?;
    if let Some(gid) = access.group {
        std::os::unix::fs::chown(dir, None, Some(gid))?;
        // The create mode is filtered by the umask; set the exact bits.
        fs::set_permissions(dir, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

fn write_and_rename(
    temp: &Path,
    path: &Path,
    dir: &Path,
    contents: &[u8],
    access: FileMode,
) -> std::io::Result<()> {
    let mode = access.mode & 0o770;
    let _ = fs::remove_file(temp); // a leftover of a crashed run with the same pid
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(temp)?;
    if let Some(gid) = access.group {
        std::os::unix::fs::fchown(&file, None, Some(gid))?;
    }
    // The create mode is filtered by the umask; set the exact bits explicitly.
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    fs::rename(temp, path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    #[test]
    fn write_creates_private_file_and_dir() {
        let base = std::env::temp_dir().join(format!("ra-atomic-{}", std::process::id()));
        let path = base.join("sub/credentials");
        write(&path, b"one", FileMode::default()).unwrap();
        write(&path, b"two", FileMode::default()).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(base.join("sub")).unwrap().mode() & 0o777,
            0o700
        );
        let leftovers = fs::read_dir(base.join("sub")).unwrap().count();
        assert_eq!(leftovers, 1, "temporary file left behind");
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn write_never_sets_world_bits() {
        let base = std::env::temp_dir().join(format!("ra-atomic-w-{}", std::process::id()));
        let path = base.join("creds");
        write(
            &path,
            b"x",
            FileMode {
                mode: 0o666,
                group: None,
            },
        )
        .unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o007, 0);
        fs::remove_dir_all(&base).unwrap();
    }
}
