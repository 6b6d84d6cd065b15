//! AES-256-CBC encryption for [`RustCrypto`](super::RustCrypto), written here for x86-64 CPUs with AES-NI; the
//! `cbc` crate's otherwise, and for decryption everywhere.
//!
//! Why by hand: CBC encryption is a chain, each block's 14 AES rounds waiting for the previous block's ciphertext.
//! The `cbc` crate keeps that chaining value in memory (stored and reloaded every block, `perf annotate`), which
//! adds a store-to-load forwarding to every link of the chain: large-value encryption ran at 0.92–0.93× native
//! (OpenSSL keeps it in a register). Here it stays in a register, and so do the round keys. Decryption has no
//! chain (its blocks decrypt in parallel) and the `cbc` crate's is as fast as OpenSSL's.
//!
//! FIPS 197 (AES-256, key expansion in 5.2) and SP 800-38A (CBC); the tests compare it with the `cbc` crate.

use super::{CipherOutput, CryptoError};

/// Encrypts `input` (whole blocks) under `key` with `iv`, appending to `output`; `None` where the CPU lacks AES-NI.
pub(super) fn encrypt(
    key: &[u8; 32],
    iv: &[u8; 16],
    input: &[u8],
    output: &mut CipherOutput<'_>,
) -> Option<Result<(), CryptoError>> {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("aes") {
        // SAFETY: not a mongocrypt.h rule: `aes_ni::encrypt` needs the CPU feature it is compiled for (and SSE2,
        // which every x86-64 CPU has), detected just above.
        return Some(unsafe { aes_ni::encrypt(key, iv, input, output) });
    }
    let _ = (key, iv, input, output);
    None
}

#[cfg(target_arch = "x86_64")]
mod aes_ni {
    use core::arch::x86_64::*;

    use super::{CipherOutput, CryptoError};

    #[target_feature(enable = "aes")]
    pub(super) fn encrypt(
        key: &[u8; 32],
        iv: &[u8; 16],
        input: &[u8],
        output: &mut CipherOutput<'_>,
    ) -> Result<(), CryptoError> {
        let mut keys = expand(key);
        let mut result = Ok(());
        // The chaining value is kept XORed with the first round key (the last round adds `keys[14] ^ keys[0]`,
        // the ciphertext is that XOR `keys[0]`), so that only one XOR, the plaintext's, waits for the previous
        // block: written as plaintext ^ key ^ chain, the compiler reassociated it to put both on the chain.
        let last = _mm_xor_si128(keys[14], keys[0]);
        let mut chain = _mm_xor_si128(load(iv), keys[0]);
        for block in input.chunks_exact(16) {
            let mut x = _mm_xor_si128(load(block.try_into().expect("16 bytes")), chain);
            for key in &keys[1..14] {
                x = _mm_aesenc_si128(x, *key);
            }
            chain = _mm_aesenclast_si128(x, last);
            let mut ciphertext = [0u8; 16];
            // SAFETY: not a mongocrypt.h rule: a 16-byte store into a 16-byte array.
            unsafe { _mm_storeu_si128(ciphertext.as_mut_ptr().cast(), _mm_xor_si128(chain, keys[0])) };
            if let Err(e) = output.append(&ciphertext) {
                result = Err(e);
                break;
            }
        }
        // The round keys are the key: wiped with volatile stores, which the compiler keeps.
        for key in &mut keys {
            // SAFETY: not a mongocrypt.h rule: `key` is an exclusive reference, valid and aligned for the write.
            unsafe { std::ptr::write_volatile(key, _mm_setzero_si128()) };
        }
        result
    }

    #[target_feature(enable = "sse2")]
    fn load(bytes: &[u8; 16]) -> __m128i {
        // SAFETY: not a mongocrypt.h rule: a 16-byte load from a 16-byte array.
        unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) }
    }

    /// The 15 round keys of AES-256 (FIPS 197 5.2): the key's two halves, then each pair from the two before it,
    /// the first of a pair through RotWord, SubWord and the round constant, the second through SubWord only.
    #[target_feature(enable = "aes")]
    fn expand(key: &[u8; 32]) -> [__m128i; 15] {
        let (low, high) = key.split_at(16);
        let mut k = [_mm_setzero_si128(); 15];
        k[0] = load(low.try_into().expect("16 bytes"));
        k[1] = load(high.try_into().expect("16 bytes"));
        // Each word of `previous` xored with the ones before it, then with `t` (one word, broadcast).
        let mix = |previous: __m128i, t: __m128i| {
            let mut x = previous;
            x = _mm_xor_si128(x, _mm_slli_si128::<4>(x));
            x = _mm_xor_si128(x, _mm_slli_si128::<4>(x));
            x = _mm_xor_si128(x, _mm_slli_si128::<4>(x));
            _mm_xor_si128(x, t)
        };
        // AESKEYGENASSIST's word 3 is RotWord(SubWord(last word)) ^ rcon, its word 2 SubWord(last word).
        macro_rules! first_of_pair {
            ($i:literal, $rcon:literal) => {
                k[$i] = mix(k[$i - 2], _mm_shuffle_epi32::<0xff>(_mm_aeskeygenassist_si128::<$rcon>(k[$i - 1])));
            };
        }
        macro_rules! second_of_pair {
            ($i:literal) => {
                k[$i] = mix(k[$i - 2], _mm_shuffle_epi32::<0xaa>(_mm_aeskeygenassist_si128::<0>(k[$i - 1])));
            };
        }
        first_of_pair!(2, 0x01);
        second_of_pair!(3);
        first_of_pair!(4, 0x02);
        second_of_pair!(5);
        first_of_pair!(6, 0x04);
        second_of_pair!(7);
        first_of_pair!(8, 0x08);
        second_of_pair!(9);
        first_of_pair!(10, 0x10);
        second_of_pair!(11);
        first_of_pair!(12, 0x20);
        second_of_pair!(13);
        first_of_pair!(14, 0x40);
        k
    }
}

#[cfg(test)]
mod tests {
    use std::mem::MaybeUninit;

    use cbc::cipher::block_padding::NoPadding;
    use cbc::cipher::{BlockEncryptMut, KeyIvInit};

    use super::{encrypt, CipherOutput};

    #[test]
    fn equals_the_cbc_crate() {
        // FIPS 197 C.3's key and SP 800-38A F.2.5's, then derived ones; lengths of 0 to 40 blocks.
        let mut key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let mut iv: [u8; 16] = std::array::from_fn(|i| 0xf0 | i as u8);
        for round in 0..8u8 {
            let input: Vec<u8> = (0..640).map(|i| (i as u8).wrapping_mul(31).wrapping_add(round)).collect();
            for blocks in 0..=40 {
                let input = &input[..16 * blocks];
                let mut buffer = vec![MaybeUninit::uninit(); input.len()];
                let mut output = CipherOutput::new(&mut buffer);
                let Some(result) = encrypt(&key, &iv, input, &mut output) else {
                    eprintln!("no AES-NI on this CPU: nothing to compare");
                    return;
                };
                result.unwrap();
                let mut expected = vec![0u8; input.len()];
                cbc::Encryptor::<aes::Aes256>::new(&key.into(), &iv.into())
                    .encrypt_padded_b2b_mut::<NoPadding>(input, &mut expected)
                    .unwrap();
                assert_eq!(output.written(), &expected[..], "round {round}, {blocks} blocks");
            }
            key = std::array::from_fn(|i| key[i].wrapping_mul(7).wrapping_add(round ^ i as u8));
            iv = std::array::from_fn(|i| iv[i].rotate_left(3) ^ key[i]);
        }
    }
}
