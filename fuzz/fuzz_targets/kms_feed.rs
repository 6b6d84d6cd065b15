//! `KmsCtx::feed` for every provider: byte 0 picks the request (AWS encrypt and decrypt, Azure and GCP OAuth and
//! wrap, KMIP), byte 1 the size of the pieces the rest is fed in. Requests before the chosen one get valid replies.
#![no_main]

#[path = "common.rs"]
mod common;

use bson::doc;
use common::*;
use libfuzzer_sys::fuzz_target;
use libmongocrypt::State;

const OAUTH: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 68\r\n\r\n{\"token_type\":\"Bearer\",\"expires_in\":3599,\"access_token\":\"eyJ0eXAi\"}";

fuzz_target!(|data: &[u8]| {
    let [which, piece, reply @ ..] = data else { return };
    let f = fixture();
    let arn = "arn:aws:kms:us-east-1:579766882180:key/89fcc2c4-08b0-4bd9-9f25-e30687b580d0";
    let (kek, skip_oauth) = match which % 6 {
        0 | 1 => (doc! { "provider": "aws", "region": "us-east-1", "key": arn }, false),
        2 => (doc! { "provider": "azure", "keyVaultEndpoint": "example.vault.azure.net", "keyName": "k" }, false),
        3 => (doc! { "provider": "azure", "keyVaultEndpoint": "example.vault.azure.net", "keyName": "k" }, true),
        4 => (doc! { "provider": "gcp", "projectId": "p", "location": "global", "keyRing": "r", "keyName": "k" }, true),
        _ => (doc! { "provider": "kmip", "keyId": "1" }, false),
    };
    let Some(b) = ok(f.crypt.ctx().key_encryption_key(&kek)) else { return };
    let Some(mut ctx) = ok(b.datakey()) else { return };
    let piece = 1 + *piece as usize;
    for _ in 0..4 {
        if ctx.state() != State::NeedKms {
            break;
        }
        let Some(mut scope) = ok(ctx.kms_scope()) else { return };
        while let Some(mut kms) = scope.next_kms_ctx() {
            let oauth = kms.message().map(|m| String::from_utf8_lossy(m).contains("oauth")).unwrap_or(false);
            let bytes = if oauth && skip_oauth { OAUTH } else { reply };
            let _ = ok(kms.endpoint().map(drop));
            for chunk in bytes.chunks(piece) {
                if kms.bytes_needed() == 0 || ok(kms.feed(chunk)).is_none() {
                    break;
                }
            }
            let _ = ok(kms.status());
        }
        if ok(scope.done()).is_none() {
            break;
        }
    }
    let _ = ok(ctx.finalize_owned());
});
