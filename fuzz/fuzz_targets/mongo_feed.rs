//! `Ctx::mongo_feed` in every NEED_MONGO_* state: byte 0 picks the state (listCollections result, mongocryptd
//! reply, key document), byte 1 how many times the rest is fed; the ctx is then driven to its end.
#![no_main]

#[path = "common.rs"]
mod common;

use bson::{doc, rawdoc};
use common::*;
use libfuzzer_sys::fuzz_target;
use libmongocrypt::{Algorithm, State};

fuzz_target!(|data: &[u8]| {
    let [which, times, input @ ..] = data else { return };
    let f = fixture();
    let cmd = bson::serialize_to_vec(&doc! { "find": "test", "filter": { "ssn": "457-55-5462" } }).unwrap();
    let ctx = match which % 3 {
        0 => f.crypt.ctx().encrypt("test", &cmd[..]),
        1 => f.crypt_with_schema.ctx().encrypt("test", &cmd[..]),
        _ => f
            .crypt
            .ctx()
            .key_id(&f.key_id)
            .and_then(|b| b.algorithm(&Algorithm::Deterministic))
            .and_then(|b| b.explicit_encrypt(&rawdoc! { "v": "457-55-5462" })),
    };
    let Some(mut ctx) = ok(ctx) else { return };
    // The key is cached after the first explicit encryption: then there is no NEED_MONGO_KEYS to feed.
    if !matches!(ctx.state(), State::NeedMongoCollinfo | State::NeedMongoMarkings | State::NeedMongoKeys) {
        return;
    }
    let _ = ok(ctx.mongo_op().map(drop));
    for _ in 0..1 + times % 3 {
        if ok(ctx.mongo_feed(input)).is_none() {
            break;
        }
    }
    let _ = ok(ctx.mongo_op().map(drop));
    if ok(ctx.mongo_done()).is_some() {
        let _ = drive(&mut ctx, &f.key);
    }
});
