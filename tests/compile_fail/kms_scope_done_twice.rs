// mongocrypt.h, mongocrypt_ctx_kms_done: ends the NEED_KMS state once; calling it again is a state error.
// KmsScope::done consumes the scope, so a second call is a use after move.
use libmongocrypt::{Crypt, KeyEncryptionKey};

fn main() {
    let crypt = Crypt::builder().build().unwrap();
    let mut ctx =
        crypt.ctx().key_encryption_key(&KeyEncryptionKey::aws("aws", "us-east-1", "arn")).unwrap().datakey().unwrap();
    let scope = ctx.kms_scope().unwrap();
    scope.done().unwrap();
    scope.done().unwrap();
}
