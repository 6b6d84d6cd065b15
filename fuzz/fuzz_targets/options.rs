//! Every option setter and init that takes a document: byte 0 picks it, the rest is the document. Inits are driven
//! to their end with valid input.
#![no_main]

#[path = "common.rs"]
mod common;

use bson::rawdoc;
use common::*;
use libfuzzer_sys::fuzz_target;
use libmongocrypt::{Algorithm, Crypt, KeyEncryptionKey, State};

fuzz_target!(|data: &[u8]| {
    let [which, d @ ..] = data else { return };
    let f = fixture();
    let local = || f.crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local"));
    let by_id = || f.crypt.ctx().key_id(&f.key_id);
    let ctx = match which % 16 {
        0 => return drop(ok(Crypt::builder().kms_providers(d).and_then(|b| b.build()))),
        1 => {
            let b = Crypt::builder().kms_providers(&all_providers()).and_then(|b| b.schema_map(d));
            return drop(ok(b.and_then(|b| b.build())));
        }
        2 => {
            let b = Crypt::builder().kms_providers(&all_providers()).and_then(|b| b.encrypted_field_config_map(d));
            return drop(ok(b.and_then(|b| b.build())));
        }
        3 => f.crypt.ctx().key_encryption_key(d).and_then(|b| b.datakey()),
        4 => by_id()
            .and_then(|b| b.algorithm(&Algorithm::Range))
            .and_then(|b| b.contention_factor(0))
            .and_then(|b| b.algorithm_range(d))
            .and_then(|b| b.explicit_encrypt(&rawdoc! { "v": 5 })),
        5 => by_id()
            .and_then(|b| b.algorithm(&Algorithm::String))
            .and_then(|b| b.algorithm_text(d))
            .and_then(|b| b.explicit_encrypt(&rawdoc! { "v": "abc" })),
        6 => local().and_then(|b| b.key_material(d)).and_then(|b| b.datakey()),
        7 => by_id().and_then(|b| b.algorithm(&Algorithm::Deterministic)).and_then(|b| b.explicit_encrypt(d)),
        8 => by_id().and_then(|b| b.algorithm(&Algorithm::Random)).and_then(|b| b.explicit_encrypt(d)),
        9 => by_id()
            .and_then(|b| b.algorithm(&Algorithm::Range))
            .and_then(|b| b.contention_factor(0))
            .and_then(|b| b.explicit_encrypt_expression(d)),
        10 => f.crypt.ctx().encrypt("test", d),
        11 => f.crypt_with_schema.ctx().encrypt("test", d),
        12 => f.crypt.ctx().decrypt(d),
        13 => f.crypt.ctx().rewrap_many_datakey(d),
        14 => f.crypt.ctx().explicit_decrypt(d),
        _ => {
            // On-demand credentials: a document for NEED_KMS_CREDENTIALS.
            let Some(crypt) = ok(Crypt::builder()
                .kms_providers(&bson::doc! { "local": {} })
                .map(|b| b.use_need_kms_credentials_state())
                .and_then(|b| b.build()))
            else {
                return;
            };
            let Some(mut ctx) =
                ok(crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local")).and_then(|b| b.datakey()))
            else {
                return;
            };
            if ctx.state() == State::NeedKmsCredentials {
                let _ = ok(ctx.provide_kms_providers(d));
            }
            let _ = ok(ctx.finalize_owned());
            return;
        }
    };
    if let Some(mut ctx) = ok(ctx) {
        let _ = drive(&mut ctx, &f.key);
    }
});
