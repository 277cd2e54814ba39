//! TPM addresses in the style of tpm2-tss TCTI strings, as `--tpm-device` takes them.

use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::net::TcpStream;
use std::os::unix::fs::FileTypeExt as _;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::TpmError;
use crate::transport::{MssimStream, RawStream, Transport};

/// The device used when `--tpm-device` is not given: the kernel resource manager, which
/// flushes whatever a process leaves loaded when it closes the device.
pub const DEFAULT_DEVICE: &str = "/dev/tpmrm0";

/// The TCP port of swtpm and the Microsoft simulator when a TCTI string names none.
pub const DEFAULT_SIMULATOR_PORT: u16 = 2321;

/// How long a socket read or write may block before the command counts as failed.
/// Key creation on a slow TPM takes a few seconds; signing takes well under one.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(60);

/// A source of fresh TPM connections. The signer connects once per signature, so it
/// keeps no simulator socket or `/dev/tpm0` file open between requests.
pub trait Connect: Send + Sync + fmt::Debug {
    /// Opens a connection.
    fn connect(&self) -> Result<Box<dyn Transport>, TpmError>;

    /// Returns the address for messages.
    fn describe(&self) -> String;
}

/// Where the TPM is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TpmAddress {
    /// A character device such as `/dev/tpmrm0` or `/dev/tpm0`. When the path turns out to
    /// be a Unix socket, it is used as one.
    Device(PathBuf),
    /// A Unix socket carrying bare TPM commands (swtpm `--server type=unixio`).
    Unix(PathBuf),
    /// A TCP socket carrying bare TPM commands (swtpm `--server type=tcp`, as the
    /// tpm2-tss `swtpm` TCTI speaks to it).
    SwtpmTcp { host: String, port: u16 },
    /// A TCP socket speaking the Microsoft simulator protocol (the tpm2-tss `mssim`
    /// TCTI). swtpm accepts this framing too.
    Mssim { host: String, port: u16 },
}

impl Default for TpmAddress {
    fn default() -> Self {
        TpmAddress::Device(PathBuf::from(DEFAULT_DEVICE))
    }
}

impl fmt::Display for TpmAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TpmAddress::Device(path) => write!(f, "device:{}", path.display()),
            TpmAddress::Unix(path) => write!(f, "unix:{}", path.display()),
            TpmAddress::SwtpmTcp { host, port } => write!(f, "swtpm:host={host},port={port}"),
            TpmAddress::Mssim { host, port } => write!(f, "mssim:host={host},port={port}"),
        }
    }
}

impl std::str::FromStr for TpmAddress {
    type Err = TpmError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        TpmAddress::parse(value)
    }
}

