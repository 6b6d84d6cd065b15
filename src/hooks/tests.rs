//! Known answers of the built-in provider: NIST SP 800-38A for the AES modes, RFC 4231 for the HMACs, OpenSSL's
//! RSA signature, and the `hmac` and `sha2` crates as an implementation independent of ring's.

use std::mem::MaybeUninit;

use ring::signature::{KeyPair, RsaKeyPair, UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};

use super::{CipherOutput, CryptoError, CryptoProvider, RustCrypto};

pub(super) fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

// NIST SP 800-38A, appendix F: the AES-256 key and the four plaintext blocks shared by F.1.5, F.2.5 and F.5.5.
pub(super) const NIST_KEY: &str = "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4";
pub(super) const NIST_PLAINTEXT: &str = concat!(
    "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51",
    "30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
);

/// An RSA-2048 key, PKCS#8 DER (`openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 | openssl pkcs8
/// -topk8 -nocrypt -outform DER`). For tests only.
const RSA_PKCS8: &str = concat!(
    "308204bd020100300d06092a864886f70d0101010500048204a7308204a30201000282010100d723a8b071ce6607bbca32de220acbe0519e",
    "d2182fbfa296ad702f38085ccdcf99bc3fb3514a5b8f89f3817f7c0d52e71a5c37947ad07bce0dcc807ebdc781a65f1e9f4c4b8549836b1e",
    "a4eaac93ed7e4511e06ef82c128ebf891a8fe847c64591c656ec794d13bf99417c79ce77c1444f41005b7bfe4724ba7f08b6302956f535aa",
    "c07d923039739270fbae087678c47db530e029ddfce798adf434eba2f8c0106609514c0c4674d119db3687bda5ea6b476e7aec49dc38f11c",
    "e65f5519867b22d2f1f53df95a6fc620581b730e42c1fdecc76f264730662f714a280151961ceb3547eba5b72e7e0e5b8d11f80e70a72152",
    "2b29d1a68752ccd83c3e701d187b020301000102820100531d0911e55d96083dd1bf3616d3b1f0bec78b25e1e878611aaf00e6f6401818b0",
    "2d4c34b3de74a1eeeafe67e85e635d39cf4f7f92b4d16788e82cea09da35e9b6cca740fbda09ccf608b8309b2c68ef43b2c4d04a1b08ae52",
    "2b9ef1e28c3bfa6b7742e4877631ff6eaf206e14482a877fd0be59197d6231bbc4d0f24587eafa09e3673405456e5563a0b5392f9006dc69",
    "eff45c70438db70342f24cb40a1add17253759e06be9b6a9a0d9c5f1354f1dd92623c1b70acf9a7a9cffb6ac3015019c4b8daaabcd22c415",
    "5a85a3143f2b54375b60c4975f05afab3b03b895a19cb77202d8bdc0dbf812243eeb6523f7c4e7493347d0b4709fe8b8169f7262056d1102",
    "818100f3e663d61f4d0018ece8b494d86dcd97b040771ea04d3b533d1e7f6ce23147bcf8ec4bb4a4f60fe3979dae0209dc2fe0cee7ff1fc5",
    "2b3c6769e7dd5ad0086fd10fdfa5d5da62d983c7551f5edd56e50cb998e19ed225309e64e42272e23f6b7a589ecf717036a0109a70ea3ca7",
    "f3b3b81687ccfee5a3c1e2b0337b21baccbf1102818100e1cfffbcf733f9d7ae90d170d0354133469825a9e41f0d12f1e23da9f0019d71e9",
    "01aa5436a1df5cd47ab0f4b350d669237bcd88792194911cd7c199c3091e73fc7b4eee66914e471c6b252f87aa0dccf0bb893c70e9c3e51f",
    "e5e57a6eb8464c755a77e2866a27de62ef2782f804484a63fd9dc0825da83a7262090c503436cb028180387a7953f41b98922d0a160701b7",
    "2b8c9cbbd0d9beb523afbacf7d22719e87c632be4529a7a9733478bf82b3e6249ed1a81800f4126c58a879d5bf647018040c9d6864b688c3",
    "ab2ae0d5cd55e25b64def57b79839596171416b8dd614d12f2887a4d0c2c7097b5a9229a532388a0de551aa287cddecf74ee516f1a6c4d1d",
    "6c81028180248424510490cd2849bc75820ec96ddfc2dcbbca7b6f6207dc41bfc30962d979203afab65f9751ad8b56c3e2ee547637ce5b28",
    "e396e30d496226a9d219ae11d4a3d1b4f3ec7636f85cea1ebb4eeefb08572d9c85bfa4addf118775d294b10bfd354509fa01ce8cdff393c5",
    "09f2dd8e6b293c4c1463808dc1d5d970a923172e7d02818100a34d47291ef13554540ed95c25f082133e6cf7f9ebce3c804d64b25845fcbe",
    "1352971f6671ab7d8adcdc39fac72e7a48e4ce215d1ca6f60b178849289bc29561f1db3d48ec39f295404b3e78b6445481a4fec1c0cc0b0d",
    "2141d37ec7bb5e79b56f503f23f8ebd5719e01fc2b1583c7bb11990bc9aef16d0248be3c226ffd7490",
);
/// `openssl dgst -sha256 -sign` of "abc" with `RSA_PKCS8`.
const RSA_SIGNATURE_OF_ABC: &str = concat!(
    "a57569aaac79d29423b26ea070e29b648b6dcd6b48b728e7583df5995991188f7d0f7533b2f95693dfc88be7d555ca23a9709f43656737ab",
    "271c89aeeba78b511894676904f81dd3a44f631ca11f1dc8822856193066000f8684c3c67dc1c4a74b6922f10394b2e9dff288e27dfc94a0",
    "d0d37338265ea4f5a6e78b8c643d4d4044085724196504eea0e2bef2daecb7f39ea3d732f58998954346d086ea9bae8f82af8d960ff986ec",
    "a578d8c55ca57fa16796dc4ccc4e3d66741a043cbf1d6406948e74454f090c41ce69a164d52ce4cfa27ff42c1ba3ea996a123808b42745e9",
    "08406381b28e1b608dc5fbbba25bd058a5deb568f16d8e1bce0efd59185132ce",
);

