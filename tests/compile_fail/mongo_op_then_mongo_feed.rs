// mongocrypt.h, mongocrypt_ctx_mongo_op: op_bson is owned by the ctx. The view borrows the Ctx, and
// mongocrypt_ctx_mongo_feed (&mut self) moves the state machine on, so the view cannot be used across it.
use libmongocrypt::{Crypt, KeyEncryptionKey};

fn main() {
    let crypt = Crypt::builder().build().unwrap();
    let mut ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local")).unwrap().datakey().unwrap();
    let filter = ctx.mongo_op().unwrap();
    ctx.mongo_feed(&bson::rawdoc! {}).unwrap();
    println!("{filter:?}");
}
