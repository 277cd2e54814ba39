//! Byte transports to a TPM: the Linux character device, a raw TPM command stream on a
//! Unix or TCP socket (swtpm), and the Microsoft simulator framing on TCP.

use std::fmt;
use std::io::{self, Read, Write};

/// The largest response accepted from a TPM. TPM 2.0 devices cap commands and responses
/// at 4096 bytes (`TPM_PT_MAX_RESPONSE_SIZE` is usually 4096); simulators may allow more.
pub const MAX_RESPONSE: usize = 16 * 1024;

const HEADER_LEN: usize = 10;

/// Sends one TPM command and returns its response, both as complete wire frames
/// (header included).
pub trait Transport: Send + fmt::Debug {
    /// Sends `command` and waits for the response.
    fn transact(&mut self, command: &[u8]) -> io::Result<Vec<u8>>;
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn transact(&mut self, command: &[u8]) -> io::Result<Vec<u8>> {
        (**self).transact(command)
    }
}

/// Reads the `responseSize` field of a TPM response header.
fn frame_size(header: &[u8]) -> io::Result<usize> {
    let size = u32::from_be_bytes([header[2], header[3], header[4], header[5]]) as usize;
    if !(HEADER_LEN..=MAX_RESPONSE).contains(&size) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("TPM response size {size} is outside {HEADER_LEN}..={MAX_RESPONSE}"),
        ));
    }
    Ok(size)
}

/// A stream that carries bare TPM command and response frames: the character device,
/// or swtpm's data socket. The response length comes from its own header.
#[derive(Debug)]
pub struct RawStream<S> {
    stream: S,
    one_read: bool,
}

impl<S: Read + Write> RawStream<S> {
    /// Wraps a socket, where a response may arrive in several reads.
    pub fn socket(stream: S) -> Self {
        RawStream {
            stream,
            one_read: false,
        }
    }

    /// Wraps a TPM character device. Linux returns the whole response to the first
    /// read, and some kernel versions discard the part a short first read left, so the
    /// first read requests the largest possible response.
    pub fn device(file: S) -> Self {
        RawStream {
            stream: file,
            one_read: true,
        }
    }
}

impl<S: Read + Write + Send + fmt::Debug> Transport for RawStream<S> {
    fn transact(&mut self, command: &[u8]) -> io::Result<Vec<u8>> {
        // The kernel driver wants the whole command in a single write call.
        let written = self.stream.write(command)?;
        if written != command.len() {
            if self.one_read {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!(
                        "TPM device took {written} of {} command bytes",
                        command.len()
                    ),
                ));
            }
            self.stream.write_all(&command[written..])?;
        }
        self.stream.flush()?;

        let mut response = vec![0u8; MAX_RESPONSE];
        let mut filled = 0;
        if self.one_read {
            filled = self.stream.read(&mut response)?;
        }
        while filled < HEADER_LEN {
            let n = self.stream.read(&mut response[filled..])?;
            if n == 0 {
                return Err(eof(filled));
            }
            filled += n;
        }
        let size = frame_size(&response[..HEADER_LEN])?;
        while filled < size {
            let n = self.stream.read(&mut response[filled..size])?;
            if n == 0 {
                return Err(eof(filled));
            }
            filled += n;
        }
        if filled > size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("TPM sent {filled} bytes for a {size}-byte response"),
            ));
        }
        response.truncate(size);
        Ok(response)
    }
}

fn eof(received: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("TPM closed the connection after {received} response bytes"),
    )
}

/// `TPM_SEND_COMMAND` of the Microsoft TPM 2.0 simulator protocol.
const MSSIM_SEND_COMMAND: u32 = 8;
/// `TPM_SESSION_END`, sent by a client before it closes the connection.
const MSSIM_SESSION_END: u32 = 20;

/// The Microsoft TPM 2.0 simulator framing on a TCP stream, which swtpm also accepts.
///
/// A command goes out as `TPM_SEND_COMMAND` (u32 = 8), the locality (u8), the command
/// length (u32) and the command. The response comes back as its length (u32), the
/// response, and an acknowledgement (u32, 0 on success). All integers are big-endian.
///
/// NOTE: this transport sends no platform commands (power on, NV on). swtpm started with
/// `--flags not-need-init,startup-clear` needs none; a Microsoft simulator must be
/// powered on and started by another client first.
#[derive(Debug)]
pub struct MssimStream<S: Write> {
    stream: S,
    locality: u8,
}

