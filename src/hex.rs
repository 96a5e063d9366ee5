//! Lower-case hex, the one implementation: hashes, key ids, key files
//! and sealed bytes in text form (no extra dependency).

use zeroize::Zeroizing;

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lower-case hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0x0f) as usize] as char);
    }
    out
}

/// Lower-case hex of `bytes` in a buffer wiped on drop (for secrets).
pub(crate) fn encode_secret(bytes: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(bytes.len() * 2));
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize]);
        out.push(DIGITS[(b & 0x0f) as usize]);
    }
    out
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes exactly 32 bytes from 64 hex digits into `out`.
/// Returns false (leaving `out` partly written: the caller wipes it) on bad input.
pub fn decode_32(text: &[u8], out: &mut [u8; 32]) -> bool {
    if text.len() != 64 {
        return false;
    }
    for (i, pair) in text.chunks_exact(2).enumerate() {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(h), Some(l)) => out[i] = (h << 4) | l,
            _ => return false,
        }
    }
    true
}

/// Decodes an even number of hex digits (either case); `None` on bad input.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if bytes.len() % 2 != 0 {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|pair| Some((nibble(pair[0])? << 4) | nibble(pair[1])?))
        .collect()
}

/// Decodes exactly 64 hex digits into 32 bytes.
pub fn decode_32_owned(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    decode_32(text.as_bytes(), &mut out).then_some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips_and_refuses_bad_digits() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(super::encode(&bytes), "0001abff");
        assert_eq!(super::decode("0001ABff").unwrap(), bytes);
        assert!(super::decode("0g").is_none());
        assert!(super::decode("abc").is_none());
        assert_eq!(super::decode_32_owned(&"11".repeat(32)), Some([0x11; 32]));
        assert!(super::decode_32_owned(&"11".repeat(31)).is_none());
    }
}