type CipherFn = fn(&RustCrypto, &[u8], &[u8], &[u8], &mut [u8]) -> Result<usize, CryptoError>;

pub(super) fn run_cipher(op: CipherFn, key: &[u8], iv: &[u8], input: &[u8]) -> Vec<u8> {
    let mut output = vec![0; input.len()];
    assert_eq!(op(&RustCrypto, key, iv, input, &mut output).unwrap(), input.len());
    output
}

#[test]
fn aes_256_cbc_nist_f_2_5() {
    let (key, iv) = (hex(NIST_KEY), hex("000102030405060708090a0b0c0d0e0f"));
    let ciphertext = hex(concat!(
        "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d",
        "39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b",
    ));
    assert_eq!(run_cipher(RustCrypto::aes_256_cbc_encrypt, &key, &iv, &hex(NIST_PLAINTEXT)), ciphertext);
    assert_eq!(run_cipher(RustCrypto::aes_256_cbc_decrypt, &key, &iv, &ciphertext), hex(NIST_PLAINTEXT));
}

#[test]
fn aes_256_ctr_nist_f_5_5() {
    let (key, counter) = (hex(NIST_KEY), hex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"));
    let ciphertext = hex(concat!(
        "601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5",
        "2b0930daa23de94ce87017ba2d84988ddfc9c58db67aada613c2dd08457941a6",
    ));
    assert_eq!(run_cipher(RustCrypto::aes_256_ctr_encrypt, &key, &counter, &hex(NIST_PLAINTEXT)), ciphertext);
    assert_eq!(run_cipher(RustCrypto::aes_256_ctr_decrypt, &key, &counter, &ciphertext), hex(NIST_PLAINTEXT));
    // A stream cipher: a partial block works too.
    assert_eq!(run_cipher(RustCrypto::aes_256_ctr_encrypt, &key, &counter, &hex(NIST_PLAINTEXT)[..5]), ciphertext[..5]);
}

#[test]
fn aes_256_ctr_counter_wraps_across_all_128_bits() {
    // Expected from `openssl enc -aes-256-ctr -iv ffff...ff` over 32 zero bytes: after the all-ones block the
    // counter wraps to zero, as libmongocrypt's ECB-based CTR does too.
    let keystream = run_cipher(RustCrypto::aes_256_ctr_encrypt, &hex(NIST_KEY), &[0xff; 16], &[0; 32]);
    assert_eq!(keystream, hex("3b3c2921c85a24de9ac606ce6d1d60cce568f68194cf76d6174d4cc04310a854"));
}

#[test]
fn aes_256_ecb_nist_f_1_5() {
    let ciphertext = hex(concat!(
        "f3eed1bdb5d2a03c064b5a7e3db181f8591ccb10d410ed26dc5ba74a31362870",
        "b6ed21b99ca6f4f9f153e7b1beafed1d23304b7a39f9f3ff067d8d8f9e24ecc7",
    ));
    let mut output = [0; 64];
    assert_eq!(RustCrypto.aes_256_ecb_encrypt(&hex(NIST_KEY), &hex(NIST_PLAINTEXT), &mut output).unwrap(), 64);
    assert_eq!(output.to_vec(), ciphertext);
}

#[test]
fn hmac_rfc_4231_test_case_2() {
    let (key, data) = (b"Jefe", b"what do ya want for nothing?");
    let mut output = [0; 64];
    RustCrypto.hmac_sha_512(key, data, &mut output).unwrap();
    let expected = concat!(
        "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554",
        "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
    );
    assert_eq!(output.to_vec(), hex(expected));
    let mut output = [0; 32];
    RustCrypto.hmac_sha_256(key, data, &mut output).unwrap();
    assert_eq!(output.to_vec(), hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));
}

