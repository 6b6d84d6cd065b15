// mongocrypt.h, mongocrypt_kms_ctx_message / _endpoint: the kms handle's data is "valid until the call of
// mongocrypt_ctx_kms_done". KmsScope::done consumes the scope, which every KmsCtx borrows, so no KmsCtx is usable
// after it.
use libmongocrypt::{Crypt, KeyEncryptionKey};

fn main() {
    let crypt = Crypt::builder().build().unwrap();
    let mut ctx =
        crypt.ctx().key_encryption_key(&KeyEncryptionKey::aws("aws", "us-east-1", "arn")).unwrap().datakey().unwrap();
    let mut scope = ctx.kms_scope().unwrap();
    let mut kms = scope.next_kms_ctx().unwrap();
    scope.done().unwrap();
    kms.feed(b"HTTP/1.1 200 OK\r\n").unwrap();
}
