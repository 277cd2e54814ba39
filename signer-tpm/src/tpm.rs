//! One connection to a TPM: command framing, password authorization, retries of TPM
//! warnings, and flushing of every transient object the connection loaded.

use std::time::Duration;

use tpm2_protocol::TpmWriter;
use tpm2_protocol::basic::TpmHandle;
use tpm2_protocol::data::{
    Tpm2bDigest, TpmAlgId, TpmCap, TpmRh, TpmSt, TpmsSchemeHash, TpmtPublic, TpmtSigScheme,
    TpmtSignature, TpmtTkHashcheck, TpmuCapabilities, TpmuSigScheme,
};
use tpm2_protocol::frame::{
    TpmCreatePrimaryCommand, TpmCreatePrimaryResponse, TpmFlushContextCommand,
    TpmFlushContextResponse, TpmGetCapabilityCommand, TpmGetCapabilityResponse, TpmHeader,
    TpmLoadResponse, TpmMarshalBody, TpmReadPublicCommand, TpmReadPublicResponse, TpmResponse,
    TpmSignCommand, TpmSignResponse, TpmUnmarshalBody,
};
use zeroize::Zeroizing;

use crate::address::Connect;
use crate::error::TpmError;
use crate::rc::{ResponseCode, codes};
use crate::transport::Transport;

/// `TPM_RS_PW`: the password authorization session.
const PASSWORD_SESSION: u32 = 0x4000_0009;
/// `continueSession` in the session attributes. TPM_RS_PW stays available either way.
const CONTINUE_SESSION: u8 = 0x01;
/// First handle of the transient object range (`TPM_HT_TRANSIENT`).
pub(crate) const TRANSIENT_FIRST: u32 = 0x8000_0000;
/// `TPM_PT_LOCKOUT_COUNTER`.
const PT_LOCKOUT_COUNTER: u32 = 0x20E;

/// Delays between attempts when the TPM returns TPM_RC_RETRY, TPM_RC_YIELDED or
/// TPM_RC_TESTING: seven retries over about 2.5 seconds in total.
///
/// These warnings mean the TPM did not run the command, so resending is safe even with
/// an authorization. swtpm 0.7.1 returns TPM_RC_RETRY for the first failed
/// authorization of a dictionary-attack protected object after startup, without
/// counting the failure. The resent command then fails with TPM_RC_AUTH_FAIL.
const RETRY_DELAYS_MS: [u64; 7] = [20, 40, 80, 160, 320, 640, 1280];

/// A failed command before it is mapped to a [`TpmError`] variant by its caller.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The TPM returned this response code.
    Tpm(ResponseCode),
    /// The command never completed (I/O, framing, retries exhausted).
    Other(TpmError),
}

impl From<TpmError> for Failure {
    fn from(error: TpmError) -> Self {
        Failure::Other(error)
    }
}

impl Failure {
    /// Maps a TPM response code to the error variants every command shares:
    /// authorization failure, lockout, and a generic command failure.
    pub(crate) fn into_error(self, command: &'static str, object: &str) -> TpmError {
        match self {
            Failure::Other(error) => error,
            Failure::Tpm(rc) => match rc.base() {
                codes::AUTH_FAIL | codes::BAD_AUTH => TpmError::AuthFailed {
                    command,
                    object: object.to_owned(),
                    rc,
                },
                codes::LOCKOUT => TpmError::Lockout { command, rc },
                _ => TpmError::Command { command, rc },
            },
        }
    }
}

/// A connection to the TPM that flushes, on drop, every transient object it created.
#[derive(Debug)]
pub(crate) struct Tpm {
    transport: Box<dyn Transport>,
    address: String,
    transients: Vec<u32>,
}

impl Tpm {
    /// Opens a connection through `connector`.
    pub(crate) fn connect(connector: &dyn Connect) -> Result<Self, TpmError> {
        Ok(Tpm {
            transport: connector.connect()?,
            address: connector.describe(),
            transients: Vec::new(),
        })
    }

