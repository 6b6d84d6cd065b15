//! MANIFEST section 4, `kms-reply-parsing/`: every case of `kms-tests-aws.json` (from libmongocrypt's
//! `test-mongocrypt-kms-responses.c`), data-driven: the HTTP reply chunks are fed to the first KMS ctx of a datakey or
//! decrypt ctx, then `kms_done`; the expectation is "ok" or a substring of the kms-ctx or ctx error message.

mod common;

use common::*;
use libmongocrypt::bson::rawdoc;
use libmongocrypt::{Crypt, Ctx, KeyEncryptionKey, State};
use serde_json::Value;

const DIR: &str = "kms-reply-parsing";

/// A ctx in NEED_KMS of the kind the case names.
fn ctx_in_need_kms(crypt: &Crypt, kind: &str) -> Ctx {
    let ctx = match kind {
        "datakey" => crypt
            .ctx()
            .key_encryption_key(&KeyEncryptionKey::aws("aws", "example", "example"))
            .unwrap()
            .datakey()
            .unwrap(),
        "decrypt" => {
            let mut ctx = crypt.ctx().decrypt(&load_raw(&format!("{DIR}/encrypted-cmd.json"))).unwrap();
            assert_eq!(ctx.state(), State::NeedMongoKeys);
            ctx.mongo_feed(&load_raw(&format!("{DIR}/key-document-aws.json"))).unwrap();
            ctx.mongo_done().unwrap();
            ctx
        }
        other => panic!("unknown ctx kind {other:?}"),
    };
    assert_eq!(ctx.state(), State::NeedKms, "{kind}");
    ctx
}

/// Feeds `chunks` and ends the NEED_KMS state; returns every error message seen (kms ctx, then ctx).
fn run(ctx: &mut Ctx, chunks: &[Vec<u8>]) -> Vec<String> {
    let mut errors = Vec::new();
    let mut scope = ctx.kms_scope().unwrap();
    {
        let mut kms = scope.next_kms_ctx().expect("a KMS request");
        assert_eq!(kms.kms_provider(), "aws");
        for chunk in chunks {
            if let Err(e) = kms.feed(chunk) {
                errors.push(e.message());
                break;
            }
        }
        if let Err(e) = kms.status() {
            errors.push(e.message());
        }
    }
    if let Err(e) = scope.done() {
        errors.push(e.message());
    }
    if let Err(e) = ctx.status() {
        errors.push(e.message());
    }
    errors
}

/// Checks what the ok replies produced.
fn check_ok_output(kind: &str, ctx: &mut Ctx, chunks: &[Vec<u8>]) -> Result<(), String> {
    if ctx.state() != State::Ready {
        return Err(format!("state {:?} after an ok reply", ctx.state()));
    }
    let out = ctx.finalize_owned().map_err(|e| e.to_string())?;
    match kind {
        "decrypt" => {
            if out.as_bytes() != rawdoc! { "filter": { "ssn": "457-55-5462" }, "find": "test" }.as_bytes() {
                return Err(format!("decrypted {:?}", to_doc(&out)));
            }
        }
        _ => {
            let body = String::from_utf8(chunks.last().unwrap().clone()).unwrap();
            let json: Value = serde_json::from_str(&body).unwrap();
            let blob = b64(json["CiphertextBlob"].as_str().unwrap());
            if out.get_binary("keyMaterial").map_err(|e| e.to_string())?.bytes != blob.as_slice() {
                return Err("keyMaterial is not the CiphertextBlob".into());
            }
        }
    }
    Ok(())
}

#[test]
fn every_kms_reply_parsing_case() {
    let cases: Value = serde_json::from_str(&read_open(&format!("{DIR}/kms-tests-aws.json"))).unwrap();
    let cases = cases.as_array().expect("an array of cases");
    assert_eq!(cases.len(), 15, "MANIFEST: 15 cases");

    let (mut ran, mut skipped, mut failures) = (0, 0, Vec::new());
    for (i, case) in cases.iter().enumerate() {
        // Numbered from 0, as MANIFEST does (its #13 and #14 are the last two).
        let number = i;
        let description = case["description"].as_str().unwrap();
        let kinds: Vec<&str> = case["ctx"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
        if let Some(required) = case["requires_libmongocrypt"].as_str() {
            // Cases #13 and #14 test HTTP size validation added in 1.19.0 (MONGOCRYPT-910). On 1.7.2 case #13
            // SEGFAULTS inside mongocrypt_kms_ctx_feed, so it must never run on an older library.
            if !linked_at_least(required) {
                skip(
                    &format!("KMS case #{number} {description:?} ({} runs)", kinds.len()),
                    &format!("requires {required}"),
                );
                skipped += kinds.len();
                continue;
            }
        }
        let chunks: Vec<Vec<u8>> =
            case["http_reply"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().as_bytes().to_vec()).collect();
        let expect = match &case["expect"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts.iter().map(|p| p.as_str().unwrap()).collect(),
            other => panic!("case #{number}: bad expect {other:?}"),
        };
        for kind in kinds {
            ran += 1;
            let crypt = crypt();
            let mut ctx = ctx_in_need_kms(&crypt, kind);
            let errors = run(&mut ctx, &chunks);
            let outcome = if expect == "ok" {
                if errors.is_empty() {
                    check_ok_output(kind, &mut ctx, &chunks)
                } else {
                    Err(format!("expected ok, got errors {errors:?}"))
                }
            } else if !errors.iter().any(|m| m.contains(&expect)) {
                Err(format!("expected an error containing {expect:?}, got {errors:?}"))
            } else if ctx.state() != State::Error {
                Err(format!("error reported but the ctx is in {:?}", ctx.state()))
            } else {
                Ok(())
            };
            println!("case #{number} {kind} {description:?}: {outcome:?}");
            if let Err(why) = outcome {
                failures.push(format!("case #{number} ({kind}) {description:?}: {why}"));
            }
        }
    }
    assert!(failures.is_empty(), "{} failing runs:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(ran + skipped, 25, "MANIFEST: 25 runs");
    if linked_at_least("1.19.0") {
        assert_eq!(skipped, 0);
    } else {
        assert_eq!(skipped, 4, "cases #13 and #14, two runs each");
    }
}

#[test]
fn split_reply_is_reassembled() {
    // The successful decrypt reply of the auto example, fed one byte at a time, as bytes_needed allows.
    let reply = http_reply("csfle-auto-aws-example/kms-decrypt-reply.txt");
    let crypt = crypt();
    let mut ctx = ctx_in_need_kms(&crypt, "decrypt");
    let chunks: Vec<Vec<u8>> = reply.iter().map(|b| vec![*b]).collect();
    {
        let mut scope = ctx.kms_scope().unwrap();
        let mut kms = scope.next_kms_ctx().unwrap();
        let mut fed = 0;
        for chunk in &chunks {
            if kms.bytes_needed() == 0 {
                break;
            }
            kms.feed(chunk).unwrap();
            fed += 1;
        }
        assert_eq!(fed, reply.len(), "the whole reply is needed, nothing more");
        assert_eq!(kms.bytes_needed(), 0);
        scope.done().unwrap();
    }
    assert_eq!(ctx.state(), State::Ready);
    assert_bson_eq(ctx.finalize().unwrap(), &rawdoc! { "filter": { "ssn": "457-55-5462" }, "find": "test" });
}
