//! Object search: certificates and private keys by `CKA_ID` and `CKA_LABEL`.

use cryptoki::error::Error as CkError;
use cryptoki::object::{
    Attribute, AttributeType, CertificateType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::Session;

/// An X.509 certificate object with its DER value.
#[derive(Debug, Clone)]
pub(crate) struct CertificateObject {
    pub(crate) id: Vec<u8>,
    pub(crate) label: Vec<u8>,
    pub(crate) der: Vec<u8>,
}

/// A private key object and the attributes the signer needs.
#[derive(Debug, Clone)]
pub(crate) struct KeyObject {
    pub(crate) handle: ObjectHandle,
    pub(crate) id: Vec<u8>,
    pub(crate) label: Vec<u8>,
    pub(crate) key_type: Option<KeyType>,
    /// `CKA_EC_PARAMS` of EC keys: the DER curve OID.
    pub(crate) ec_params: Option<Vec<u8>>,
    pub(crate) always_authenticate: bool,
}

/// Lists the X.509 certificates that match `id` and `label` (either may be absent).
pub(crate) fn find_certificates(
    session: &Session,
    id: Option<&[u8]>,
    label: Option<&[u8]>,
) -> Result<Vec<CertificateObject>, CkError> {
    let mut template = vec![
        Attribute::Class(ObjectClass::CERTIFICATE),
        Attribute::CertificateType(CertificateType::X_509),
    ];
    push_id_label(&mut template, id, label);
    let mut found = Vec::new();
    for handle in session.find_objects(&template)? {
        let attributes = session.get_attributes(
            handle,
            &[
                AttributeType::Id,
                AttributeType::Label,
                AttributeType::Value,
            ],
        )?;
        let mut object = CertificateObject {
            id: Vec::new(),
            label: Vec::new(),
            der: Vec::new(),
        };
        for attribute in attributes {
            match attribute {
                Attribute::Id(value) => object.id = value,
                Attribute::Label(value) => object.label = value,
                Attribute::Value(value) => object.der = value,
                _ => {}
            }
        }
        found.push(object);
    }
    Ok(found)
}

/// Lists the private keys that match `id` and `label` (either may be absent).
pub(crate) fn find_private_keys(
    session: &Session,
    id: Option<&[u8]>,
    label: Option<&[u8]>,
) -> Result<Vec<KeyObject>, CkError> {
    let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
    push_id_label(&mut template, id, label);
    let mut found = Vec::new();
    for handle in session.find_objects(&template)? {
        let attributes = session.get_attributes(
            handle,
            &[
                AttributeType::Id,
                AttributeType::Label,
                AttributeType::KeyType,
                AttributeType::EcParams,
                AttributeType::AlwaysAuthenticate,
            ],
        )?;
        let mut object = KeyObject {
            handle,
            id: Vec::new(),
            label: Vec::new(),
            key_type: None,
            ec_params: None,
            always_authenticate: false,
        };
        for attribute in attributes {
            match attribute {
                Attribute::Id(value) => object.id = value,
                Attribute::Label(value) => object.label = value,
                Attribute::KeyType(value) => object.key_type = Some(value),
                Attribute::EcParams(value) => object.ec_params = Some(value),
                Attribute::AlwaysAuthenticate(value) => object.always_authenticate = value,
                _ => {}
            }
        }
        found.push(object);
    }
    Ok(found)
}

fn push_id_label(template: &mut Vec<Attribute>, id: Option<&[u8]>, label: Option<&[u8]>) {
    if let Some(id) = id {
        template.push(Attribute::Id(id.to_vec()));
    }
    if let Some(label) = label {
        template.push(Attribute::Label(label.to_vec()));
    }
}

/// Describes a search for messages, for example `certificate with id 01 and label "a"`.
pub(crate) fn describe_search(class: &str, id: Option<&[u8]>, label: Option<&[u8]>) -> String {
    match (id, label) {
        (None, None) => class.to_owned(),
        (Some(id), None) => format!("{class} with id {}", hex(id)),
        (None, Some(label)) => format!("{class} with label {:?}", lossy(label)),
        (Some(id), Some(label)) => {
            format!("{class} with id {} and label {:?}", hex(id), lossy(label))
        }
    }
}

/// Describes one object for messages and logs: `id 01 label "rsa-key"`.
pub(crate) fn describe_object(id: &[u8], label: &[u8]) -> String {
    format!("id {} label {:?}", hex(id), lossy(label))
}

/// Formats bytes as lowercase hex; an empty ID prints as `(empty)`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "(empty)".into();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_search_names_id_and_label() {
        assert_eq!(describe_search("certificate", None, None), "certificate");
        assert_eq!(
            describe_search("private key", Some(&[0x01, 0xab]), None),
            "private key with id 01ab"
        );
        assert_eq!(
            describe_search("certificate", Some(&[1]), Some(b"rsa-cert")),
            "certificate with id 01 and label \"rsa-cert\""
        );
        assert_eq!(hex(&[]), "(empty)");
    }
}
