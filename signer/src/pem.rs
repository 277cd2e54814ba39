//! A small PEM reader (RFC 7468): labels and DER payloads, nothing else.

use base64::Engine as _;
use zeroize::Zeroizing;

/// One PEM block: the label after `BEGIN` and the decoded payload. The payload is zeroized
/// on drop because it may be a private key.
#[derive(Debug)]
pub struct Block {
    pub label: String,
    pub der: Zeroizing<Vec<u8>>,
}

/// Parses every PEM block in `text`, in order. Text outside blocks is ignored, as RFC 7468
/// allows explanatory text. Returns an error naming the first block that fails to decode.
pub fn parse(text: &str) -> Result<Vec<Block>, String> {
    let mut blocks = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(label) = line
            .trim()
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let end = format!("-----END {label}-----");
        let mut body = Zeroizing::new(String::new());
        let mut closed = false;
        for inner in lines.by_ref() {
            let inner = inner.trim();
            if inner == end {
                closed = true;
                break;
            }
            if inner.contains(':') {
                // RFC 1421 headers such as Proc-Type mark an encrypted legacy key.
                return Err(format!(
                    "PEM block {label} has headers (an encrypted key?); decrypt it first"
                ));
            }
            body.push_str(inner);
        }
        if !closed {
            return Err(format!("PEM block {label} has no END line"));
        }
        let der = base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|e| format!("PEM block {label} is not valid base64: {e}"))?;
        blocks.push(Block {
            label: label.to_owned(),
            der: Zeroizing::new(der),
        });
    }
    Ok(blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_two_blocks_and_skips_text() {
        let text = "note\n-----BEGIN A-----\nAQID\n-----END A-----\n-----BEGIN B C-----\nBA==\n-----END B C-----\n";
        let blocks = parse(text).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].label, "A");
        assert_eq!(&blocks[0].der[..], &[1, 2, 3]);
        assert_eq!(blocks[1].label, "B C");
    }

    #[test]
    fn parse_rejects_unterminated_block() {
        assert!(parse("-----BEGIN A-----\nAQID\n").is_err());
    }
}
