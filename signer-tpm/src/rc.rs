//! Decoding of TPM 2.0 response codes (TPM 2.0 Library, Part 2, section 6.6).
//!
//! A response code is either format 0 (a TPM 1.2 code, a TPM 2.0 error or warning, or a
//! vendor code) or format 1 (bit 7 set: an error number plus the parameter, handle or
//! session it refers to). Bits 16 to 23 carry a software layer (a TSS or a resource
//! manager) when the code did not come from the TPM itself.

use std::fmt;

use tpm2_protocol::data::TpmRcBase;

const FMT1: u32 = 0x080;
const VER1: u32 = 0x100;
const VENDOR: u32 = 0x400;
const SEVERITY: u32 = 0x800;
const PARAMETER: u32 = 0x040;
const LAYER_SHIFT: u32 = 16;

/// Well-known response codes, named as in Part 2 (`TPM_RC_*`).
pub mod codes {
    /// The authorization HMAC or password did not match, for an object subject to
    /// dictionary-attack protection.
    pub const AUTH_FAIL: u32 = 0x08E;
    /// The authorization HMAC or password did not match, for an object with `noDA`.
    pub const BAD_AUTH: u32 = 0x0A2;
    /// The referenced handle is not loaded or does not exist.
    pub const HANDLE: u32 = 0x08B;
    /// A value is out of range or not valid for the command.
    pub const VALUE: u32 = 0x084;
    /// The integrity check of a private blob failed: wrong parent or another TPM.
    pub const INTEGRITY: u32 = 0x09F;
    /// The curve is not supported by this TPM.
    pub const CURVE: u32 = 0x0A6;
    /// The signing scheme is not valid for the key.
    pub const SCHEME: u32 = 0x092;
    /// A size is wrong, for example a digest that does not match the scheme hash.
    pub const SIZE: u32 = 0x095;
    /// The key size is not supported.
    pub const KEY_SIZE: u32 = 0x087;
    /// The TPM is in dictionary-attack lockout.
    pub const LOCKOUT: u32 = 0x921;
    /// The TPM was busy and the command should be resent.
    pub const RETRY: u32 = 0x922;
    /// The TPM suspended the command to do other work; resend it.
    pub const YIELDED: u32 = 0x908;
    /// The TPM is running self tests; resend the command later.
    pub const TESTING: u32 = 0x90A;
    /// TPM2_Startup has not been sent.
    pub const INITIALIZE: u32 = 0x100;
}

/// The object a format-1 response code refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RcIndex {
    /// A command parameter, numbered from 1.
    Parameter(u8),
    /// A handle in the handle area, numbered from 1.
    Handle(u8),
    /// A session in the authorization area, numbered from 1.
    Session(u8),
}

impl fmt::Display for RcIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RcIndex::Parameter(n) => write!(f, "parameter {n}"),
            RcIndex::Handle(n) => write!(f, "handle {n}"),
            RcIndex::Session(n) => write!(f, "session {n}"),
        }
    }
}

/// A non-zero TPM response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseCode(pub u32);

impl ResponseCode {
    /// Returns the raw 32-bit value.
    pub fn raw(self) -> u32 {
        self.0
    }

    /// Returns the software layer (bits 16 to 23); 0 for codes from the TPM.
    pub fn layer(self) -> u8 {
        ((self.0 >> LAYER_SHIFT) & 0xFF) as u8
    }

    fn tpm_part(self) -> u32 {
        self.0 & 0xFFFF
    }

    /// Returns whether this is a format-1 code (error number plus an index).
    pub fn is_format1(self) -> bool {
        self.tpm_part() & FMT1 != 0
    }

    /// Returns the code without its parameter, handle or session number, comparable
    /// with the constants in [`codes`]. Vendor and layered codes are returned unchanged.
    pub fn base(self) -> u32 {
        if self.layer() != 0 {
            return self.0;
        }
        let rc = self.tpm_part();
        if rc & FMT1 != 0 {
            FMT1 | (rc & 0x3F)
        } else {
            rc
        }
    }

