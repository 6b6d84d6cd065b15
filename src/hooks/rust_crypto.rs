//! The built-in primitives behind [`RustCrypto`](super::RustCrypto) and the defaults of
//! [`CryptoProvider`](super::CryptoProvider): AES modes from the RustCrypto crates, SHA-2, HMAC and RSA from ring,
//! randomness from getrandom. None is written here: this file only checks lengths and moves bytes.

use aes::Aes256;
use cbc::cipher::block_padding::NoPadding;
use cbc::cipher::inout::InOutBuf;
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyInit, KeyIvInit, StreamCipher};
use ring::rand::SystemRandom;
use ring::signature::{RsaKeyPair, RSA_PKCS1_SHA256};
use zeroize::Zeroize;

use super::types::{
    fixed, output_prefix, CipherOutput, CryptoError, AES_256_KEY_LEN, AES_BLOCK_LEN, HMAC_SHA_512_LEN, SHA_256_LEN,
};

pub(super) fn aes_256_cbc_encrypt(
    key: &[u8],
    iv: &[u8],
    input: &[u8],
    output: &mut [u8],
) -> Result<usize, CryptoError> {
    let (key, iv) = (fixed::<AES_256_KEY_LEN>("AES-256 key", key)?, fixed::<AES_BLOCK_LEN>("IV", iv)?);
    let output = output_prefix(output, input.len())?;
    cbc::Encryptor::<Aes256>::new(key.into(), iv.into())
        .encrypt_padded_b2b_mut::<NoPadding>(input, output)
        .map_err(|_| not_whole_blocks(input))?;
    Ok(input.len())
}

pub(super) fn aes_256_cbc_decrypt(
    key: &[u8],
    iv: &[u8],
    input: &[u8],
    output: &mut [u8],
) -> Result<usize, CryptoError> {
    let (key, iv) = (fixed::<AES_256_KEY_LEN>("AES-256 key", key)?, fixed::<AES_BLOCK_LEN>("IV", iv)?);
    let output = output_prefix(output, input.len())?;
    cbc::Decryptor::<Aes256>::new(key.into(), iv.into())
        .decrypt_padded_b2b_mut::<NoPadding>(input, output)
        .map_err(|_| not_whole_blocks(input))?;
    Ok(input.len())
}

pub(super) fn aes_256_cbc_encrypt_uninit(
    key: &[u8],
    iv: &[u8],
    input: &[u8],
    output: &mut CipherOutput<'_>,
) -> Result<usize, CryptoError> {
    let (key, iv) = (fixed::<AES_256_KEY_LEN>("AES-256 key", key)?, fixed::<AES_BLOCK_LEN>("IV", iv)?);
    let mut cipher = cbc::Encryptor::<Aes256>::new(key.into(), iv.into());
    through_stack_blocks(input, output, |blocks| cipher.encrypt_blocks_inout_mut(blocks))
}

pub(super) fn aes_256_cbc_decrypt_uninit(
    key: &[u8],
    iv: &[u8],
    input: &[u8],
    output: &mut CipherOutput<'_>,
) -> Result<usize, CryptoError> {
    let (key, iv) = (fixed::<AES_256_KEY_LEN>("AES-256 key", key)?, fixed::<AES_BLOCK_LEN>("IV", iv)?);
    let mut cipher = cbc::Decryptor::<Aes256>::new(key.into(), iv.into());
    through_stack_blocks(input, output, |blocks| cipher.decrypt_blocks_inout_mut(blocks))
}

pub(super) fn aes_256_ctr_encrypt(
    key: &[u8],
    iv: &[u8],
    input: &[u8],
    output: &mut [u8],
) -> Result<usize, CryptoError> {
    let (key, iv) = (fixed::<AES_256_KEY_LEN>("AES-256 key", key)?, fixed::<AES_BLOCK_LEN>("IV", iv)?);
    let output = output_prefix(output, input.len())?;
    // Ctr128BE increments the whole block as a big-endian 128-bit integer, as OpenSSL and libmongocrypt's own
    // ECB-based CTR do.
    ctr::Ctr128BE::<Aes256>::new(key.into(), iv.into())
        .apply_keystream_b2b(input, output)
        .map_err(|_| CryptoError::new("AES-256-CTR: input exceeds the counter's keystream"))?;
    Ok(input.len())
}

