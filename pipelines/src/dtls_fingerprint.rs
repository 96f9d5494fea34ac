//! DTLS certificate fingerprints (RFC 8122, RFC 8842 §5): the pure part of the check
//! that the certificate a peer presents in the DTLS handshake is the one its session
//! description announced in `a=fingerprint`. webrtcbin 1.22 accepts any certificate,
//! so without this check anyone on the path of the media could hand over their own.
//!
//! The rule, per m-section that is not rejected (port 0): the fingerprints are the
//! section's own `a=fingerprint` lines, or else the session-level ones; of those, only
//! SHA-256, SHA-384 and SHA-512 count (older or unknown hash functions are ignored;
//! a section left with none is refused); the strongest of them is used, and the
//! certificate must match one fingerprint of that function (RFC 8842 §5).
//! [`crate::dtls_check`] applies it to a running `webrtcbin`.

use sha2::{Digest, Sha256, Sha384, Sha512};

/// A hash function accepted for certificate fingerprints, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HashFunction {
    /// `sha-256`.
    Sha256,
    /// `sha-384`.
    Sha384,
    /// `sha-512`.
    Sha512,
}

impl HashFunction {
    /// The SDP token (`hash-func` of RFC 8122), compared case-insensitively.
    fn from_token(token: &str) -> Option<Self> {
        match token.to_ascii_lowercase().as_str() {
            "sha-256" => Some(HashFunction::Sha256),
            "sha-384" => Some(HashFunction::Sha384),
            "sha-512" => Some(HashFunction::Sha512),
            _ => None,
        }
    }

    fn digest_len(self) -> usize {
        match self {
            HashFunction::Sha256 => 32,
            HashFunction::Sha384 => 48,
            HashFunction::Sha512 => 64,
        }
    }

    /// The digest of a DER-encoded certificate.
    pub fn digest(self, der: &[u8]) -> Vec<u8> {
        match self {
            HashFunction::Sha256 => Sha256::digest(der).to_vec(),
            HashFunction::Sha384 => Sha384::digest(der).to_vec(),
            HashFunction::Sha512 => Sha512::digest(der).to_vec(),
        }
    }
}

/// Why a session description's fingerprints cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FingerprintError {
    /// A media section (counted from 0) has no fingerprint with an accepted function.
    #[error(
        "m-section {0} has no a=fingerprint with sha-256, sha-384 or sha-512 (needed to \
         authenticate the DTLS certificate)"
    )]
    Missing(usize),
    /// An `a=fingerprint` line with an accepted function is not `XX:XX:…` of the
    /// function's length.
    #[error("malformed a=fingerprint line")]
    Malformed,
    /// No media section is in use.
    #[error("no media section in use")]
    NoMedia,
}

/// Why a certificate was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// The certificate does not match the announced fingerprints.
    #[error("the DTLS certificate does not match the session description's fingerprint")]
    Mismatch,
    /// What the transport reported is not a PEM certificate.
    #[error("the DTLS certificate is unreadable")]
    Unreadable,
}

/// The fingerprints a peer's certificate must match: for each m-section in use, the
/// strongest accepted hash function and the digests announced with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedFingerprints {
    sections: Vec<(HashFunction, Vec<Vec<u8>>)>,
}

/// `a=fingerprint` lines of one block of SDP lines: (function, digest); lines with a
/// function we do not accept are skipped.
fn fingerprints_in<'a>(
    lines: impl Iterator<Item = &'a str>,
) -> Result<Vec<(HashFunction, Vec<u8>)>, FingerprintError> {
    let mut out = Vec::new();
    for line in lines {
        let Some(value) = line.trim().strip_prefix("a=fingerprint:") else {
            continue;
        };
        let mut parts = value.split_whitespace();
        let (Some(token), Some(hex), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(FingerprintError::Malformed);
        };
        let Some(function) = HashFunction::from_token(token) else {
            continue;
        };
        let digest = hex
            .split(':')
            .map(|byte| match byte.len() {
                2 => u8::from_str_radix(byte, 16).map_err(|_| FingerprintError::Malformed),
                _ => Err(FingerprintError::Malformed),
            })
            .collect::<Result<Vec<u8>, _>>()?;
        if digest.len() != function.digest_len() {
            return Err(FingerprintError::Malformed);
        }
        out.push((function, digest));
    }
    Ok(out)
}

/// The fingerprints a session description pins, per the rule in the module docs.
pub fn pinned_fingerprints(sdp: &str) -> Result<PinnedFingerprints, FingerprintError> {
    let mut blocks: Vec<Vec<&str>> = vec![Vec::new()];
    for line in sdp.lines() {
        if line.starts_with("m=") {
            blocks.push(Vec::new());
        }
        if let Some(block) = blocks.last_mut() {
            block.push(line);
        }
    }
    let session = fingerprints_in(blocks[0].iter().copied())?;
    let mut sections = Vec::new();
    for (index, block) in blocks.iter().skip(1).enumerate() {
        let rejected = block
            .first()
            .and_then(|m| m.split_whitespace().nth(1))
            .is_some_and(|port| port == "0");
        if rejected {
            continue;
        }
        let own = fingerprints_in(block.iter().copied())?;
        let set = if own.is_empty() { &session } else { &own };
        let strongest = set
            .iter()
            .map(|(f, _)| *f)
            .max()
            .ok_or(FingerprintError::Missing(index))?;
        let digests = set
            .iter()
            .filter(|(f, _)| *f == strongest)
            .map(|(_, d)| d.clone())
            .collect();
        sections.push((strongest, digests));
    }
    if sections.is_empty() {
        return Err(FingerprintError::NoMedia);
    }
    sections.dedup();
    Ok(PinnedFingerprints { sections })
}

