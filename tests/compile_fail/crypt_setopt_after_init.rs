// mongocrypt.h, every mongocrypt_setopt_*: "@pre mongocrypt_init has not been called on crypt". CryptBuilder::build
// calls mongocrypt_init and consumes the builder, so a setopt after it is a use after move.
use libmongocrypt::{Crypt, KmsProviders};

fn main() {
    let builder = Crypt::builder().kms_providers(&KmsProviders::new().local("local", &[0u8; 96])).unwrap();
    let _crypt = builder.build().unwrap();
    let _ = builder.bypass_query_analysis();
}