    /// Returns the parameter, handle or session a format-1 code refers to, if any.
    pub fn index(self) -> Option<RcIndex> {
        if self.layer() != 0 || !self.is_format1() {
            return None;
        }
        let rc = self.tpm_part();
        let number = ((rc >> 8) & 0xF) as u8;
        if rc & PARAMETER != 0 {
            return Some(RcIndex::Parameter(number));
        }
        match number {
            0 => None,
            1..=7 => Some(RcIndex::Handle(number)),
            _ => Some(RcIndex::Session(number - 8)),
        }
    }

    /// Returns whether this is a format-0 warning (the TPM did not run the command).
    pub fn is_warning(self) -> bool {
        let rc = self.tpm_part();
        self.layer() == 0 && rc & FMT1 == 0 && rc & VER1 != 0 && rc & SEVERITY != 0
    }

    /// Returns the `TPM_RC_*` name of the base code, or `None` for a vendor, layered or
    /// unknown code.
    pub fn name(self) -> Option<String> {
        if self.layer() != 0 {
            return None;
        }
        let rc = self.tpm_part();
        if rc & FMT1 == 0 && rc & VER1 != 0 && rc & VENDOR != 0 {
            return None;
        }
        TpmRcBase::try_from(self.base())
            .ok()
            .map(|base| base.to_string())
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rc = self.tpm_part();
        match self.name() {
            Some(name) => write!(f, "{name}")?,
            None if self.layer() != 0 => {
                write!(f, "layer {} code 0x{:03X}", self.layer(), rc)?;
            }
            None if rc & FMT1 == 0 && rc & VER1 != 0 && rc & VENDOR != 0 => {
                write!(f, "vendor code 0x{rc:03X}")?;
            }
            None => write!(f, "unknown code")?,
        }
        if let Some(index) = self.index() {
            write!(f, " at {index}")?;
        }
        write!(f, " (0x{:08X})", self.0)
    }
}

impl std::error::Error for ResponseCode {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format1_session_auth_fail() {
        let rc = ResponseCode(0x98E);
        assert_eq!(rc.base(), codes::AUTH_FAIL);
        assert_eq!(rc.index(), Some(RcIndex::Session(1)));
        assert_eq!(rc.to_string(), "TPM_RC_AUTH_FAIL at session 1 (0x0000098E)");
    }

    #[test]
    fn format1_handle_and_parameter() {
        let handle = ResponseCode(0x18B);
        assert_eq!(handle.base(), codes::HANDLE);
        assert_eq!(handle.index(), Some(RcIndex::Handle(1)));
        let parameter = ResponseCode(0x1DF);
        assert_eq!(parameter.base(), codes::INTEGRITY);
        assert_eq!(parameter.index(), Some(RcIndex::Parameter(1)));
        assert_eq!(
            parameter.to_string(),
            "TPM_RC_INTEGRITY at parameter 1 (0x000001DF)"
        );
    }

    #[test]
    fn format0_warnings() {
        for (raw, name) in [
            (0x922, "TPM_RC_RETRY"),
            (0x908, "TPM_RC_YIELDED"),
            (0x90A, "TPM_RC_TESTING"),
            (0x921, "TPM_RC_LOCKOUT"),
        ] {
            let rc = ResponseCode(raw);
            assert!(rc.is_warning(), "{raw:#x}");
            assert_eq!(rc.index(), None);
            assert_eq!(rc.name().as_deref(), Some(name));
        }
        assert!(!ResponseCode(0x101).is_warning());
        assert_eq!(
            ResponseCode(0x101).to_string(),
            "TPM_RC_FAILURE (0x00000101)"
        );
    }

    #[test]
    fn vendor_and_layered_codes() {
        assert_eq!(
            ResponseCode(0x501).to_string(),
            "vendor code 0x501 (0x00000501)"
        );
        let layered = ResponseCode(0x000B_0009);
        assert_eq!(layered.layer(), 0x0B);
        assert_eq!(layered.index(), None);
        assert_eq!(layered.to_string(), "layer 11 code 0x009 (0x000B0009)");
    }
}
