// mongocrypt.h, mongocrypt_ctx_next_kms_ctx: "The returned KMS handle does not outlive `ctx`". A KmsCtx borrows
// the KmsScope it came from, so it cannot be used once the scope is gone.
use libmongocrypt::{Crypt, KeyEncryptionKey};

fn main() {
    let crypt = Crypt::builder().build().unwrap();
    let mut ctx =
        crypt.ctx().key_encryption_key(&KeyEncryptionKey::aws("aws", "us-east-1", "arn")).unwrap().datakey().unwrap();
    let kms;
    {
        let mut scope = ctx.kms_scope().unwrap();
        kms = scope.next_kms_ctx().unwrap();
    }
    let _ = kms.bytes_needed();
}
