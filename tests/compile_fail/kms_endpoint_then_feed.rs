// mongocrypt.h, mongocrypt_kms_ctx_endpoint: "The storage for endpoint is not owned by the caller". The &str
// borrows the KmsCtx, and mongocrypt_kms_ctx_feed (&mut self) changes the handle, so it cannot be used across a feed.
use libmongocrypt::{Crypt, KeyEncryptionKey};

fn main() {
    let crypt = Crypt::builder().build().unwrap();
    let mut ctx =
        crypt.ctx().key_encryption_key(&KeyEncryptionKey::aws("aws", "us-east-1", "arn")).unwrap().datakey().unwrap();
    let mut scope = ctx.kms_scope().unwrap();
    let mut kms = scope.next_kms_ctx().unwrap();
    let endpoint = kms.endpoint().unwrap();
    kms.feed(b"HTTP/1.1 200 OK\r\n").unwrap();
    println!("{endpoint}");
}