impl TpmAddress {
    /// Parses a TCTI-like string:
    ///
    /// | string | meaning |
    /// | --- | --- |
    /// | empty, `device`, `device:` | `/dev/tpmrm0` |
    /// | `device:/dev/tpm0`, `/dev/tpm0` | that character device |
    /// | `unix:/run/swtpm.sock`, `swtpm:path=/run/swtpm.sock` | swtpm Unix socket |
    /// | `swtpm:host=127.0.0.1,port=2321`, `swtpm:` | swtpm TCP data port, bare commands |
    /// | `mssim:host=127.0.0.1,port=2321`, `mssim:` | Microsoft simulator framing |
    ///
    /// Host and port default to `localhost` and 2321.
    pub fn parse(value: &str) -> Result<Self, TpmError> {
        let invalid = |reason: &str| TpmError::InvalidAddress {
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = value.trim();
        if trimmed.is_empty() || trimmed == "device" {
            return Ok(TpmAddress::default());
        }
        if trimmed.starts_with('/') {
            return Ok(TpmAddress::Device(PathBuf::from(trimmed)));
        }
        let Some((kind, config)) = trimmed.split_once(':') else {
            return Err(invalid("expected a path or KIND:CONFIG"));
        };
        match kind {
            "device" => {
                let path = config.strip_prefix("path=").unwrap_or(config);
                if path.is_empty() {
                    return Ok(TpmAddress::default());
                }
                absolute(path).map(TpmAddress::Device).map_err(invalid)
            }
            "unix" => {
                let path = config.strip_prefix("path=").unwrap_or(config);
                absolute(path).map(TpmAddress::Unix).map_err(invalid)
            }
            "swtpm" | "mssim" => {
                let options = parse_options(config).map_err(|r| invalid(&r))?;
                let mssim = kind == "mssim";
                if let Some(path) = options.path {
                    if mssim {
                        return Err(invalid(
                            "mssim over a Unix socket is not supported; use unix:PATH for swtpm",
                        ));
                    }
                    if options.host.is_some() || options.port.is_some() {
                        return Err(invalid("give either path= or host=/port=, not both"));
                    }
                    return absolute(&path).map(TpmAddress::Unix).map_err(invalid);
                }
                let host = options.host.unwrap_or_else(|| "localhost".to_owned());
                let port = options.port.unwrap_or(DEFAULT_SIMULATOR_PORT);
                Ok(if mssim {
                    TpmAddress::Mssim { host, port }
                } else {
                    TpmAddress::SwtpmTcp { host, port }
                })
            }
            "tabrmd" => Err(invalid(
                "the tpm2-abrmd D-Bus resource manager is not supported; use the kernel \
                 resource manager device:/dev/tpmrm0",
            )),
            other => Err(invalid(&format!(
                "unknown kind {other:?} (expected device, unix, swtpm or mssim)"
            ))),
        }
    }

    /// Opens a connection, mapping a missing device and a permission problem to
    /// [`TpmError::DeviceNotFound`] and [`TpmError::PermissionDenied`].
    pub fn open(&self) -> Result<Box<dyn Transport>, TpmError> {
        let connect_error = |source: io::Error| TpmError::Connect {
            address: self.to_string(),
            source,
        };
        match self {
            TpmAddress::Device(path) => {
                let is_socket = std::fs::metadata(path)
                    .map(|m| m.file_type().is_socket())
                    .unwrap_or(false);
                if is_socket {
                    return open_unix(path).map_err(connect_error);
                }
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(|source| device_error(path, source))?;
                Ok(Box::new(RawStream::device(file)))
            }
            TpmAddress::Unix(path) => open_unix(path).map_err(connect_error),
            TpmAddress::SwtpmTcp { host, port } => {
                let stream = open_tcp(host, *port).map_err(connect_error)?;
                Ok(Box::new(RawStream::socket(stream)))
            }
            TpmAddress::Mssim { host, port } => {
                let stream = open_tcp(host, *port).map_err(connect_error)?;
                Ok(Box::new(MssimStream::new(stream)))
            }
        }
    }
}

impl Connect for TpmAddress {
    fn connect(&self) -> Result<Box<dyn Transport>, TpmError> {
        self.open()
    }

    fn describe(&self) -> String {
        self.to_string()
    }
}

/// Maps an error from opening a character device to the variant that names the fix.
pub(crate) fn device_error(path: &Path, source: io::Error) -> TpmError {
    let path = path.display().to_string();
    match source.kind() {
        io::ErrorKind::NotFound => TpmError::DeviceNotFound { path },
        io::ErrorKind::PermissionDenied => TpmError::PermissionDenied { path, source },
        _ => TpmError::Connect {
            address: format!("device:{path}"),
            source,
        },
    }
}

fn absolute(path: &str) -> Result<PathBuf, &'static str> {
    if path.is_empty() {
        return Err("the path is empty");
    }
    Ok(PathBuf::from(path))
}

#[derive(Default)]
struct Options {
    host: Option<String>,
    port: Option<u16>,
    path: Option<String>,
}

fn parse_options(config: &str) -> Result<Options, String> {
    let mut options = Options::default();
    for item in config.split(',').filter(|s| !s.is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            return Err(format!("option {item:?} is not KEY=VALUE"));
        };
        match key {
            "host" if !value.is_empty() => options.host = Some(value.to_owned()),
            "port" => {
                let port = value
                    .parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| format!("port {value:?} is not a number from 1 to 65535"))?;
                options.port = Some(port);
            }
            "path" if !value.is_empty() => options.path = Some(value.to_owned()),
            _ => {
                return Err(format!(
                    "unknown or empty option {key:?} (expected host, port or path)"
                ));
            }
        }
    }
    Ok(options)
}