/// RFC 4231's test cases 1, 3, 4, 6 and 7 (case 2 is `hmac_rfc_4231_test_case_2`; case 5 is a truncated tag):
/// the key, the data, and the HMAC-SHA-256 and HMAC-SHA-512 tags.
#[test]
fn hmac_rfc_4231_test_cases() {
    let long_key = [0xaa; 131];
    let cases: [(&[u8], Vec<u8>, &str, &str); 5] = [
        (
            &[0x0b; 20],
            b"Hi There".to_vec(),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde\
             daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
        ),
        (
            &[0xaa; 20],
            vec![0xdd; 50],
            "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            "fa73b0089d56a284efb0f0756c890be9b1b5dbdd8ee81a3655f83e33b2279d39\
             bf3e848279a722c806b485a47e67c807b946a337bee8942674278859e13292fb",
        ),
        (
            &hex("0102030405060708090a0b0c0d0e0f10111213141516171819"),
            vec![0xcd; 50],
            "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            "b0ba465637458c6990e5a8c5f61d4af7e576d97ff94b872de76f8050361ee3db\
             a91ca5c11aa25eb4d679275cc5788063a5f19741120c4f2de2adebeb10a298dd",
        ),
        (
            &long_key,
            b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            "80b24263c7c1a3ebb71493c1dd7be8b49b46d1f41b4aeec1121b013783f8f352\
             6b56d037e05f2598bd0fd2215d6a1e5295e64f73f63f0aec8b915a985d786598",
        ),
        (
            &long_key,
            b"This is a test using a larger than block-size key and a larger than block-size data. The key needs \
              to be hashed before being used by the HMAC algorithm."
                .to_vec(),
            "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            "e37b6a775dc87dbaa4dfa9f96e5e3ffddebd71f8867289865df5a32d20cdc944\
             b6022cac3c4982b10d5eeb55c3e4de15134676fb6de0446065c97440fa8c6a58",
        ),
    ];
    for (i, (key, data, sha_256, sha_512)) in cases.into_iter().enumerate() {
        let (mut tag_256, mut tag_512) = ([0; 32], [0; 64]);
        RustCrypto.hmac_sha_256(key, &data, &mut tag_256).unwrap();
        RustCrypto.hmac_sha_512(key, &data, &mut tag_512).unwrap();
        assert_eq!(tag_256.to_vec(), hex(sha_256), "case {i}");
        assert_eq!(tag_512.to_vec(), hex(&sha_512.replace(' ', "")), "case {i}");
    }
}

