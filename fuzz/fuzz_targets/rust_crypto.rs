//! The Rust crypto provider's hooks (`CryptBuilder::rust_crypto`; on nocrypto builds such as 1.21.0 it is what
//! libmongocrypt calls for every primitive): byte 0 picks explicit encryption of the rest as `{"v": ...}` document
//! with Deterministic or Random, or decryption of a ciphertext with the rest spliced into it; the result must
//! decrypt back to the input.
#![no_main]

#[path = "common.rs"]
mod common;

use bson::spec::BinarySubtype;
use bson::{doc, Binary, RawDocument};
use common::*;
use libfuzzer_sys::fuzz_target;
use libmongocrypt::Algorithm;

fuzz_target!(|data: &[u8]| {
    let [which, rest @ ..] = data else { return };
    let f = rust_crypto_fixture();
    match which % 3 {
        0 | 1 => {
            let algorithm = if which % 3 == 0 { Algorithm::Deterministic } else { Algorithm::Random };
            let value = bson::serialize_to_vec(&doc! { "v": String::from_utf8_lossy(rest).into_owned() }).unwrap();
            let Some(b) = ok(f.crypt.ctx().key_id(&f.key_id).and_then(|b| b.algorithm(&algorithm))) else { return };
            let Some(mut ctx) = ok(b.explicit_encrypt(&value[..])) else { return };
            let ciphertext = drive(&mut ctx, &f.key).expect("a string encrypts");
            let mut ctx = f.crypt.ctx().explicit_decrypt(&ciphertext).unwrap();
            let plain = drive(&mut ctx, &f.key).expect("its ciphertext decrypts");
            assert_eq!(plain.as_bytes(), RawDocument::from_bytes(&value).unwrap().as_bytes());
        }
        _ => {
            // The valid ciphertext with the fuzz input written over its tail (the IV, ciphertext and HMAC).
            let mut bytes = f.ciphertext.get_binary("v").unwrap().bytes.to_vec();
            let at = 17 + rest.first().map_or(0, |b| *b as usize % (bytes.len() - 17));
            let patch = rest.get(1..).unwrap_or(&[]);
            let n = patch.len().min(bytes.len() - at);
            bytes[at..at + n].copy_from_slice(&patch[..n]);
            let doc =
                bson::serialize_to_vec(&doc! { "v": Binary { subtype: BinarySubtype::Encrypted, bytes } }).unwrap();
            if let Some(mut ctx) = ok(f.crypt.ctx().explicit_decrypt(&doc[..])) {
                let _ = drive(&mut ctx, &f.key);
            }
        }
    }
});
