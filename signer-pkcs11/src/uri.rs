//! Parser for PKCS#11 URIs as RFC 7512 defines them.
//!
//! A URI has path attributes separated by `;` that select a library, slot, token and
//! object, and query attributes separated by `&` that give the PIN and the module:
//!
//! ```text
//! pkcs11:token=ra-test;id=%01;type=cert?pin-source=/run/secrets/pin&module-path=/usr/lib/softhsm/libsofthsm2.so
//! ```
//!
//! Values are percent-decoded byte for byte, so `id=%01%ff` is the two bytes `01 ff`.
//! Attribute names starting with `x-` are vendor extensions (RFC 7512) and are ignored.
//! Other unknown names are rejected, so a misspelt attribute cannot silently match
//! every token.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use zeroize::Zeroizing;

use crate::Error;

/// The object class a URI's `type` attribute names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ObjectType {
    /// `type=cert`
    Certificate,
    /// `type=private`
    PrivateKey,
    /// `type=public`
    PublicKey,
    /// `type=secret-key`
    SecretKey,
    /// `type=data`
    Data,
}

impl ObjectType {
    fn from_value(value: &[u8]) -> Option<Self> {
        Some(match value {
            b"cert" => ObjectType::Certificate,
            b"private" => ObjectType::PrivateKey,
            b"public" => ObjectType::PublicKey,
            b"secret-key" => ObjectType::SecretKey,
            b"data" => ObjectType::Data,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            ObjectType::Certificate => "cert",
            ObjectType::PrivateKey => "private",
            ObjectType::PublicKey => "public",
            ObjectType::SecretKey => "secret-key",
            ObjectType::Data => "data",
        }
    }
}

/// A parsed PKCS#11 URI.
///
/// `Display` and `Debug` print the URI in percent-encoded form with any `pin-value`
/// replaced by `REDACTED`, so both are safe for logs and error messages.
#[derive(Clone, Default)]
pub struct Pkcs11Uri {
    token: Option<Vec<u8>>,
    manufacturer: Option<Vec<u8>>,
    model: Option<Vec<u8>>,
    serial: Option<Vec<u8>>,
    slot_id: Option<u64>,
    slot_description: Option<Vec<u8>>,
    slot_manufacturer: Option<Vec<u8>>,
    library_manufacturer: Option<Vec<u8>>,
    library_description: Option<Vec<u8>>,
    library_version: Option<(u8, u8)>,
    object: Option<Vec<u8>>,
    id: Option<Vec<u8>>,
    object_type: Option<ObjectType>,
    pin_value: Option<Zeroizing<String>>,
    pin_source: Option<String>,
    module_name: Option<String>,
    module_path: Option<PathBuf>,
}

const SCHEME: &str = "pkcs11:";

impl Pkcs11Uri {
    /// Parses a `pkcs11:` URI. Errors name the attribute at fault and never contain the
    /// value of `pin-value`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidUri {
            uri: redact_raw(text),
            reason,
        };
        let rest = match text.get(..SCHEME.len()) {
            Some(scheme) if scheme.eq_ignore_ascii_case(SCHEME) => &text[SCHEME.len()..],
            _ => return Err(invalid("the URI does not start with \"pkcs11:\"".into())),
        };
        if rest.contains('#') {
            return Err(invalid(
                "a PKCS#11 URI has no fragment; write a literal # in a value as %23".into(),
            ));
        }
        let (path, query) = match rest.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (rest, None),
        };

        let mut uri = Pkcs11Uri::default();
        for component in path.split(';').filter(|c| !c.is_empty()) {
            uri.set_path_attribute(component).map_err(invalid)?;
        }
        for component in query.into_iter().flat_map(|q| q.split('&')) {
            if !component.is_empty() {
                uri.set_query_attribute(component).map_err(invalid)?;
            }
        }
        if uri.pin_value.is_some() && uri.pin_source.is_some() {
            return Err(invalid(
                "pin-value and pin-source are both present; keep one".into(),
            ));
        }
        Ok(uri)
    }

    fn set_path_attribute(&mut self, component: &str) -> Result<(), String> {
        let (name, raw) = split_attribute(component)?;
        if name.starts_with("x-") {
            log::debug!("ignoring vendor-specific PKCS#11 URI attribute {name}");
            return Ok(());
        }
        let value = percent_decode(raw, name)?;
        match name {
            "token" => set_once(&mut self.token, name, value),
            "manufacturer" => set_once(&mut self.manufacturer, name, value),
            "model" => set_once(&mut self.model, name, value),
            "serial" => set_once(&mut self.serial, name, value),
            "slot-description" => set_once(&mut self.slot_description, name, value),
            "slot-manufacturer" => set_once(&mut self.slot_manufacturer, name, value),
            "library-manufacturer" => set_once(&mut self.library_manufacturer, name, value),
            "library-description" => set_once(&mut self.library_description, name, value),
            "object" => set_once(&mut self.object, name, value),
            "id" => set_once(&mut self.id, name, value),
            "slot-id" => {
                let id = std::str::from_utf8(&value)
                    .ok()
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| {
                        format!("slot-id must be a decimal number, not {:?}", lossy(&value))
                    })?;
                set_once(&mut self.slot_id, name, id)
            }
            "library-version" => {
                let version = parse_version(&value).ok_or_else(|| {
                    format!(
                        "library-version must be MAJOR or MAJOR.MINOR (0-255 each), not {:?}",
                        lossy(&value)
                    )
                })?;
                set_once(&mut self.library_version, name, version)
            }
            "type" => {
                let object_type = ObjectType::from_value(&value).ok_or_else(|| {
                    format!(
                        "type must be cert, private, public, secret-key or data, not {:?}",
                        lossy(&value)
                    )
                })?;
                set_once(&mut self.object_type, name, object_type)
            }
            "pin-value" | "pin-source" | "module-name" | "module-path" => Err(format!(
                "{name} is a query attribute; put it after '?', as in pkcs11:token=T?{name}=..."
            )),
            _ => Err(format!(
                "unknown path attribute {name:?}; known ones are token, manufacturer, model, \
                 serial, slot-id, slot-description, slot-manufacturer, library-manufacturer, \
                 library-description, library-version, object, id and type"
            )),
        }
    }

    fn set_query_attribute(&mut self, component: &str) -> Result<(), String> {
        let (name, raw) = split_attribute(component)?;
        if name.starts_with("x-") {
            log::debug!("ignoring vendor-specific PKCS#11 URI attribute {name}");
            return Ok(());
        }
        match name {
            "pin-value" => {
                let bytes = Zeroizing::new(percent_decode(raw, name)?);
                let pin = std::str::from_utf8(&bytes)
                    .map_err(|_| "pin-value is not valid UTF-8 after percent-decoding")?;
                // Copy into a buffer of the exact size, so no reallocation leaves a copy
                // of the PIN behind.
                let mut owned = Zeroizing::new(String::with_capacity(pin.len()));
                owned.push_str(pin);
                set_once(&mut self.pin_value, name, owned)
            }
            "pin-source" => {
                let value = decode_utf8(raw, name)?;
                set_once(&mut self.pin_source, name, value)
            }
            "module-name" => {
                let value = decode_utf8(raw, name)?;
                if value.is_empty() || value.contains('/') {
                    return Err(format!(
                        "module-name must be a library name without a directory, not {value:?}"
                    ));
                }
                set_once(&mut self.module_name, name, value)
            }
            "module-path" => {
                let value = decode_utf8(raw, name)?;
                if !Path::new(&value).is_absolute() {
                    return Err(format!(
                        "module-path must be an absolute path, not {value:?}"
                    ));
                }
                set_once(&mut self.module_path, name, PathBuf::from(value))
            }
            _ => Err(format!(
                "unknown query attribute {name:?}; known ones are pin-value, pin-source, \
                 module-name and module-path"
            )),
        }
    }

    /// Returns the `token` attribute: the token label.
    pub fn token(&self) -> Option<&[u8]> {
        self.token.as_deref()
    }

    /// Returns the `manufacturer` attribute: the token manufacturer ID.
    pub fn manufacturer(&self) -> Option<&[u8]> {
        self.manufacturer.as_deref()
    }

    /// Returns the `model` attribute: the token model.
    pub fn model(&self) -> Option<&[u8]> {
        self.model.as_deref()
    }

    /// Returns the `serial` attribute: the token serial number.
    pub fn serial(&self) -> Option<&[u8]> {
        self.serial.as_deref()
    }

    /// Returns the `slot-id` attribute. Slot IDs can change when the module reloads, so
    /// the signer uses it only to narrow the token search.
    pub fn slot_id(&self) -> Option<u64> {
        self.slot_id
    }

    /// Returns the `slot-description` attribute.
    pub fn slot_description(&self) -> Option<&[u8]> {
        self.slot_description.as_deref()
    }

    /// Returns the `slot-manufacturer` attribute.
    pub fn slot_manufacturer(&self) -> Option<&[u8]> {
        self.slot_manufacturer.as_deref()
    }

    /// Returns the `library-manufacturer` attribute.
    pub fn library_manufacturer(&self) -> Option<&[u8]> {
        self.library_manufacturer.as_deref()
    }

    /// Returns the `library-description` attribute.
    pub fn library_description(&self) -> Option<&[u8]> {
        self.library_description.as_deref()
    }

    /// Returns the `library-version` attribute as (major, minor); `M` alone means `M.0`.
    pub fn library_version(&self) -> Option<(u8, u8)> {
        self.library_version
    }

    /// Returns the `object` attribute: the object label (`CKA_LABEL`).
    pub fn object(&self) -> Option<&[u8]> {
        self.object.as_deref()
    }

    /// Returns the `id` attribute: the object ID (`CKA_ID`), which may be binary.
    pub fn id(&self) -> Option<&[u8]> {
        self.id.as_deref()
    }

    /// Returns the `type` attribute.
    pub fn object_type(&self) -> Option<ObjectType> {
        self.object_type
    }

    /// Returns the `pin-value` query attribute.
    pub fn pin_value(&self) -> Option<&Zeroizing<String>> {
        self.pin_value.as_ref()
    }

    /// Returns the `pin-source` query attribute, as written (a path or a `file:` URI).
    pub fn pin_source(&self) -> Option<&str> {
        self.pin_source.as_deref()
    }

    /// Returns the `module-name` query attribute.
    pub fn module_name(&self) -> Option<&str> {
        self.module_name.as_deref()
    }

    /// Returns the `module-path` query attribute.
    pub fn module_path(&self) -> Option<&Path> {
        self.module_path.as_deref()
    }

    /// Returns whether any attribute that selects a library, slot or token is present.
    pub fn has_token_attributes(&self) -> bool {
        self.token.is_some()
            || self.manufacturer.is_some()
            || self.model.is_some()
            || self.serial.is_some()
            || self.slot_id.is_some()
            || self.slot_description.is_some()
            || self.slot_manufacturer.is_some()
            || self.library_manufacturer.is_some()
            || self.library_description.is_some()
            || self.library_version.is_some()
    }

    /// Drops the object and query attributes, leaving the token filter.
    pub(crate) fn clear_object_and_query(&mut self) {
        self.object = None;
        self.id = None;
        self.object_type = None;
        self.pin_value = None;
        self.pin_source = None;
        self.module_name = None;
        self.module_path = None;
    }

    /// Reads the PIN from `pin-value`, or from the file `pin-source` names with one
    /// trailing newline (`\n` or `\r\n`) removed. Returns `None` when neither is present.
    ///
    /// `pin-source` may be a path or a `file:` URI. The `|command` form that some tools
    /// accept is rejected: the signer never runs programs to get a PIN.
    pub fn read_pin(&self) -> Result<Option<Zeroizing<String>>, Error> {
        if let Some(pin) = &self.pin_value {
            return Ok(Some(pin.clone()));
        }
        let Some(source) = &self.pin_source else {
            return Ok(None);
        };
        let path = pin_source_path(source).ok_or_else(|| Error::InvalidUri {
            uri: self.to_string(),
            reason: format!("pin-source must be an absolute path or a file: URI, not {source:?}"),
        })?;
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| Error::PinSource {
            path: path.to_owned(),
            source,
        })?);
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| Error::InvalidConfig(format!("the PIN file {path} is not valid UTF-8")))?;
        let pin = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(text);
        let mut owned = Zeroizing::new(String::with_capacity(pin.len()));
        owned.push_str(pin);
        Ok(Some(owned))
    }
}