pub(super) fn aes_256_ctr_decrypt(
    key: &[u8],
    iv: &[u8],
    input: &[u8],
    output: &mut [u8],
) -> Result<usize, CryptoError> {
    aes_256_ctr_encrypt(key, iv, input, output)
}

pub(super) fn aes_256_ecb_encrypt(key: &[u8], input: &[u8], output: &mut [u8]) -> Result<usize, CryptoError> {
    let key = fixed::<AES_256_KEY_LEN>("AES-256 key", key)?;
    let output = output_prefix(output, input.len())?;
    ecb::Encryptor::<Aes256>::new(key.into())
        .encrypt_padded_b2b_mut::<NoPadding>(input, output)
        .map_err(|_| not_whole_blocks(input))?;
    Ok(input.len())
}

pub(super) fn hmac_sha_512(key: &[u8], input: &[u8], output: &mut [u8]) -> Result<(), CryptoError> {
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA512, key), input);
    output_prefix(output, HMAC_SHA_512_LEN)?.copy_from_slice(tag.as_ref());
    Ok(())
}

pub(super) fn hmac_sha_256(key: &[u8], input: &[u8], output: &mut [u8]) -> Result<(), CryptoError> {
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), input);
    output_prefix(output, tag.as_ref().len())?.copy_from_slice(tag.as_ref());
    Ok(())
}

pub(super) fn sha_256(input: &[u8], output: &mut [u8]) -> Result<(), CryptoError> {
    output_prefix(output, SHA_256_LEN)?.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, input).as_ref());
    Ok(())
}

pub(super) fn random(output: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(output).map_err(|e| CryptoError::new(format!("operating system random source failed: {e}")))
}

pub(super) fn sign_rsassa_pkcs1_v1_5_sha256(
    private_key: &[u8],
    input: &[u8],
    output: &mut [u8],
) -> Result<(), CryptoError> {
    // PKCS#8 first, then a bare PKCS#1 RSAPrivateKey (ring's `from_der`), as OpenSSL's native crypto accepts both.
    let key_pair = RsaKeyPair::from_pkcs8(private_key).or_else(|pkcs8| {
        RsaKeyPair::from_der(private_key)
            .map_err(|pkcs1| CryptoError::new(format!("invalid PKCS#8 RSA private key: {pkcs8}; as PKCS#1: {pkcs1}")))
    })?;
    let len = key_pair.public().modulus_len();
    // libmongocrypt sends all of `output` as the signature: a shorter one (a smaller key) would go out padded
    // with zeros, so only a key whose signature fills it is accepted.
    if len < output.len() {
        return Err(CryptoError::new(format!(
            "a {}-bit RSA key makes {len}-byte signatures; libmongocrypt expects {} bytes",
            len * 8,
            output.len()
        )));
    }
    let output = output_prefix(output, len)?;
    // The RNG only blinds the private-key operation; PKCS#1 v1.5 signatures themselves are deterministic.
    key_pair
        .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input, output)
        .map_err(|_| CryptoError::new("RSA signing failed"))
}

/// Runs a block cipher mode over `input` into `output` through a 1 KiB buffer on the stack: the `cbc` crate writes
/// only to initialised blocks, and zeroing all of `output` first would be one more pass over a large value than
/// copying the buffer out. The buffer is wiped afterwards (it held plaintext).
fn through_stack_blocks(
    input: &[u8],
    output: &mut CipherOutput<'_>,
    mut mode: impl FnMut(InOutBuf<'_, '_, cbc::cipher::Block<Aes256>>),
) -> Result<usize, CryptoError> {
    if !input.len().is_multiple_of(AES_BLOCK_LEN) {
        return Err(not_whole_blocks(input));
    }
    if output.capacity() < input.len() {
        return Err(CryptoError::new(format!(
            "output buffer too small: need {} bytes, have {}",
            input.len(),
            output.capacity()
        )));
    }
    let mut buffer = [0u8; 64 * AES_BLOCK_LEN];
    for input in input.chunks(buffer.len()) {
        let out = &mut buffer[..input.len()];
        let (blocks, _) = InOutBuf::new(input, out).expect("equal lengths").into_chunks();
        mode(blocks);
        output.append(out)?;
    }
    let used = input.len().min(buffer.len());
    buffer[..used].zeroize();
    Ok(input.len())
}

fn not_whole_blocks(input: &[u8]) -> CryptoError {
    CryptoError::new(format!("input length {} is not a multiple of the {AES_BLOCK_LEN}-byte AES block", input.len()))
}
