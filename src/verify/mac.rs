//! The shared primitives every scheme is built from: HMAC computation,
//! signature decoding, constant-time matching against several keys, and the
//! timestamp parse + tolerance window. Keeping them in one place means the
//! security-relevant comparisons are written (and reviewed) once.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, KeyInit, Mac};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{Key, Rejection};

/// Standard base64 alphabet; padding optional on input, emitted on output.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The hash under the HMAC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algo {
    Sha1,
    Sha256,
    Sha512,
}

impl Algo {
    /// HMAC of the concatenation of `parts` (fed piecewise, no copy of the body).
    pub(super) fn mac(self, key: &[u8], parts: &[&[u8]]) -> Zeroizing<Vec<u8>> {
        fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Zeroizing<Vec<u8>> {
            // HMAC accepts keys of any length, so this cannot fail; an empty
            // tag would simply never match.
            let Ok(mut m) = <M as KeyInit>::new_from_slice(key) else {
                return Zeroizing::new(Vec::new());
            };
            for p in parts {
                m.update(p);
            }
            Zeroizing::new(m.finalize().into_bytes().to_vec())
        }
        match self {
            Algo::Sha1 => run::<Hmac<sha1::Sha1>>(key, parts),
            Algo::Sha256 => run::<Hmac<sha2::Sha256>>(key, parts),
            Algo::Sha512 => run::<Hmac<sha2::Sha512>>(key, parts),
        }
    }

    /// Length of the MAC in bytes.
    pub(super) fn len(self) -> usize {
        match self {
            Algo::Sha1 => 20,
            Algo::Sha256 => 32,
            Algo::Sha512 => 64,
        }
    }
}

/// How a MAC is written in a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Hex,
    Base64,
}

impl Encoding {
    pub(super) fn encode(self, bytes: &[u8]) -> String {
        match self {
            Encoding::Hex => hex::encode(bytes),
            Encoding::Base64 => BASE64.encode(bytes),
        }
    }

    /// Decode one provided signature (hex in either case, or base64).
    pub(super) fn decode(self, text: &[u8]) -> Result<Vec<u8>, &'static str> {
        if text.is_empty() {
            return Err("empty signature");
        }
        match self {
            Encoding::Hex => {
                // `decode_to_slice` rather than `decode`: the latter collects
                // through an iterator of `Result`s, ~100 instructions a byte.
                // An odd length is refused by `decode_to_slice` itself.
                let mut out = vec![0; text.len() / 2];
                hex::decode_to_slice(text, &mut out)
                    .map(|()| out)
                    .map_err(|_| "signature is not valid hex")
            }
            Encoding::Base64 => BASE64
                .decode(text)
                .map_err(|_| "signature is not valid base64"),
        }
    }
}

/// Decode base64 with the same lenient-padding engine (used for secrets).
pub(super) fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    BASE64.decode(text).ok()
}

/// Signatures found in a header, decoded to bytes, plus the first problem
/// seen with an entry (reported only when no entry was usable).
#[derive(Default)]
pub(super) struct Candidates {
    sigs: Vec<Vec<u8>>,
    problem: Option<&'static str>,
}

impl Candidates {
    /// Decode `text` and keep it when it has the MAC's length.
    pub(super) fn push(&mut self, text: &[u8], enc: Encoding, algo: Algo) {
        match enc.decode(text) {
            Ok(sig) if sig.len() == algo.len() => self.sigs.push(sig),
            Ok(_) => self.note("signature has the wrong length"),
            Err(e) => self.note(e),
        }
    }

    /// Remember why an entry was skipped (the first reason wins).
    pub(super) fn note(&mut self, problem: &'static str) {
        self.problem.get_or_insert(problem);
    }

    /// The usable signatures, or `Malformed` when there are none.
    pub(super) fn finish(self, header: &str) -> Result<Vec<Vec<u8>>, Rejection> {
        if self.sigs.is_empty() {
            return Err(Rejection::Malformed {
                header: header.to_string(),
                detail: self.problem.unwrap_or("no signature found").to_string(),
            });
        }
        Ok(self.sigs)
    }
}

/// Try every key against every signature, comparing in constant time.
/// Returns the index of the first key that produced one of the signatures.
pub(super) fn match_keys(
    keys: &[Key],
    key_bytes: fn(&Key) -> &[u8],
    algo: Algo,
    parts: &[&[u8]],
    sigs: &[Vec<u8>],
) -> Result<usize, Rejection> {
    for (i, key) in keys.iter().enumerate() {
        let expected = algo.mac(key_bytes(key), parts);
        // Check every signature without short-circuiting on the bytes.
        let mut hit = subtle::Choice::from(0);
        for sig in sigs {
            hit |= expected.as_slice().ct_eq(sig.as_slice());
        }
        if bool::from(hit) {
            return Ok(i);
        }
    }
    Err(Rejection::NoMatch)
}

/// Parse a unix-seconds timestamp: ASCII digits only (no sign, no fraction,
/// no spaces) and within `i64`.
pub(super) fn parse_timestamp(raw: &[u8], header: &str) -> Result<i64, Rejection> {
    let bad = |detail: &str| Rejection::Malformed {
        header: header.to_string(),
        detail: detail.to_string(),
    };
    if raw.is_empty() {
        return Err(bad("empty timestamp"));
    }
    if !raw.iter().all(u8::is_ascii_digit) {
        return Err(bad("timestamp must be whole unix seconds (digits only)"));
    }
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| bad("timestamp out of range"))
}

/// Accept `ts` when `|now - ts| <= tolerance` (both edges inclusive).
/// `Duration::MAX` effectively disables the check.
pub(super) fn check_window(ts: i64, now: i64, tolerance: Duration) -> Result<(), Rejection> {
    let skew = i128::from(now) - i128::from(ts);
    let tol = i128::from(tolerance.as_secs());
    if skew.abs() > tol {
        let skew_secs = i64::try_from(skew).unwrap_or(if skew < 0 { i64::MIN } else { i64::MAX });
        return Err(Rejection::OutsideTolerance { skew_secs });
    }
    Ok(())
}