/// Maps `file:/p`, `file:///p` and `/p` to `/p`; anything else is unsupported.
fn pin_source_path(source: &str) -> Option<&str> {
    let path = match source.strip_prefix("file:") {
        Some(rest) => rest.strip_prefix("//").unwrap_or(rest),
        None => source,
    };
    path.starts_with('/').then_some(path)
}

impl FromStr for Pkcs11Uri {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        Pkcs11Uri::parse(text)
    }
}

fn split_attribute(component: &str) -> Result<(&str, &str), String> {
    let (name, value) = component
        .split_once('=')
        .ok_or_else(|| format!("attribute {component:?} has no '='; write name=value"))?;
    if name.is_empty() {
        return Err(format!("attribute {component:?} has an empty name"));
    }
    Ok((name, value))
}

fn set_once<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<(), String> {
    if slot.is_some() {
        return Err(format!("attribute {name} appears more than once"));
    }
    *slot = Some(value);
    Ok(())
}

/// Decodes `%XX` escapes (either case) to bytes; other characters stay as their UTF-8
/// bytes. A `%` without two hex digits after it is an error.
fn percent_decode(raw: &str, name: &str) -> Result<Vec<u8>, String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let digits = bytes.get(index + 1..index + 3);
            let value = digits.and_then(|d| Some((hex_value(d[0])? << 4) | hex_value(d[1])?));
            let Some(value) = value else {
                return Err(format!(
                    "attribute {name} has malformed percent-encoding at offset {index}; \
                     '%' must be followed by two hex digits (write '%' itself as %25)"
                ));
            };
            out.push(value);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    Ok(out)
}

