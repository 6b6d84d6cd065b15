// mongocrypt.h, mongocrypt_setopt_crypto_hooks: the hooks are called from every thread that uses the mongocrypt_t
// ("Functions on a mongocrypt_t are thread safe"), so a CryptoProvider must be Send + Sync. One holding an Rc is
// rejected.
use std::rc::Rc;

use libmongocrypt::{CryptoError, CryptoProvider};

struct Counting(Rc<()>);

impl CryptoProvider for Counting {
    fn aes_256_cbc_encrypt(&self, _: &[u8], _: &[u8], _: &[u8], _: &mut [u8]) -> Result<usize, CryptoError> {
        Err(CryptoError::new("unimplemented"))
    }
    fn aes_256_cbc_decrypt(&self, _: &[u8], _: &[u8], _: &[u8], _: &mut [u8]) -> Result<usize, CryptoError> {
        Err(CryptoError::new("unimplemented"))
    }
    fn aes_256_ctr_encrypt(&self, _: &[u8], _: &[u8], _: &[u8], _: &mut [u8]) -> Result<usize, CryptoError> {
        Err(CryptoError::new("unimplemented"))
    }
    fn aes_256_ctr_decrypt(&self, _: &[u8], _: &[u8], _: &[u8], _: &mut [u8]) -> Result<usize, CryptoError> {
        Err(CryptoError::new("unimplemented"))
    }
    fn aes_256_ecb_encrypt(&self, _: &[u8], _: &[u8], _: &mut [u8]) -> Result<usize, CryptoError> {
        Err(CryptoError::new("unimplemented"))
    }
    fn hmac_sha_512(&self, _: &[u8], _: &[u8], _: &mut [u8]) -> Result<(), CryptoError> {
        Err(CryptoError::new("unimplemented"))
    }
    fn hmac_sha_256(&self, _: &[u8], _: &[u8], _: &mut [u8]) -> Result<(), CryptoError> {
        Err(CryptoError::new("unimplemented"))
    }
    fn sha_256(&self, _: &[u8], _: &mut [u8]) -> Result<(), CryptoError> {
        Err(CryptoError::new("unimplemented"))
    }
    fn random(&self, _: &mut [u8]) -> Result<(), CryptoError> {
        Err(CryptoError::new("unimplemented"))
    }
    fn sign_rsassa_pkcs1_v1_5_sha256(&self, _: &[u8], _: &[u8], _: &mut [u8]) -> Result<(), CryptoError> {
        Err(CryptoError::new("unimplemented"))
    }
}

fn main() {
    let _ = Counting(Rc::new(()));
}
