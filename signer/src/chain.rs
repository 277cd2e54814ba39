use x509_parser::prelude::*;

use crate::Certificate;

/// The maximum number of intermediate certificates Roles Anywhere accepts in `X-Amz-X509-Chain`.
pub const MAX_CHAIN_LEN: usize = 5;

/// Returns whether `issuer`'s key verifies the signature on `child` and `issuer`'s subject
/// is `child`'s issuer name. Name matching alone is not enough: a token or a bundle may
/// hold unrelated certificates with the same names.
pub fn issued_by(child: &Certificate, issuer: &Certificate) -> bool {
    let (Ok((_, child_x509)), Ok((_, issuer_x509))) = (
        X509Certificate::from_der(child.der()),
        X509Certificate::from_der(issuer.der()),
    ) else {
        return false;
    };
    child_x509.issuer() == issuer_x509.subject()
        && child_x509
            .verify_signature(Some(issuer_x509.public_key()))
            .is_ok()
}

/// Builds the intermediate chain for `leaf` from `candidates` in any order.
///
/// Starting at the leaf, each step takes the candidate that verifiably issued the previous
/// link. The walk stops at a self-signed certificate (a root, which the trust anchor
/// already contains, so it is not sent), when no candidate issued the last link, or after
/// [`MAX_CHAIN_LEN`] links. Candidates that are not on the path are left out, and so is
/// any copy of the leaf.
pub fn build_chain(leaf: &Certificate, candidates: &[Certificate]) -> Vec<Certificate> {
    let mut chain: Vec<Certificate> = Vec::new();
    let mut used = vec![false; candidates.len()];
    let mut current = leaf.clone();
    while chain.len() < MAX_CHAIN_LEN {
        let next = candidates.iter().enumerate().find(|(i, candidate)| {
            !used[*i] && candidate.der() != leaf.der() && issued_by(&current, candidate)
        });
        let Some((index, issuer)) = next else { break };
        used[index] = true;
        if issued_by(issuer, issuer) {
            break;
        }
        chain.push(issuer.clone());
        current = issuer.clone();
    }
    chain
}