fn open_unix(path: &Path) -> io::Result<Box<dyn Transport>> {
    let stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(SOCKET_TIMEOUT))?;
    stream.set_write_timeout(Some(SOCKET_TIMEOUT))?;
    Ok(Box::new(RawStream::socket(stream)))
}

fn open_tcp(host: &str, port: u16) -> io::Result<TcpStream> {
    let stream = TcpStream::connect((host, port))?;
    stream.set_read_timeout(Some(SOCKET_TIMEOUT))?;
    stream.set_write_timeout(Some(SOCKET_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> TpmAddress {
        TpmAddress::parse(value).unwrap()
    }

    #[test]
    fn parse_device_forms() {
        let default = TpmAddress::Device(PathBuf::from("/dev/tpmrm0"));
        assert_eq!(parse(""), default);
        assert_eq!(parse("device"), default);
        assert_eq!(parse("device:"), default);
        assert_eq!(parse("device:/dev/tpmrm0"), default);
        assert_eq!(parse("/dev/tpm0"), TpmAddress::Device("/dev/tpm0".into()));
        assert_eq!(
            parse("device:path=/dev/tpm0"),
            TpmAddress::Device("/dev/tpm0".into())
        );
    }

    #[test]
    fn parse_socket_forms() {
        let unix = TpmAddress::Unix("/run/swtpm.sock".into());
        assert_eq!(parse("unix:/run/swtpm.sock"), unix);
        assert_eq!(parse("swtpm:path=/run/swtpm.sock"), unix);
        assert_eq!(
            parse("swtpm:host=127.0.0.1,port=2331"),
            TpmAddress::SwtpmTcp {
                host: "127.0.0.1".into(),
                port: 2331
            }
        );
        assert_eq!(
            parse("swtpm:"),
            TpmAddress::SwtpmTcp {
                host: "localhost".into(),
                port: 2321
            }
        );
        assert_eq!(
            parse("mssim:port=4000"),
            TpmAddress::Mssim {
                host: "localhost".into(),
                port: 4000
            }
        );
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "device:/dev/tpm0",
            "unix:/tmp/s",
            "swtpm:host=::1,port=5",
            "mssim:host=h,port=7",
        ] {
            assert_eq!(parse(text).to_string(), text);
        }
    }

    #[test]
    fn parse_rejects_bad_strings() {
        for (value, needle) in [
            ("tpm0", "KIND:CONFIG"),
            ("swtpm:port=0", "port \"0\""),
            ("swtpm:port=70000", "port \"70000\""),
            ("mssim:host", "not KEY=VALUE"),
            ("swtpm:user=x", "unknown or empty option \"user\""),
            ("tabrmd:", "D-Bus"),
            ("cmd:tpm2-sim", "unknown kind \"cmd\""),
            ("unix:", "path is empty"),
            ("swtpm:path=/a,port=1", "not both"),
        ] {
            let error = TpmAddress::parse(value).unwrap_err();
            let message = error.to_string();
            assert!(message.contains(needle), "{value}: {message}");
            assert!(message.contains(&format!("{value:?}")), "{message}");
        }
    }

    #[test]
    fn missing_device_is_named() {
        let address = parse("device:/nonexistent/tpmrm9");
        let error = address.open().unwrap_err();
        assert!(matches!(error, TpmError::DeviceNotFound { .. }));
        assert!(error.to_string().contains("/nonexistent/tpmrm9"));
    }

    #[test]
    fn permission_denied_names_tss_group() {
        let error = device_error(
            Path::new("/dev/tpmrm0"),
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert!(matches!(error, TpmError::PermissionDenied { .. }));
        let message = error.to_string();
        assert!(message.contains("/dev/tpmrm0"), "{message}");
        assert!(message.contains("`tss` group"), "{message}");
    }
}