impl<S: Read + Write> MssimStream<S> {
    /// Wraps a connected TCP stream; commands are sent at locality 0.
    pub fn new(stream: S) -> Self {
        MssimStream {
            stream,
            locality: 0,
        }
    }

    fn read_u32(&mut self) -> io::Result<u32> {
        let mut bytes = [0u8; 4];
        self.stream.read_exact(&mut bytes)?;
        Ok(u32::from_be_bytes(bytes))
    }
}

impl<S: Read + Write + Send + fmt::Debug> Transport for MssimStream<S> {
    fn transact(&mut self, command: &[u8]) -> io::Result<Vec<u8>> {
        let length = u32::try_from(command.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "TPM command too long"))?;
        let mut frame = Vec::with_capacity(command.len() + 9);
        frame.extend_from_slice(&MSSIM_SEND_COMMAND.to_be_bytes());
        frame.push(self.locality);
        frame.extend_from_slice(&length.to_be_bytes());
        frame.extend_from_slice(command);
        let written = self.stream.write_all(&frame);
        zeroize::Zeroize::zeroize(&mut frame);
        written?;
        self.stream.flush()?;

        let size = self.read_u32()? as usize;
        if !(HEADER_LEN..=MAX_RESPONSE).contains(&size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "simulator response length {size} is outside {HEADER_LEN}..={MAX_RESPONSE}"
                ),
            ));
        }
        let mut response = vec![0u8; size];
        self.stream.read_exact(&mut response)?;
        let ack = self.read_u32()?;
        if ack != 0 {
            return Err(io::Error::other(format!(
                "simulator acknowledged the command with {ack}, expected 0"
            )));
        }
        if frame_size(&response[..HEADER_LEN])? != size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "simulator length and TPM response header disagree",
            ));
        }
        Ok(response)
    }
}

impl<S: Write> Drop for MssimStream<S> {
    fn drop(&mut self) {
        // Best effort: the simulator drops the connection either way.
        let _ = self.stream.write_all(&MSSIM_SESSION_END.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory stream: reads from `input`, records writes.
    #[derive(Debug)]
    struct Script {
        input: io::Cursor<Vec<u8>>,
        output: Vec<u8>,
        max_read: usize,
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let limit = buf.len().min(self.max_read);
            self.input.read(&mut buf[..limit])
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    const RESPONSE: [u8; 12] = [0x80, 0x01, 0, 0, 0, 12, 0, 0, 0, 0, 0xAB, 0xCD];

    #[test]
    fn raw_socket_reassembles_split_reads() {
        let script = Script {
            input: io::Cursor::new(RESPONSE.to_vec()),
            output: Vec::new(),
            max_read: 3,
        };
        let mut transport = RawStream::socket(script);
        let response = transport.transact(&[1, 2, 3]).unwrap();
        assert_eq!(response, RESPONSE);
        assert_eq!(transport.stream.output, [1, 2, 3]);
    }

    #[test]
    fn raw_device_rejects_oversized_length() {
        let mut bad = RESPONSE;
        bad[2] = 0x7F;
        let script = Script {
            input: io::Cursor::new(bad.to_vec()),
            output: Vec::new(),
            max_read: usize::MAX,
        };
        let error = RawStream::device(script).transact(&[0]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn raw_socket_reports_early_close() {
        let script = Script {
            input: io::Cursor::new(RESPONSE[..7].to_vec()),
            output: Vec::new(),
            max_read: usize::MAX,
        };
        let error = RawStream::socket(script).transact(&[0]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn mssim_frames_command_and_checks_ack() {
        let mut input = 12u32.to_be_bytes().to_vec();
        input.extend_from_slice(&RESPONSE);
        input.extend_from_slice(&0u32.to_be_bytes());
        let script = Script {
            input: io::Cursor::new(input),
            output: Vec::new(),
            max_read: 5,
        };
        let mut transport = MssimStream::new(script);
        assert_eq!(transport.transact(&[9, 9]).unwrap(), RESPONSE);
        assert_eq!(transport.stream.output, [0, 0, 0, 8, 0, 0, 0, 0, 2, 9, 9]);
    }

    #[test]
    fn mssim_rejects_nonzero_ack() {
        let mut input = 12u32.to_be_bytes().to_vec();
        input.extend_from_slice(&RESPONSE);
        input.extend_from_slice(&1u32.to_be_bytes());
        let script = Script {
            input: io::Cursor::new(input),
            output: Vec::new(),
            max_read: usize::MAX,
        };
        assert!(MssimStream::new(script).transact(&[0]).is_err());
    }
}
