//! Explicit decryption of `{"v": Binary(6, data)}` (byte 0 = 6) or of the raw bytes as the whole document
//! (otherwise), with the local key fed when it is asked for; then automatic decryption of the same document.
#![no_main]

#[path = "common.rs"]
mod common;

use bson::spec::BinarySubtype;
use bson::{doc, Binary};
use common::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [first, rest @ ..] = data else { return };
    let f = fixture();
    let doc = if *first == 6 {
        bson::serialize_to_vec(&doc! { "v": Binary { subtype: BinarySubtype::Encrypted, bytes: rest.to_vec() } })
            .unwrap()
    } else {
        rest.to_vec()
    };
    if let Some(mut ctx) = ok(f.crypt.ctx().explicit_decrypt(&doc[..])) {
        let _ = drive(&mut ctx, &f.key);
    }
    if let Some(mut ctx) = ok(f.crypt.ctx().decrypt(&doc[..])) {
        let _ = drive(&mut ctx, &f.key);
    }
});
