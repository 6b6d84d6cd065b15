// mongocrypt.h, mongocrypt_kms_ctx_message: the message is owned by the kms handle. The &[u8] borrows the KmsCtx,
// and mongocrypt_kms_ctx_feed (&mut self) changes the handle, so the message cannot be used across a feed.
use libmongocrypt::{Crypt, KeyEncryptionKey};

fn main() {
    let crypt = Crypt::builder().build().unwrap();
    let mut ctx =
        crypt.ctx().key_encryption_key(&KeyEncryptionKey::aws("aws", "us-east-1", "arn")).unwrap().datakey().unwrap();
    let mut scope = ctx.kms_scope().unwrap();
    let mut kms = scope.next_kms_ctx().unwrap();
    let message = kms.message().unwrap();
    kms.feed(b"HTTP/1.1 200 OK\r\n").unwrap();
    println!("{}", message.len());
}
