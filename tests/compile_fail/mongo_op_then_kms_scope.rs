// mongocrypt.h, mongocrypt_ctx_mongo_op / mongocrypt_ctx_next_kms_ctx: a KmsScope holds the ctx exclusively (its
// kms handles may be fed on other threads), so it cannot be opened while a mongo_op view still borrows the ctx.
use libmongocrypt::{Crypt, KeyEncryptionKey};

fn main() {
    let crypt = Crypt::builder().build().unwrap();
    let mut ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local")).unwrap().datakey().unwrap();
    let filter = ctx.mongo_op().unwrap();
    let scope = ctx.kms_scope().unwrap();
    println!("{filter:?}");
    scope.done().unwrap();
}