    /// Sends one command and returns the raw response frame, resending it after the
    /// warnings that ask for that. Any other non-zero response code is returned as
    /// [`Failure::Tpm`] at once.
    fn transact(
        &mut self,
        command: &'static str,
        cc: u32,
        handles: &[u8],
        auths: &[&[u8]],
        parameters: &[u8],
    ) -> Result<Vec<u8>, Failure> {
        let frame = frame_command(command, cc, handles, auths, parameters)?;
        let mut attempt = 0;
        loop {
            let response = self
                .transport
                .transact(&frame)
                .map_err(|source| TpmError::Io {
                    address: self.address.clone(),
                    source,
                })?;
            let rc = u32::from_be_bytes([response[6], response[7], response[8], response[9]]);
            if rc == 0 {
                return Ok(response);
            }
            let rc = ResponseCode(rc);
            let retryable = matches!(rc.base(), codes::RETRY | codes::YIELDED | codes::TESTING);
            if !retryable {
                return Err(Failure::Tpm(rc));
            }
            let Some(&delay) = RETRY_DELAYS_MS.get(attempt) else {
                return Err(Failure::Other(TpmError::RetriesExhausted {
                    command,
                    attempts: attempt as u32 + 1,
                    rc,
                }));
            };
            log::warn!(
                "{command} on {}: {rc}; retrying in {delay} ms",
                self.address
            );
            std::thread::sleep(Duration::from_millis(delay));
            attempt += 1;
        }
    }

    /// Sends a command built with tpm2-protocol and returns the raw response frame.
    fn execute_raw<C>(
        &mut self,
        command: &'static str,
        body: &C,
        auths: &[&[u8]],
    ) -> Result<Vec<u8>, Failure>
    where
        C: TpmMarshalBody + TpmHeader,
    {
        let mut handles = [0u8; 4 * 3];
        let mut handle_writer = TpmWriter::new(&mut handles);
        body.marshal_handles(&mut handle_writer)
            .map_err(|e| protocol(command, format!("cannot marshal handles: {e}")))?;
        let handle_len = handle_writer.len();

        let mut parameters = Zeroizing::new(vec![0u8; crate::transport::MAX_RESPONSE]);
        let mut writer = TpmWriter::new(&mut parameters);
        body.marshal_parameters(&mut writer)
            .map_err(|e| protocol(command, format!("cannot marshal parameters: {e}")))?;
        let parameter_len = writer.len();

        self.transact(
            command,
            C::CC.value(),
            &handles[..handle_len],
            auths,
            &parameters[..parameter_len],
        )
    }

    /// Sends a command built with tpm2-protocol and parses its response.
    fn execute<C, R>(
        &mut self,
        command: &'static str,
        body: &C,
        auths: &[&[u8]],
    ) -> Result<R, Failure>
    where
        C: TpmMarshalBody + TpmHeader,
        R: TpmUnmarshalBody,
    {
        let response = self.execute_raw(command, body, auths)?;
        parse_response(command, &response).map_err(Failure::Other)
    }

