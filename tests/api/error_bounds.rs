//! Issue 23, bounded errors: an error that quotes a peer's bytes stays within [`MAX_ERROR_MESSAGE_LEN`] and states
//! the full length. libmongocrypt quotes a KMS reply body it cannot parse whole in its message (1.7.2 and 1.21.0
//! alike), so a 10 MB body used to make a 10 MB `Error`.

use crate::common;

use common::*;
use libmongocrypt::{Error, KeyEncryptionKey, State, MAX_ERROR_MESSAGE_LEN};

/// The full length a cut message states, if it says it was cut.
fn stated_length(message: &str) -> Option<usize> {
    let (_, tail) = message.rsplit_once("(message cut: ")?;
    tail.strip_suffix(" bytes in all)")?.parse().ok()
}

/// Every error of a data key request to AWS answered with HTTP 200 and `body`, a body that is not JSON: the kms
/// ctx's feed and status, `kms_done` and the ctx's status.
fn errors_for_aws_body(body: &[u8]) -> Vec<Error> {
    let crypt = crypt();
    let kek = KeyEncryptionKey::aws("aws", "us-east-1", "arn:aws:kms:us-east-1:579766882180:key/89fcc2c4");
    let mut ctx = crypt.ctx().key_encryption_key(&kek).unwrap().datakey().unwrap();
    assert_eq!(ctx.state(), State::NeedKms);
    let mut reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    reply.extend_from_slice(body);
    let mut errors = Vec::new();
    let mut scope = ctx.kms_scope().unwrap();
    {
        let mut kms = scope.next_kms_ctx().expect("a KMS request");
        // As much as it asks for at a time: it refuses more.
        errors.extend(feed_needed(&mut kms, &reply).err());
        errors.extend(kms.status().err());
    }
    errors.extend(scope.done().err());
    errors.extend(ctx.status().err());
    errors
}

#[test]
fn a_10_mb_kms_reply_body_makes_a_bounded_error() {
    // 'x' then 'é' (two bytes), so that the cut meets a multi-byte character on some line of its bytes.
    let mut body = b"not json ".to_vec();
    while body.len() < 10 << 20 {
        body.extend_from_slice("xé".as_bytes());
    }
    let errors = errors_for_aws_body(&body);
    assert!(!errors.is_empty(), "an unparsable reply was taken");
    let mut cut = 0;
    for error in &errors {
        let message = error.message();
        assert!(message.len() <= MAX_ERROR_MESSAGE_LEN, "{} bytes: {}", message.len(), &message[..200]);
        if let Some(total) = stated_length(&message) {
            // libmongocrypt's message quotes the whole body, with words around it.
            assert!(total > body.len(), "stated {total}, body {}", body.len());
            assert!(message.contains("xéxé"), "{message}");
            cut += 1;
        }
    }
    // At least the kms ctx's own error quotes the body.
    assert!(cut >= 1, "no error was cut: {errors:?}");
}

#[test]
fn a_short_kms_reply_body_is_quoted_whole() {
    let errors = errors_for_aws_body(b"not json at all");
    assert!(errors.iter().any(|e| e.message().contains("not json at all")), "{errors:?}");
    assert!(errors.iter().all(|e| stated_length(&e.message()).is_none()), "{errors:?}");
}
