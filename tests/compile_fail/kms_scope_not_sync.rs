// mongocrypt.h, mongocrypt_ctx_next_kms_ctx: only "Feeding multiple KMS requests is thread-safe"; next_kms_ctx
// walks the ctx's request list and is not. KmsScope is not Sync, so &KmsScope (and next_kms_ctx) stays on one thread.
use libmongocrypt::{Crypt, KeyEncryptionKey};

fn main() {
    let crypt = Crypt::builder().build().unwrap();
    let mut ctx =
        crypt.ctx().key_encryption_key(&KeyEncryptionKey::aws("aws", "us-east-1", "arn")).unwrap().datakey().unwrap();
    let mut scope = ctx.kms_scope().unwrap();
    let mut scope = &scope;
    std::thread::scope(|s| {
        s.spawn(move || scope.next_kms_ctx().is_some());
    });
}