/// Deterministic bytes (xorshift64).
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The provider's HMACs and SHA-256 against the `hmac` and `sha2` crates, an implementation independent of
/// ring's, at every input length around SHA-256's 64-byte and SHA-512's 128-byte blocks and their padding, and
/// at key lengths on both sides of each block (a longer key is hashed first).
#[test]
fn hmacs_and_sha_256_equal_the_hmac_and_sha2_crates() {
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256, Sha512};

    let data = bytes(3 * 128 + 40, 7);
    for key_len in [0, 1, 32, 63, 64, 65, 111, 112, 127, 128, 129, 300] {
        let key = bytes(key_len, 11 + key_len as u64);
        for len in 0..=data.len() {
            let input = &data[..len];
            let (mut tag_512, mut tag_256) = ([0; 64], [0; 32]);
            RustCrypto.hmac_sha_512(&key, input, &mut tag_512).unwrap();
            RustCrypto.hmac_sha_256(&key, input, &mut tag_256).unwrap();
            let mut expected_512 = <Hmac<Sha512> as Mac>::new_from_slice(&key).unwrap();
            expected_512.update(input);
            let mut expected_256 = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
            expected_256.update(input);
            assert_eq!(tag_512[..], expected_512.finalize().into_bytes()[..], "key {key_len}, input {len}");
            assert_eq!(tag_256[..], expected_256.finalize().into_bytes()[..], "key {key_len}, input {len}");
        }
    }
    let large = bytes((1 << 20) + 77, 3);
    let key = bytes(32, 5);
    for len in [1 << 16, (1 << 16) + 1, (1 << 16) + 200, (1 << 20) + 77] {
        let (mut tag, mut digest) = ([0; 64], [0; 32]);
        RustCrypto.hmac_sha_512(&key, &large[..len], &mut tag).unwrap();
        RustCrypto.sha_256(&large[..len], &mut digest).unwrap();
        let mut expected = <Hmac<Sha512> as Mac>::new_from_slice(&key).unwrap();
        expected.update(&large[..len]);
        assert_eq!(tag[..], expected.finalize().into_bytes()[..], "input {len}");
        assert_eq!(digest[..], Sha256::digest(&large[..len])[..], "input {len}");
    }
}

