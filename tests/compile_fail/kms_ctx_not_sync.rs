// mongocrypt.h, mongocrypt_ctx_next_kms_ctx: "Feeding multiple KMS requests is thread-safe" means distinct kms
// handles on distinct threads; one mongocrypt_kms_ctx_t is not thread-safe. KmsCtx is Send but not Sync, so &KmsCtx
// cannot be shared between threads.
use mongocrypt::{Crypt, KeyEncryptionKey};

fn main() {
    let crypt = Crypt::builder().build().unwrap();
    let mut ctx =
        crypt.ctx().key_encryption_key(&KeyEncryptionKey::aws("aws", "us-east-1", "arn")).unwrap().datakey().unwrap();
    let mut scope = ctx.kms_scope();
    let kms = scope.next_kms_ctx().unwrap();
    let kms = &kms;
    std::thread::scope(|s| {
        s.spawn(move || kms.bytes_needed());
        s.spawn(move || kms.bytes_needed());
    });
}
