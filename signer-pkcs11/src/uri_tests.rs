use super::*;

fn parse(text: &str) -> Pkcs11Uri {
    Pkcs11Uri::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn reason(text: &str) -> String {
    match Pkcs11Uri::parse(text) {
        Err(Error::InvalidUri { reason, .. }) => reason,
        Err(other) => panic!("{text}: unexpected error {other:?}"),
        Ok(uri) => panic!("{text}: parsed as {uri}"),
    }
}

#[test]
fn parse_all_path_attributes() {
    let uri = parse(
        "pkcs11:token=ra-test;manufacturer=SoftHSM%20project;model=SoftHSM%20v2;\
         serial=fae0c7f3d1ea2eab;slot-id=17;slot-description=SoftHSM%20slot;\
         slot-manufacturer=SoftHSM;library-manufacturer=OpenSC;library-description=p11;\
         library-version=2.6;object=rsa-cert;id=%01;type=cert",
    );
    assert_eq!(uri.token(), Some(&b"ra-test"[..]));
    assert_eq!(uri.manufacturer(), Some(&b"SoftHSM project"[..]));
    assert_eq!(uri.model(), Some(&b"SoftHSM v2"[..]));
    assert_eq!(uri.serial(), Some(&b"fae0c7f3d1ea2eab"[..]));
    assert_eq!(uri.slot_id(), Some(17));
    assert_eq!(uri.slot_description(), Some(&b"SoftHSM slot"[..]));
    assert_eq!(uri.slot_manufacturer(), Some(&b"SoftHSM"[..]));
    assert_eq!(uri.library_manufacturer(), Some(&b"OpenSC"[..]));
    assert_eq!(uri.library_description(), Some(&b"p11"[..]));
    assert_eq!(uri.library_version(), Some((2, 6)));
    assert_eq!(uri.object(), Some(&b"rsa-cert"[..]));
    assert_eq!(uri.id(), Some(&[1u8][..]));
    assert_eq!(uri.object_type(), Some(ObjectType::Certificate));
    assert!(uri.has_token_attributes());
}

#[test]
fn parse_query_attributes() {
    let uri =
        parse("pkcs11:object=k?pin-value=12%2534&module-path=/usr/lib/softhsm/libsofthsm2.so");
    assert_eq!(uri.pin_value().map(|p| p.as_str()), Some("12%34"));
    assert_eq!(
        uri.module_path(),
        Some(Path::new("/usr/lib/softhsm/libsofthsm2.so"))
    );
    assert!(!uri.has_token_attributes());

    let uri = parse("pkcs11:?pin-source=file:///run/pin&module-name=softhsm2");
    assert_eq!(uri.pin_source(), Some("file:///run/pin"));
    assert_eq!(uri.module_name(), Some("softhsm2"));
}

#[test]
fn percent_decoding_is_byte_exact() {
    let uri = parse("pkcs11:id=%00%ff%FE%7f;object=a%3bb%20c%C3%A9");
    assert_eq!(uri.id(), Some(&[0x00, 0xff, 0xfe, 0x7f][..]));
    assert_eq!(uri.object(), Some("a;b cé".as_bytes()));

    // A label that is not UTF-8 stays as the raw bytes.
    let uri = parse("pkcs11:token=%ff%fe");
    assert_eq!(uri.token(), Some(&[0xff, 0xfe][..]));
}

#[test]
fn scheme_is_case_insensitive() {
    assert_eq!(parse("PKCS11:token=t").token(), Some(&b"t"[..]));
    assert!(reason("pkcs12:token=t").contains("pkcs11:"));
    assert!(reason("token=t").contains("pkcs11:"));
}

#[test]
fn empty_uri_matches_everything() {
    let uri = parse("pkcs11:");
    assert!(!uri.has_token_attributes());
    assert_eq!(uri.to_string(), "pkcs11:");
    assert_eq!(parse("pkcs11:token=t;").token(), Some(&b"t"[..]));
}

#[test]
fn empty_values_are_kept() {
    assert_eq!(parse("pkcs11:token=").token(), Some(&b""[..]));
}

#[test]
fn malformed_percent_encoding_is_rejected() {
    for text in [
        "pkcs11:id=%0",
        "pkcs11:id=%",
        "pkcs11:id=%zz",
        "pkcs11:object=a%g1",
        "pkcs11:?pin-value=%4",
    ] {
        let reason = reason(text);
        assert!(reason.contains("percent-encoding"), "{text}: {reason}");
    }
    assert!(reason("pkcs11:object=a%2").contains("attribute object"));
}

#[test]
fn duplicate_attributes_are_rejected() {
    assert_eq!(
        reason("pkcs11:token=a;token=b"),
        "attribute token appears more than once"
    );
    assert_eq!(
        reason("pkcs11:id=%01;id=%01"),
        "attribute id appears more than once"
    );
    assert_eq!(
        reason("pkcs11:?module-path=/a&module-path=/b"),
        "attribute module-path appears more than once"
    );
}

#[test]
fn unknown_attributes_are_rejected() {
    let message = reason("pkcs11:tokn=ra-test");
    assert!(message.contains("\"tokn\""), "{message}");
    let message = reason("pkcs11:?pin=1234");
    assert!(message.contains("\"pin\""), "{message}");
    let message = reason("pkcs11:token=t?token=u");
    assert!(message.contains("\"token\""), "{message}");
}

#[test]
fn vendor_attributes_are_ignored() {
    let uri = parse("pkcs11:x-vendor=%zz;token=t?x-thing=1");
    assert_eq!(uri.token(), Some(&b"t"[..]));
}

#[test]
fn query_attribute_in_path_is_explained() {
    assert!(reason("pkcs11:token=t;pin-value=1234").contains("after '?'"));
}

#[test]
fn attribute_without_value_is_rejected() {
    assert!(reason("pkcs11:token").contains("no '='"));
    assert!(reason("pkcs11:=x").contains("empty name"));
}

#[test]
fn typed_values_are_checked() {
    assert!(reason("pkcs11:slot-id=abc").contains("slot-id"));
    assert!(reason("pkcs11:slot-id=-1").contains("slot-id"));
    assert!(reason("pkcs11:slot-id=").contains("slot-id"));
    assert!(reason("pkcs11:type=certificate").contains("type must be"));
    assert!(reason("pkcs11:library-version=1.x").contains("library-version"));
    assert!(reason("pkcs11:library-version=256").contains("library-version"));
    assert_eq!(
        parse("pkcs11:library-version=3").library_version(),
        Some((3, 0))
    );
    assert!(reason("pkcs11:?module-path=lib.so").contains("absolute"));
    assert!(reason("pkcs11:?module-name=/usr/lib/x").contains("module-name"));
}

#[test]
fn pin_value_and_pin_source_conflict() {
    assert!(reason("pkcs11:?pin-value=1&pin-source=/p").contains("both"));
}

#[test]
fn fragment_is_rejected() {
    assert!(reason("pkcs11:token=PKCS#11").contains("%23"));
    assert_eq!(
        parse("pkcs11:token=PKCS%2311").token(),
        Some(&b"PKCS#11"[..])
    );
}

#[test]
fn pin_value_never_shows() {
    let uri = parse("pkcs11:token=t?pin-value=s3cret");
    assert!(!uri.to_string().contains("s3cret"));
    assert!(!format!("{uri:?}").contains("s3cret"));
    assert!(uri.to_string().contains("pin-value=REDACTED"));

    let Err(error) = Pkcs11Uri::parse("pkcs11:bogus=1?pin-value=s3cret&module-path=/m") else {
        panic!("parsed");
    };
    let message = error.to_string();
    assert!(!message.contains("s3cret"), "{message}");
    assert!(message.contains("module-path=/m"), "{message}");
}

#[test]
fn display_round_trips() {
    let text = "pkcs11:slot-id=3;serial=00%2f1;token=My%20Token;object=k%3b1;id=%01%ff;\
                type=private?pin-source=/run/pin&module-path=/usr/lib/p11%20kit.so";
    let uri = parse(text);
    let again = parse(&uri.to_string());
    assert_eq!(again.to_string(), uri.to_string());
    assert_eq!(again.serial(), Some(&b"00/1"[..]));
    assert_eq!(again.token(), Some(&b"My Token"[..]));
    assert_eq!(again.object(), Some(&b"k;1"[..]));
    assert_eq!(again.id(), Some(&[0x01, 0xff][..]));
    assert_eq!(again.slot_id(), Some(3));
    assert_eq!(again.module_path(), Some(Path::new("/usr/lib/p11 kit.so")));
}

#[test]
fn read_pin_trims_one_newline() {
    let dir = std::env::temp_dir().join(format!("ra-pkcs11-uri-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases: [(&[u8], &str); 4] = [
        (b"1234\n", "1234"),
        (b"1234\r\n", "1234"),
        (b"1234", "1234"),
        (b" 12 34\n\n", " 12 34\n"),
    ];
    for (index, (content, expected)) in cases.iter().enumerate() {
        let path = dir.join(format!("pin{index}"));
        std::fs::write(&path, content).unwrap();
        for text in [
            format!("pkcs11:?pin-source={}", path.display()),
            format!("pkcs11:?pin-source=file://{}", path.display()),
            format!("pkcs11:?pin-source=file:{}", path.display()),
        ] {
            let pin = parse(&text).read_pin().unwrap().unwrap();
            assert_eq!(pin.as_str(), *expected, "{text}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn read_pin_reports_missing_file() {
    let uri = parse("pkcs11:?pin-source=/nonexistent/ra-agent/pin");
    match uri.read_pin() {
        Err(Error::PinSource { path, .. }) => assert_eq!(path, "/nonexistent/ra-agent/pin"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn read_pin_rejects_commands() {
    let uri = parse("pkcs11:?pin-source=%7c/usr/bin/getpin");
    assert!(matches!(uri.read_pin(), Err(Error::InvalidUri { .. })));
    let uri = parse("pkcs11:?pin-source=relative/pin");
    assert!(matches!(uri.read_pin(), Err(Error::InvalidUri { .. })));
}

#[test]
fn read_pin_prefers_pin_value() {
    let uri = parse("pkcs11:?pin-value=4321");
    assert_eq!(uri.read_pin().unwrap().unwrap().as_str(), "4321");
    assert!(parse("pkcs11:").read_pin().unwrap().is_none());
}
