//! Token selection: finding the slot that contains the token a URI names.
//!
//! Tokens are matched by their label, serial, manufacturer and model, and by the slot's
//! description and manufacturer. A slot ID in the URI only narrows the search, because
//! modules may number slots differently after a restart or a token reinsertion.

use cryptoki::context::Pkcs11;
use cryptoki::slot::Slot;

use crate::error::{Error, TokenSummary};
use crate::uri::Pkcs11Uri;

/// The facts about one slot and its token that a URI can match on.
#[derive(Debug, Clone)]
pub(crate) struct TokenFacts {
    pub(crate) summary: TokenSummary,
    pub(crate) slot_description: String,
    pub(crate) slot_manufacturer: String,
    pub(crate) flags: TokenFlags,
}

/// Token flags that decide how the signer logs in.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TokenFlags {
    pub(crate) login_required: bool,
    pub(crate) protected_authentication_path: bool,
    pub(crate) user_pin_locked: bool,
    pub(crate) user_pin_count_low: bool,
    pub(crate) user_pin_final_try: bool,
}

/// Library facts from `C_GetInfo`, matched against the URI's `library-*` attributes.
#[derive(Debug, Clone)]
pub(crate) struct LibraryFacts {
    pub(crate) manufacturer: String,
    pub(crate) description: String,
    pub(crate) version: (u8, u8),
}

/// A token chosen by [`select`], with the slot it sits in right now.
#[derive(Debug, Clone)]
pub(crate) struct SelectedToken {
    pub(crate) slot: Slot,
    pub(crate) summary: TokenSummary,
    pub(crate) flags: TokenFlags,
}

impl SelectedToken {
    /// Returns a short name for messages: `token "LABEL" (serial SERIAL)`.
    pub(crate) fn name(&self) -> String {
        token_name(&self.summary)
    }
}

pub(crate) fn token_name(summary: &TokenSummary) -> String {
    format!("token \"{}\" (serial {})", summary.label, summary.serial)
}

/// Trims the space and NUL padding that PKCS#11 puts after fixed-width strings.
pub(crate) fn trim_padding(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != 0)
        .map_or(0, |last| last + 1);
    &bytes[..end]
}

// NOTE: cryptoki 0.12 decodes token strings lossily to UTF-8, so a URI value with bytes
// that are not UTF-8 never matches.
fn field_matches(expected: Option<&[u8]>, actual: &str) -> bool {
    expected.is_none_or(|e| trim_padding(e) == trim_padding(actual.as_bytes()))
}

/// Returns whether the URI's library attributes match the module.
pub(crate) fn library_matches(uri: &Pkcs11Uri, library: &LibraryFacts) -> bool {
    field_matches(uri.library_manufacturer(), &library.manufacturer)
        && field_matches(uri.library_description(), &library.description)
        && uri
            .library_version()
            .is_none_or(|version| version == library.version)
}

/// Returns whether the URI's token and slot attributes match one slot.
pub(crate) fn token_matches(uri: &Pkcs11Uri, facts: &TokenFacts) -> bool {
    let token = &facts.summary;
    field_matches(uri.token(), &token.label)
        && field_matches(uri.serial(), &token.serial)
        && field_matches(uri.manufacturer(), &token.manufacturer)
        && field_matches(uri.model(), &token.model)
        && field_matches(uri.slot_description(), &facts.slot_description)
        && field_matches(uri.slot_manufacturer(), &facts.slot_manufacturer)
        && uri.slot_id().is_none_or(|id| id == token.slot_id)
}

/// Describes the URI's token filter for messages, without query attributes.
pub(crate) fn filter_text(uri: &Pkcs11Uri) -> String {
    let mut filter = uri.clone();
    filter.clear_object_and_query();
    if filter.has_token_attributes() {
        filter.to_string()
    } else {
        "any token".into()
    }
}

/// Finds the single initialised token that matches `uri`.
pub(crate) fn select(pkcs11: &Pkcs11, uri: &Pkcs11Uri) -> Result<SelectedToken, Error> {
    let library = pkcs11
        .get_library_info()
        .map_err(|e| crate::error::call_error("reading the module information", "", e))?;
    let library = LibraryFacts {
        manufacturer: library.manufacturer_id().to_owned(),
        description: library.library_description().to_owned(),
        version: (
            library.library_version().major(),
            library.library_version().minor(),
        ),
    };
    if let Some(id) = uri.slot_id() {
        log::warn!(
            "the PKCS#11 URI names slot-id={id}; slot IDs can change when the module \
             reloads, so prefer token= or serial="
        );
    }

    let slots = pkcs11
        .get_slots_with_token()
        .map_err(|e| crate::error::call_error("listing PKCS#11 slots", "", e))?;
    let mut seen = Vec::new();
    let mut matched = Vec::new();
    for slot in slots {
        let facts = match read_facts(pkcs11, slot) {
            Ok(facts) => facts,
            Err(error) => {
                // A slot whose token vanished between the list and the query is skipped.
                log::debug!("skipping PKCS#11 slot {}: {error}", slot.id());
                continue;
            }
        };
        let candidate = facts.summary.initialized
            && library_matches(uri, &library)
            && token_matches(uri, &facts);
        log::debug!(
            "PKCS#11 {}{}",
            facts.summary,
            if candidate { ", matches" } else { "" }
        );
        seen.push(facts.summary.clone());
        if candidate {
            matched.push((slot, facts));
        }
    }

    let filter = filter_text(uri);
    match matched.len() {
        0 => Err(Error::TokenNotFound { filter, seen }),
        1 => {
            let (slot, facts) = matched.remove(0);
            Ok(SelectedToken {
                slot,
                summary: facts.summary,
                flags: facts.flags,
            })
        }
        _ => Err(Error::AmbiguousToken {
            filter,
            matched: matched.into_iter().map(|(_, f)| f.summary).collect(),
        }),
    }
}