    /// Records the object handle of a successful TPM2_CreatePrimary or TPM2_Load
    /// response for flushing, before the rest of the response is parsed, so a malformed
    /// response cannot leak the object.
    fn register_transient(
        &mut self,
        command: &'static str,
        response: &[u8],
    ) -> Result<u32, Failure> {
        let handle = response
            .get(10..14)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| protocol(command, "response has no object handle".into()))?;
        if handle >> 24 != TRANSIENT_FIRST >> 24 {
            return Err(Failure::Other(protocol(
                command,
                format!("object handle 0x{handle:08X} is not transient"),
            )));
        }
        self.transients.push(handle);
        Ok(handle)
    }

    /// Reads the public area of a loaded or persistent object.
    pub(crate) fn read_public(&mut self, handle: u32) -> Result<TpmtPublic, Failure> {
        let body = TpmReadPublicCommand {
            handles: [TpmHandle::new(handle)],
        };
        let response: TpmReadPublicResponse = self.execute("TPM2_ReadPublic", &body, &[])?;
        Ok(response.out_public.inner)
    }

    /// Creates a primary object under `hierarchy` from `template` and returns its
    /// transient handle, which is flushed when this connection is dropped.
    pub(crate) fn create_primary(
        &mut self,
        hierarchy: u32,
        hierarchy_auth: &[u8],
        template: TpmtPublic,
    ) -> Result<u32, Failure> {
        let body = TpmCreatePrimaryCommand {
            handles: [TpmHandle::new(hierarchy)],
            in_sensitive: Default::default(),
            in_public: tpm2_protocol::data::Tpm2bPublic { inner: template },
            outside_info: Default::default(),
            creation_pcr: Default::default(),
        };
        const COMMAND: &str = "TPM2_CreatePrimary";
        let response = self.execute_raw(COMMAND, &body, &[hierarchy_auth])?;
        let handle = self.register_transient(COMMAND, &response)?;
        let _: TpmCreatePrimaryResponse = parse_response(COMMAND, &response)?;
        Ok(handle)
    }

    /// Loads a key blob under `parent`. `private` and `public` are the TPM2B_PRIVATE and
    /// TPM2B_PUBLIC exactly as the key file stores them: they go to the TPM byte for byte,
    /// because the object name the TPM checks is computed over the public area bytes.
    pub(crate) fn load(
        &mut self,
        parent: u32,
        parent_auth: &[u8],
        private: &[u8],
        public: &[u8],
    ) -> Result<u32, Failure> {
        const COMMAND: &str = "TPM2_Load";
        let mut parameters = Zeroizing::new(Vec::with_capacity(private.len() + public.len()));
        parameters.extend_from_slice(private);
        parameters.extend_from_slice(public);
        let cc = <TpmLoadResponse as TpmHeader>::CC.value();
        let response = self.transact(
            COMMAND,
            cc,
            &parent.to_be_bytes(),
            &[parent_auth],
            &parameters,
        )?;
        let handle = self.register_transient(COMMAND, &response)?;
        let _: TpmLoadResponse = parse_response(COMMAND, &response)?;
        Ok(handle)
    }

    /// Signs a digest with `key`, using `scheme` with `hash` and a null hash-check ticket.
    pub(crate) fn sign(
        &mut self,
        key: u32,
        key_auth: &[u8],
        digest: &[u8],
        scheme: TpmAlgId,
        hash: TpmAlgId,
    ) -> Result<TpmtSignature, Failure> {
        const COMMAND: &str = "TPM2_Sign";
        let digest = Tpm2bDigest::try_from(digest)
            .map_err(|e| protocol(COMMAND, format!("digest too long: {e}")))?;
        let body = TpmSignCommand {
            handles: [TpmHandle::new(key)],
            digest,
            in_scheme: TpmtSigScheme {
                scheme,
                details: TpmuSigScheme::Hash(TpmsSchemeHash { hash_alg: hash }),
            },
            validation: TpmtTkHashcheck {
                tag: TpmSt::HashCheck,
                hierarchy: TpmRh::Null,
                digest: Tpm2bDigest::default(),
            },
        };
        let response: TpmSignResponse = self.execute(COMMAND, &body, &[key_auth])?;
        Ok(response.signature)
    }

    /// Flushes a transient object now and removes it from the flush-on-drop list.
    pub(crate) fn flush(&mut self, handle: u32) -> Result<(), Failure> {
        self.transients.retain(|&h| h != handle);
        let body = TpmFlushContextCommand {
            handles: [],
            flush_handle: TpmHandle::new(handle),
        };
        let _: TpmFlushContextResponse = self.execute("TPM2_FlushContext", &body, &[])?;
        Ok(())
    }

    /// Returns the handles in use from `first` on, up to 128 of them.
    pub(crate) fn handles(&mut self, first: u32) -> Result<Vec<u32>, Failure> {
        let body = TpmGetCapabilityCommand {
            handles: [],
            cap: TpmCap::Handles,
            property: first.into(),
            property_count: 128u32.into(),
        };
        let response: TpmGetCapabilityResponse = self.execute("TPM2_GetCapability", &body, &[])?;
        let TpmuCapabilities::Handles(list) = response.capability_data.data else {
            return Err(Failure::Other(protocol(
                "TPM2_GetCapability",
                "the TPM returned another capability than TPM_CAP_HANDLES".into(),
            )));
        };
        let top = first & 0xFF00_0000;
        Ok(list
            .iter()
            .map(|h| h.value())
            .filter(|h| h & 0xFF00_0000 == top)
            .collect())
    }

    /// Returns `TPM_PT_LOCKOUT_COUNTER`: authorization failures counted towards lockout.
    pub(crate) fn lockout_counter(&mut self) -> Result<u32, Failure> {
        let body = TpmGetCapabilityCommand {
            handles: [],
            cap: TpmCap::TpmProperties,
            property: PT_LOCKOUT_COUNTER.into(),
            property_count: 1u32.into(),
        };
        let response: TpmGetCapabilityResponse = self.execute("TPM2_GetCapability", &body, &[])?;
        if let TpmuCapabilities::TpmProperties(list) = response.capability_data.data
            && let Some(property) = list
                .iter()
                .find(|p| p.property.value() == PT_LOCKOUT_COUNTER)
        {
            return Ok(property.value.value());
        }
        Err(Failure::Other(protocol(
            "TPM2_GetCapability",
            "TPM_PT_LOCKOUT_COUNTER missing from the response".into(),
        )))
    }
}

impl Drop for Tpm {
    fn drop(&mut self) {
        while let Some(handle) = self.transients.pop() {
            if let Err(failure) = self.flush(handle) {
                let error = failure.into_error("TPM2_FlushContext", "a transient object");
                log::warn!("cannot flush TPM object 0x{handle:08X}: {error}");
            }
        }
    }
}

