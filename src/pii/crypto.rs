//! XChaCha20-Poly1305 primitives shared by field sealing and key wrapping.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};

/// Nonce length of XChaCha20-Poly1305 (random nonces are safe at this size).
pub(super) const NONCE_LEN: usize = 24;
/// Poly1305 tag length.
pub(super) const TAG_LEN: usize = 16;

/// A fresh random nonce.
///
/// # Panics
/// If the operating system's random source fails.
pub(super) fn random_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut nonce).expect("operating system random source failed");
    nonce
}

/// Encrypts `msg`; returns ciphertext || tag.
pub(super) fn encrypt(key: &[u8; 32], nonce: &[u8; NONCE_LEN], aad: &[u8], msg: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key));
    cipher
        .encrypt(XNonce::from_slice(nonce), Payload { msg, aad })
        // Only fails for messages longer than about 256 GiB.
        .expect("XChaCha20-Poly1305 message too long")
}

/// Decrypts and authenticates ciphertext || tag; `None` on any failure.
pub(super) fn decrypt(key: &[u8; 32], nonce: &[u8], aad: &[u8], ct: &[u8]) -> Option<Vec<u8>> {
    if nonce.len() != NONCE_LEN || ct.len() < TAG_LEN {
        return None;
    }
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key));
    cipher
        .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad })
        .ok()
}
