// mongocrypt.h, mongocrypt_ctx_next_kms_ctx: "Feeding multiple KMS requests is thread-safe" means distinct kms
// handles on distinct threads; one mongocrypt_kms_ctx_t is fed by one thread at a time. KmsCtx is Sync because its
// &self methods only read, but feed takes &mut self, so two threads cannot feed one request.
use libmongocrypt::{Crypt, KeyEncryptionKey};

fn main() {
    let crypt = Crypt::builder().build().unwrap();
    let mut ctx =
        crypt.ctx().key_encryption_key(&KeyEncryptionKey::aws("aws", "us-east-1", "arn")).unwrap().datakey().unwrap();
    let mut scope = ctx.kms_scope().unwrap();
    let mut kms = scope.next_kms_ctx().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| kms.feed(b"HTTP/1.1 200 OK\r\n"));
        s.spawn(|| kms.feed(b"HTTP/1.1 200 OK\r\n"));
    });
}
