// From libmongocrypt 1.12, mongocrypt_ctx_next_kms_ctx hands out a request again after mongocrypt_kms_ctx_fail, and
// "Feeding multiple KMS requests is thread-safe" covers distinct requests only. next_kms_ctx borrows the scope
// mutably, so a second KmsCtx cannot be fetched while the first is alive.
use libmongocrypt::{Crypt, KeyEncryptionKey, KmsProviders};

fn main() {
    let crypt = Crypt::builder()
        .kms_providers(&KmsProviders::new().aws("aws", "example", "example", None))
        .unwrap()
        .build()
        .unwrap();
    let mut ctx =
        crypt.ctx().key_encryption_key(&KeyEncryptionKey::aws("aws", "us-east-1", "arn")).unwrap().datakey().unwrap();
    let mut scope = ctx.kms_scope().unwrap();
    let mut first = scope.next_kms_ctx().unwrap();
    let mut second = scope.next_kms_ctx().unwrap();
    first.feed(b"HTTP/1.1 200 OK\r\n").unwrap();
    second.feed(b"HTTP/1.1 200 OK\r\n").unwrap();
}
