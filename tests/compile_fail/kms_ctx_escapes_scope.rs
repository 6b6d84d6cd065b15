// mongocrypt.h, mongocrypt_ctx_next_kms_ctx: "The returned KMS handle does not outlive `ctx`", and it is only valid
// until mongocrypt_ctx_kms_done. A KmsCtx cannot be stored anywhere that outlives its KmsScope.
use libmongocrypt::{Crypt, KeyEncryptionKey, KmsCtx};

fn main() {
    let crypt = Crypt::builder().build().unwrap();
    let mut ctx =
        crypt.ctx().key_encryption_key(&KeyEncryptionKey::aws("aws", "us-east-1", "arn")).unwrap().datakey().unwrap();
    let mut pending: Vec<KmsCtx<'_>> = Vec::new();
    {
        let mut scope = ctx.kms_scope().unwrap();
        pending.extend(scope.kms_ctxs());
    }
    for kms in &mut pending {
        kms.feed(b"HTTP/1.1 200 OK\r\n").unwrap();
    }
}