impl PinnedFingerprints {
    /// Does the DER certificate match every section's pinned fingerprints?
    pub fn matches_der(&self, der: &[u8]) -> bool {
        self.sections
            .iter()
            .all(|(function, digests)| digests.contains(&function.digest(der)))
    }

    /// Check the certificate a DTLS transport reports (PEM; its first certificate is
    /// the peer's own).
    pub fn check_pem(&self, pem_text: &str) -> Result<(), CertificateError> {
        let blocks = pem::parse_many(pem_text).map_err(|_| CertificateError::Unreadable)?;
        let der = blocks
            .iter()
            .find(|b| b.tag() == "CERTIFICATE")
            .ok_or(CertificateError::Unreadable)?
            .contents();
        if self.matches_der(der) {
            Ok(())
        } else {
            Err(CertificateError::Mismatch)
        }
    }
}

/// `XX:XX:…` (upper-case hex) of a digest, as SDP writes fingerprints.
pub fn render_fingerprint(digest: &[u8]) -> String {
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DER: &[u8] = b"not really DER, but any bytes hash the same way";

    fn line(function: &str, digest: &[u8]) -> String {
        format!(
            "a=fingerprint:{function} {}\r\n",
            render_fingerprint(digest)
        )
    }

    fn sdp(session: &str, media: &[&str]) -> String {
        let mut out = format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n{session}");
        for (i, m) in media.iter().enumerate() {
            out.push_str(&format!(
                "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:{i}\r\n{m}"
            ));
        }
        out
    }

    #[test]
    fn session_level_fingerprints_cover_media_without_their_own() {
        let ok = line("sha-256", &HashFunction::Sha256.digest(DER));
        let pins = pinned_fingerprints(&sdp(&ok, &["", ""])).unwrap();
        assert!(pins.matches_der(DER));
        assert!(!pins.matches_der(b"another certificate"));
    }

    #[test]
    fn every_section_in_use_must_match() {
        let ok = line("sha-256", &HashFunction::Sha256.digest(DER));
        let wrong = line("sha-256", &[0xab; 32]);
        let pins = pinned_fingerprints(&sdp("", &[&ok, &wrong])).unwrap();
        assert!(
            !pins.matches_der(DER),
            "the second section pins another cert"
        );
        let media_overrides = pinned_fingerprints(&sdp(&wrong, &[&ok, &ok])).unwrap();
        assert!(media_overrides.matches_der(DER), "media level wins");
        let rejected = sdp("", &[&ok, &wrong]).replacen(
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1",
            "m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:1",
            1,
        );
        assert!(
            pinned_fingerprints(&rejected).unwrap().matches_der(DER),
            "a rejected section (port 0) pins nothing"
        );
    }

    #[test]
    fn the_strongest_accepted_function_decides() {
        for (function, token) in [
            (HashFunction::Sha256, "sha-256"),
            (HashFunction::Sha384, "SHA-384"),
            (HashFunction::Sha512, "sha-512"),
        ] {
            let pins =
                pinned_fingerprints(&sdp(&line(token, &function.digest(DER)), &[""])).unwrap();
            assert!(pins.matches_der(DER), "{token}");
        }
        // A matching sha-256 does not help when the stronger sha-512 does not match.
        let both = format!(
            "{}{}",
            line("sha-256", &HashFunction::Sha256.digest(DER)),
            line("sha-512", &[7; 64])
        );
        assert!(!pinned_fingerprints(&sdp(&both, &[""]))
            .unwrap()
            .matches_der(DER));
        // One of several lines of the strongest function is enough.
        let several = format!(
            "{}{}",
            line("sha-256", &[1; 32]),
            line("sha-256", &HashFunction::Sha256.digest(DER))
        );
        assert!(pinned_fingerprints(&sdp(&several, &[""]))
            .unwrap()
            .matches_der(DER));
    }

    #[test]
    fn weak_missing_or_malformed_fingerprints_are_refused() {
        let sha1 =
            "a=fingerprint:sha-1 4A:AD:B9:B1:3F:82:18:3B:54:02:12:DF:3E:5D:49:6B:19:E5:7C:AB\r\n";
        assert_eq!(
            pinned_fingerprints(&sdp(sha1, &[""])),
            Err(FingerprintError::Missing(0))
        );
        assert_eq!(
            pinned_fingerprints(&sdp("", &[""])),
            Err(FingerprintError::Missing(0))
        );
        for bad in [
            "a=fingerprint:sha-256 AB:CD\r\n",
            "a=fingerprint:sha-256\r\n",
            &line("sha-256", &[1; 32]).replace("01:01", "0101"),
            &line("sha-256", &[1; 32]).replace("01", "ZZ"),
        ] {
            assert_eq!(
                pinned_fingerprints(&sdp(bad, &[""])),
                Err(FingerprintError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            pinned_fingerprints(&sdp("", &[])),
            Err(FingerprintError::NoMedia)
        );
    }

    #[test]
    fn pem_certificates_are_checked_by_their_der() {
        let pem_text = pem::encode(&pem::Pem::new("CERTIFICATE", DER.to_vec()));
        let pins = pinned_fingerprints(&sdp(
            &line("sha-256", &HashFunction::Sha256.digest(DER)),
            &[""],
        ))
        .unwrap();
        assert_eq!(pins.check_pem(&pem_text), Ok(()));
        let other = pem::encode(&pem::Pem::new("CERTIFICATE", b"other".to_vec()));
        assert_eq!(pins.check_pem(&other), Err(CertificateError::Mismatch));
        assert_eq!(pins.check_pem("junk"), Err(CertificateError::Unreadable));
        let key = pem::encode(&pem::Pem::new("PRIVATE KEY", DER.to_vec()));
        assert_eq!(pins.check_pem(&key), Err(CertificateError::Unreadable));
    }
}
