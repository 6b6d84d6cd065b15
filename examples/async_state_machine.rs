//! The `state_machine` example (a port of libmongocrypt's `test/example-state-machine.c`) driven by the async
//! runner, [`libmongocrypt::state_machine::run_async`], on tokio: the same four operations, the same mocked replies,
//! the same output. `tests/state_machine.rs` checks that its output equals the blocking example's.
//!
//! ```text
//! cargo run --example async_state_machine
//! ```
//!
//! A driver's [`AsyncStateMachineIo`] would await its MongoDB client and a TLS stream; this one answers from the
//! example's files, through the blocking example's [`PrintingIo`]. Ready-made async KMS I/O is
//! `libmongocrypt_kms::tls::TokioKmsTransport` (crate `libmongocrypt-kms`, feature `tokio`).

#[path = "state_machine.rs"]
#[allow(dead_code, reason = "the blocking example's main and helpers this example does not call")]
pub mod blocking;

use std::error::Error as StdError;
use std::io::Write;

use blocking::{data_dir, extjson, read_json, PrintingIo, DB, MARKINGS_HEADING};
use libmongocrypt::bson::{rawdoc, RawDocument, RawDocumentBuf};
use libmongocrypt::state_machine::{run_async, AsyncStateMachineIo, IoResult, StateMachineIo};
use libmongocrypt::{Algorithm, Crypt, KmsCtx, KmsProviders};
use libmongocrypt_driver::mongocryptd::{AsyncMongocryptdClient, MongocryptdClientSettings};

/// Each request is printed and answered as in the blocking example; a driver's futures would wait on the network.
impl<W: Write + Send> AsyncStateMachineIo for PrintingIo<W> {
    async fn list_collections(&self, db: Option<&str>, filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        StateMachineIo::list_collections(self, db, filter)
    }

    async fn mark_command(&self, command: &RawDocument) -> IoResult<RawDocumentBuf> {
        // The stand-in mongocryptd, through the async client: the markings go over the wire without blocking.
        self.print_request(MARKINGS_HEADING, command)?;
        let client = AsyncMongocryptdClient::new(MongocryptdClientSettings::new(self.mongocryptd_uri()), None)?;
        let reply = client.mark_command(DB, command).await?;
        self.print_reply(&reply)?;
        Ok(reply)
    }

    async fn find_keys(&self, filter: &RawDocument) -> IoResult<Vec<RawDocumentBuf>> {
        StateMachineIo::find_keys(self, filter)
    }

    async fn kms_request(&self, kms: &mut KmsCtx<'_>) -> IoResult<()> {
        StateMachineIo::kms_request(self, kms)
    }
}

/// Runs the four operations of the C example through [`run_async`], printing to `out` what the C program prints.
pub async fn run(out: &mut (impl Write + Send)) -> Result<(), Box<dyn StdError + Send + Sync>> {
    let dir = data_dir();
    let io = PrintingIo::new(&mut *out, dir.clone())?;
    let crypt = Crypt::builder().kms_providers(&KmsProviders::new().aws("aws", "example", "example", None))?.build()?;
    let final_bson = |doc: &RawDocument| -> IoResult<()> {
        io.print(format_args!("\nfinal bson is:\n{}\n", extjson::to_libbson_json(doc)?))?;
        Ok(())
    };

    io.print(format_args!("******* ENCRYPTION *******\n\n"))?;
    let mut ctx = crypt.ctx().encrypt(DB, &read_json(&dir.join("cmd.json"))?)?;
    let encrypted = run_async(&mut ctx, &io, tokio::time::sleep).await?.ok_or("encryption gave no result")?;
    final_bson(&encrypted)?;

    io.print(format_args!("\n******* DECRYPTION *******\n\n"))?;
    let mut ctx = crypt.ctx().decrypt(&encrypted)?;
    let decrypted = run_async(&mut ctx, &io, tokio::time::sleep).await?.ok_or("decryption gave no result")?;
    final_bson(&decrypted)?;

    io.print(format_args!("\n******* EXPLICIT ENCRYPTION *******\n"))?;
    let key_doc = read_json(&dir.join("key-document.json"))?;
    let key_id = key_doc.get_binary("_id")?.bytes;
    let mut ctx =
        crypt.ctx().key_id(key_id)?.algorithm(&Algorithm::Random)?.explicit_encrypt(&rawdoc! { "v": "hello" })?;
    let ciphertext = run_async(&mut ctx, &io, tokio::time::sleep).await?.ok_or("explicit encryption gave no result")?;
    final_bson(&ciphertext)?;

    io.print(format_args!("\n******* EXPLICIT DECRYPTION *******\n"))?;
    let mut ctx = crypt.ctx().explicit_decrypt(&ciphertext)?;
    let plaintext = run_async(&mut ctx, &io, tokio::time::sleep).await?.ok_or("explicit decryption gave no result")?;
    final_bson(&plaintext)?;
    Ok(())
}

#[tokio::main]
async fn main() {
    let mut stdout = std::io::stdout();
    if let Err(e) = run(&mut stdout).await {
        eprintln!("\ngot error: {e}");
        std::process::exit(1);
    }
}