fn protocol(command: &'static str, reason: String) -> TpmError {
    TpmError::Protocol { command, reason }
}

/// Builds a command frame: header, handle area, authorization area (one password
/// session per entry of `auths`) and parameter area.
///
/// The authorization area is written here rather than with `TpmsAuthCommand`, whose
/// buffer type is `Copy` and prints its bytes in `Debug`, so a password in it could be
/// neither zeroized nor kept out of logs.
fn frame_command(
    command: &'static str,
    cc: u32,
    handles: &[u8],
    auths: &[&[u8]],
    parameters: &[u8],
) -> Result<Zeroizing<Vec<u8>>, TpmError> {
    let mut auth_area = Zeroizing::new(Vec::new());
    for auth in auths {
        let len = u16::try_from(auth.len())
            .ok()
            .filter(|&len| usize::from(len) <= tpm2_protocol::constant::MAX_DIGEST_SIZE)
            .ok_or_else(|| protocol(command, "password longer than 64 bytes".into()))?;
        auth_area.extend_from_slice(&PASSWORD_SESSION.to_be_bytes());
        auth_area.extend_from_slice(&0u16.to_be_bytes());
        auth_area.push(CONTINUE_SESSION);
        auth_area.extend_from_slice(&len.to_be_bytes());
        auth_area.extend_from_slice(auth);
    }
    let tag = if auths.is_empty() {
        TpmSt::NoSessions
    } else {
        TpmSt::Sessions
    };
    let auth_len = if auths.is_empty() {
        0
    } else {
        4 + auth_area.len()
    };
    let size = 10 + handles.len() + auth_len + parameters.len();
    let size = u32::try_from(size).map_err(|_| protocol(command, "command too long".into()))?;

    let mut frame = Zeroizing::new(Vec::with_capacity(size as usize));
    frame.extend_from_slice(&tag.value().to_be_bytes());
    frame.extend_from_slice(&size.to_be_bytes());
    frame.extend_from_slice(&cc.to_be_bytes());
    frame.extend_from_slice(handles);
    if !auths.is_empty() {
        frame.extend_from_slice(&(auth_area.len() as u32).to_be_bytes());
        frame.extend_from_slice(&auth_area);
    }
    frame.extend_from_slice(parameters);
    Ok(frame)
}

fn parse_response<R: TpmUnmarshalBody>(
    command: &'static str,
    response: &[u8],
) -> Result<R, TpmError> {
    TpmResponse::cast(response)
        .and_then(|frame| frame.unmarshal::<R>())
        .map_err(|e| protocol(command, format!("malformed response: {e}")))
}

/// Returns the transient object handles loaded in the TPM, as TPM2_GetCapability
/// (`TPM_CAP_HANDLES`, from `0x80000000`) lists them. Behind the kernel resource manager
/// this lists only the objects of this connection.
pub fn transient_handles(connector: &dyn Connect) -> Result<Vec<u32>, TpmError> {
    let mut tpm = Tpm::connect(connector)?;
    tpm.handles(TRANSIENT_FIRST)
        .map_err(|f| f.into_error("TPM2_GetCapability", "handles"))
}

/// Returns the TPM's dictionary-attack failure counter (`TPM_PT_LOCKOUT_COUNTER`).
pub fn lockout_counter(connector: &dyn Connect) -> Result<u32, TpmError> {
    let mut tpm = Tpm::connect(connector)?;
    tpm.lockout_counter()
        .map_err(|f| f.into_error("TPM2_GetCapability", "properties"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_command_with_password() {
        let frame = frame_command("TPM2_Sign", 0x15D, &[0x81, 0, 0, 1], &[b"pw"], &[7]).unwrap();
        let expected: Vec<u8> = [
            &[0x80, 0x02][..],
            &(10u32 + 4 + 4 + 11 + 1).to_be_bytes(),
            &0x15Du32.to_be_bytes(),
            &[0x81, 0, 0, 1],
            &11u32.to_be_bytes(),
            &[0x40, 0, 0, 9, 0, 0, 1, 0, 2, b'p', b'w'],
            &[7],
        ]
        .concat();
        assert_eq!(&frame[..], &expected[..]);
    }

    #[test]
    fn frame_command_without_sessions() {
        let frame = frame_command("TPM2_ReadPublic", 0x173, &[0x81, 0, 0, 1], &[], &[]).unwrap();
        assert_eq!(&frame[..2], &[0x80, 0x01]);
        assert_eq!(frame.len(), 14);
    }

    #[test]
    fn frame_command_rejects_long_password() {
        let long = [b'x'; 65];
        assert!(frame_command("TPM2_Sign", 0x15D, &[], &[&long], &[]).is_err());
    }
}