type UninitCipherFn = fn(&RustCrypto, &[u8], &[u8], &[u8], &mut CipherOutput<'_>) -> Result<usize, CryptoError>;

/// Runs one of the `_uninit` CBC methods into a fresh uninitialised buffer of `input`'s length.
fn run_cbc_uninit(op: UninitCipherFn, key: &[u8], iv: &[u8], input: &[u8]) -> Vec<u8> {
    let mut buffer = vec![MaybeUninit::uninit(); input.len()];
    let mut output = CipherOutput::new(&mut buffer);
    assert_eq!(op(&RustCrypto, key, iv, input, &mut output).unwrap(), input.len());
    output.written().to_vec()
}

#[test]
fn aes_256_cbc_uninit_nist_f_2_5() {
    let (key, iv) = (hex(NIST_KEY), hex("000102030405060708090a0b0c0d0e0f"));
    let ciphertext = hex(concat!(
        "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d",
        "39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b",
    ));
    assert_eq!(run_cbc_uninit(RustCrypto::aes_256_cbc_encrypt_uninit, &key, &iv, &hex(NIST_PLAINTEXT)), ciphertext);
    assert_eq!(run_cbc_uninit(RustCrypto::aes_256_cbc_decrypt_uninit, &key, &iv, &ciphertext), hex(NIST_PLAINTEXT));
}

/// CBC over inputs that cross the 1 KiB stack buffer of the `_uninit` path: each ciphertext block is the
/// NIST-checked ECB encryption of its plaintext block XORed with the previous ciphertext block (SP 800-38A 6.2),
/// the slice methods agree, and decryption inverts it.
#[test]
fn aes_256_cbc_chains_across_the_stack_buffer() {
    let (key, iv) = (bytes(32, 1), bytes(16, 2));
    for blocks in [0, 1, 63, 64, 65, 128, 200] {
        let input = bytes(16 * blocks, 3 + blocks as u64);
        let ciphertext = run_cbc_uninit(RustCrypto::aes_256_cbc_encrypt_uninit, &key, &iv, &input);
        let mut previous = iv.clone();
        for (plain, cipher) in input.chunks(16).zip(ciphertext.chunks(16)) {
            let xored: Vec<u8> = plain.iter().zip(&previous).map(|(p, c)| p ^ c).collect();
            let mut expected = [0; 16];
            RustCrypto.aes_256_ecb_encrypt(&key, &xored, &mut expected).unwrap();
            assert_eq!(cipher, expected, "{blocks} blocks");
            previous = cipher.to_vec();
        }
        assert_eq!(run_cipher(RustCrypto::aes_256_cbc_encrypt, &key, &iv, &input), ciphertext, "{blocks} blocks");
        assert_eq!(run_cbc_uninit(RustCrypto::aes_256_cbc_decrypt_uninit, &key, &iv, &ciphertext), input);
        assert_eq!(run_cipher(RustCrypto::aes_256_cbc_decrypt, &key, &iv, &ciphertext), input);
    }
}

#[test]
fn sha_256_of_abc() {
    let mut output = [0; 32];
    RustCrypto.sha_256(b"abc", &mut output).unwrap();
    assert_eq!(output.to_vec(), hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
}

#[test]
fn random_fills_different_bytes_each_call() {
    let (mut first, mut second) = ([0; 32], [0; 32]);
    RustCrypto.random(&mut first).unwrap();
    RustCrypto.random(&mut second).unwrap();
    assert_ne!(first, second);
    assert_ne!(first, [0; 32]);
}

#[test]
fn rsa_signature_verifies_and_matches_openssl() {
    let private_key = hex(RSA_PKCS8);
    let mut signature = [0; 256];
    RustCrypto.sign_rsassa_pkcs1_v1_5_sha256(&private_key, b"abc", &mut signature).unwrap();
    let public_key = RsaKeyPair::from_pkcs8(&private_key).unwrap().public_key().as_ref().to_vec();
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key).verify(b"abc", &signature).unwrap();
    assert_eq!(signature.to_vec(), hex(RSA_SIGNATURE_OF_ABC));
}

#[test]
fn wrong_lengths_are_errors() {
    let (key, iv, block) = ([0; 32], [0; 16], [0; 16]);
    let mut output = [0; 32];
    let cases = [
        (RustCrypto.aes_256_cbc_encrypt(&key[..31], &iv, &block, &mut output), "AES-256 key must be 32 bytes"),
        (RustCrypto.aes_256_cbc_decrypt(&key, &iv[..15], &block, &mut output), "IV must be 16 bytes"),
        (RustCrypto.aes_256_ctr_encrypt(&[0; 33], &iv, &block, &mut output), "AES-256 key must be 32 bytes"),
        (RustCrypto.aes_256_ctr_decrypt(&key, &[], &block, &mut output), "IV must be 16 bytes"),
        (RustCrypto.aes_256_ecb_encrypt(&[], &block, &mut output), "AES-256 key must be 32 bytes"),
        (RustCrypto.aes_256_cbc_encrypt(&key, &iv, &block[..15], &mut output), "not a multiple"),
        (RustCrypto.aes_256_ecb_encrypt(&key, &[0; 17], &mut output), "not a multiple"),
    ];
    for (result, message) in cases {
        assert!(result.unwrap_err().to_string().contains(message), "expected {message:?}");
    }
    let error = RustCrypto.sign_rsassa_pkcs1_v1_5_sha256(b"not a key", b"abc", &mut [0; 256]).unwrap_err();
    assert!(error.to_string().contains("invalid PKCS#8 RSA private key"), "{error}");
    // A signature shorter than the buffer libmongocrypt sends whole would go out zero-padded.
    let error = RustCrypto.sign_rsassa_pkcs1_v1_5_sha256(&hex(RSA_PKCS8), b"abc", &mut [0; 300]).unwrap_err();
    let expected = "a 2048-bit RSA key makes 256-byte signatures; libmongocrypt expects 300 bytes";
    assert_eq!(error.to_string(), expected);
}

#[test]
fn too_small_outputs_are_errors() {
    let (key, iv, input) = ([0; 32], [0; 16], [0; 32]);
    let mut output = [0; 31];
    let results = [
        RustCrypto.aes_256_cbc_encrypt(&key, &iv, &input, &mut output).map(drop),
        RustCrypto.aes_256_cbc_decrypt(&key, &iv, &input, &mut output).map(drop),
        RustCrypto.aes_256_ctr_encrypt(&key, &iv, &input, &mut output).map(drop),
        RustCrypto.aes_256_ctr_decrypt(&key, &iv, &input, &mut output).map(drop),
        RustCrypto.aes_256_ecb_encrypt(&key, &input, &mut output).map(drop),
        RustCrypto.hmac_sha_512(&key, &input, &mut [0; 63]),
        RustCrypto.hmac_sha_256(&key, &input, &mut output),
        RustCrypto.sha_256(&input, &mut output),
        RustCrypto.sign_rsassa_pkcs1_v1_5_sha256(&hex(RSA_PKCS8), &input, &mut [0; 255]),
    ];
    for result in results {
        assert!(result.unwrap_err().to_string().contains("output buffer too small"));
    }
}