fn decode_utf8(raw: &str, name: &str) -> Result<String, String> {
    String::from_utf8(percent_decode(raw, name)?)
        .map_err(|_| format!("attribute {name} is not valid UTF-8 after percent-decoding"))
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

fn parse_version(value: &[u8]) -> Option<(u8, u8)> {
    let text = std::str::from_utf8(value).ok()?;
    let (major, minor) = text.split_once('.').unwrap_or((text, "0"));
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u8>().ok())
            .flatten()
    };
    Some((number(major)?, number(minor)?))
}

fn lossy(value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
}

/// Replaces the value of every `pin-value` attribute in unparsed URI text.
fn redact_raw(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("pin-value=") {
        let value_start = start + "pin-value=".len();
        out.push_str(&rest[..value_start]);
        out.push_str("REDACTED");
        let tail = &rest[value_start..];
        let end = tail.find(['&', ';', '#']).unwrap_or(tail.len());
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn write_encoded(f: &mut fmt::Formatter<'_>, value: &[u8]) -> fmt::Result {
    for &byte in value {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            write!(f, "{}", char::from(byte))?;
        } else {
            write!(f, "%{byte:02x}")?;
        }
    }
    Ok(())
}

impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(SCHEME)?;
        let slot_id = self.slot_id.map(|id| id.to_string());
        let version = self
            .library_version
            .map(|(major, minor)| format!("{major}.{minor}"));
        let path: [(&str, Option<&[u8]>); 13] = [
            ("library-manufacturer", self.library_manufacturer.as_deref()),
            ("library-description", self.library_description.as_deref()),
            ("library-version", version.as_deref().map(str::as_bytes)),
            ("slot-manufacturer", self.slot_manufacturer.as_deref()),
            ("slot-description", self.slot_description.as_deref()),
            ("slot-id", slot_id.as_deref().map(str::as_bytes)),
            ("manufacturer", self.manufacturer.as_deref()),
            ("model", self.model.as_deref()),
            ("serial", self.serial.as_deref()),
            ("token", self.token.as_deref()),
            ("object", self.object.as_deref()),
            ("id", self.id.as_deref()),
            ("type", self.object_type.map(|t| t.as_str().as_bytes())),
        ];
        let mut first = true;
        for (name, value) in path {
            let Some(value) = value else { continue };
            if !first {
                f.write_str(";")?;
            }
            first = false;
            write!(f, "{name}=")?;
            write_encoded(f, value)?;
        }

        let module_path = self.module_path.as_ref().map(|p| p.to_string_lossy());
        let query: [(&str, Option<&[u8]>); 4] = [
            // The PIN itself never leaves the struct through Display or Debug.
            (
                "pin-value",
                self.pin_value.as_ref().map(|_| &b"REDACTED"[..]),
            ),
            ("pin-source", self.pin_source.as_deref().map(str::as_bytes)),
            (
                "module-name",
                self.module_name.as_deref().map(str::as_bytes),
            ),
            ("module-path", module_path.as_deref().map(str::as_bytes)),
        ];
        let mut first = true;
        for (name, value) in query {
            let Some(value) = value else { continue };
            f.write_str(if first { "?" } else { "&" })?;
            first = false;
            write!(f, "{name}=")?;
            write_encoded_path(f, value)?;
        }
        Ok(())
    }
}

/// Like [`write_encoded`] but keeps `/` and `:` readable in paths and `file:` URIs.
fn write_encoded_path(f: &mut fmt::Formatter<'_>, value: &[u8]) -> fmt::Result {
    for &byte in value {
        if byte.is_ascii_alphanumeric() || b"-._~/:".contains(&byte) {
            write!(f, "{}", char::from(byte))?;
        } else {
            write!(f, "%{byte:02x}")?;
        }
    }
    Ok(())
}

impl fmt::Debug for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pkcs11Uri({self})")
    }
}

#[cfg(test)]
#[path = "uri_tests.rs"]
mod tests;