fn read_facts(pkcs11: &Pkcs11, slot: Slot) -> Result<TokenFacts, Error> {
    let slot_info = pkcs11
        .get_slot_info(slot)
        .map_err(|e| crate::error::call_error("reading slot information", "", e))?;
    let token = pkcs11
        .get_token_info(slot)
        .map_err(|e| crate::error::call_error("reading token information", "", e))?;
    let text = |s: &str| String::from_utf8_lossy(trim_padding(s.as_bytes())).into_owned();
    let facts = TokenFacts {
        summary: TokenSummary {
            slot_id: slot.id(),
            label: text(token.label()),
            serial: text(token.serial_number()),
            manufacturer: text(token.manufacturer_id()),
            model: text(token.model()),
            initialized: token.token_initialized(),
        },
        slot_description: text(slot_info.slot_description()),
        slot_manufacturer: text(slot_info.manufacturer_id()),
        flags: TokenFlags {
            login_required: token.login_required(),
            protected_authentication_path: token.protected_authentication_path(),
            user_pin_locked: token.user_pin_locked(),
            user_pin_count_low: token.user_pin_count_low(),
            user_pin_final_try: token.user_pin_final_try(),
        },
    };
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> TokenFacts {
        TokenFacts {
            summary: TokenSummary {
                slot_id: 17,
                label: "ra-test".into(),
                serial: "fae0c7f3d1ea2eab".into(),
                manufacturer: "SoftHSM project".into(),
                model: "SoftHSM v2".into(),
                initialized: true,
            },
            slot_description: "SoftHSM slot ID 0x0".into(),
            slot_manufacturer: "SoftHSM project".into(),
            flags: TokenFlags::default(),
        }
    }

    fn matches(text: &str) -> bool {
        token_matches(&Pkcs11Uri::parse(text).unwrap(), &facts())
    }

    #[test]
    fn trim_padding_removes_spaces_and_nuls() {
        assert_eq!(trim_padding(b"ra-test   "), b"ra-test");
        assert_eq!(trim_padding(b"ra-test\0\0\0"), b"ra-test");
        assert_eq!(trim_padding(b"ra-test \0 \0"), b"ra-test");
        assert_eq!(trim_padding(b"  lead"), b"  lead");
        assert_eq!(trim_padding(b"   "), b"");
    }

    #[test]
    fn token_matches_each_attribute() {
        assert!(matches("pkcs11:"));
        assert!(matches("pkcs11:token=ra-test"));
        assert!(matches("pkcs11:token=ra-test%20%20%00"));
        assert!(matches("pkcs11:serial=fae0c7f3d1ea2eab"));
        assert!(matches(
            "pkcs11:manufacturer=SoftHSM%20project;model=SoftHSM%20v2"
        ));
        assert!(matches("pkcs11:slot-description=SoftHSM%20slot%20ID%200x0"));
        assert!(matches("pkcs11:slot-manufacturer=SoftHSM%20project"));
        assert!(matches("pkcs11:slot-id=17;token=ra-test"));
        assert!(matches("pkcs11:token=ra-test;object=anything;id=%05"));
    }

    #[test]
    fn token_mismatch_on_any_attribute() {
        assert!(!matches("pkcs11:token=ra-tes"));
        assert!(!matches("pkcs11:token=RA-TEST"));
        assert!(!matches("pkcs11:token=ra-test;serial=0"));
        assert!(!matches("pkcs11:model=SoftHSM"));
        assert!(!matches("pkcs11:manufacturer=x"));
        assert!(!matches("pkcs11:slot-description=x"));
        assert!(!matches("pkcs11:slot-manufacturer=x"));
        assert!(!matches("pkcs11:slot-id=18"));
        assert!(!matches("pkcs11:token="));
    }

    #[test]
    fn library_attributes_match() {
        let library = LibraryFacts {
            manufacturer: "SoftHSM".into(),
            description: "Implementation of PKCS11".into(),
            version: (2, 6),
        };
        let check = |text: &str| library_matches(&Pkcs11Uri::parse(text).unwrap(), &library);
        assert!(check("pkcs11:library-manufacturer=SoftHSM"));
        assert!(check("pkcs11:library-version=2.6"));
        assert!(check(
            "pkcs11:library-description=Implementation%20of%20PKCS11"
        ));
        assert!(!check("pkcs11:library-version=2"));
        assert!(!check("pkcs11:library-manufacturer=OpenSC"));
    }

    #[test]
    fn filter_text_omits_object_and_query() {
        let uri = Pkcs11Uri::parse("pkcs11:token=t;id=%01?pin-value=1").unwrap();
        assert_eq!(filter_text(&uri), "pkcs11:token=t");
        let uri = Pkcs11Uri::parse("pkcs11:object=x").unwrap();
        assert_eq!(filter_text(&uri), "any token");
    }
}
