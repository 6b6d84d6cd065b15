//! The copies of secrets the binding makes on the Rust heap are wiped before they are freed: the string copy of
//! `kms_provider_aws`'s secret access key (taken by libmongocrypt, refused by it, or refused by the binding), and the
//! BSON serialization of a `KmsProviders` or `Document` holding a local master key.
//!
//! This binary's global allocator zeroes every block it hands out and, while a test has armed it, scans every block
//! freed for the secrets. Its `realloc` is the default one, which always moves: like valgrind's allocator, it leaves
//! the old block behind on every growth, so a `Vec` that grows while a secret is written into it is caught.
//! libmongocrypt's own copies live on the C heap and are not scanned.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use libmongocrypt::bson::spec::BinarySubtype;
use libmongocrypt::bson::{doc, Binary};
use libmongocrypt::{Crypt, Error, KmsProviders};

/// A local master key no other data looks like.
const LOCAL_KEY: [u8; 96] = {
    let mut key = [0; 96];
    let mut i = 0;
    while i < 96 {
        key[i] = (i as u8).wrapping_mul(37).wrapping_add(0x5b) | 0x80;
        i += 1;
    }
    key
};
const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY-mongocrypt-rs-secret-copies";

struct Scanning;

static ARMED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Whether this thread armed the scan: frees on the other test threads (another test's documents, dropped
    /// outside its own scan) must not count. A const `Cell` has no destructor, so the allocator can always read it.
    static ARMED_HERE: Cell<bool> = const { Cell::new(false) };
}
static HITS: AtomicUsize = AtomicUsize::new(0);
static HIT_SIZE: AtomicUsize = AtomicUsize::new(0);

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.len() >= needle.len() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Whether `block` holds any 16-byte piece of the AWS secret or the local key (a piece: `CString`'s `Drop`, for
/// one, clears the first byte and no other).
fn holds_a_secret(block: &[u8]) -> bool {
    [AWS_SECRET.as_bytes(), &LOCAL_KEY].iter().any(|secret| secret.chunks_exact(16).any(|piece| contains(block, piece)))
}

// SAFETY: every method forwards to the system allocator with the caller's arguments; `dealloc` only reads the block
// it is about to free, which `alloc` zeroed, so every byte of it is initialised.
unsafe impl GlobalAlloc for Scanning {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded; zeroed, so that `dealloc` reads initialised bytes only.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARMED.load(Ordering::SeqCst) && ARMED_HERE.try_with(Cell::get).unwrap_or(false) {
            // SAFETY: `ptr` is a live block of `layout.size()` bytes, zeroed by `alloc` and written since.
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            if holds_a_secret(block) {
                HITS.fetch_add(1, Ordering::SeqCst);
                HIT_SIZE.store(layout.size(), Ordering::SeqCst);
            }
        }
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Scanning = Scanning;

/// One armed scan at a time: other tests' frees would count too.
static SCAN: Mutex<()> = Mutex::new(());

/// Runs `f` with the scan armed; returns how many freed blocks held a secret.
fn unwiped_frees(f: impl FnOnce()) -> usize {
    let _one_at_a_time = SCAN.lock().unwrap_or_else(|e| e.into_inner());
    HITS.store(0, Ordering::SeqCst);
    ARMED_HERE.set(true);
    ARMED.store(true, Ordering::SeqCst);
    f();
    ARMED.store(false, Ordering::SeqCst);
    ARMED_HERE.set(false);
    HITS.load(Ordering::SeqCst)
}

fn under_valgrind() -> bool {
    // valgrind's allocator replaces this one's system calls, and reading freed padding would be reported, so the
    // scan is left to native runs.
    let preloaded = common::under_valgrind();
    if preloaded {
        println!("SKIP: under valgrind");
    }
    preloaded
}

#[track_caller]
fn assert_no_unwiped_copy(what: &str, hits: usize) {
    assert_eq!(
        hits,
        0,
        "{what}: {hits} freed blocks held a secret (the last one {} bytes)",
        HIT_SIZE.load(Ordering::SeqCst)
    );
}

#[test]
fn the_scan_finds_an_unwiped_copy() {
    if under_valgrind() {
        return;
    }
    // The scan's own check: a copy freed unwiped is found, one wiped first is not.
    let hits = unwiped_frees(|| drop(std::hint::black_box(AWS_SECRET.as_bytes().to_vec())));
    assert_eq!(hits, 1);
    let hits = unwiped_frees(|| drop(std::hint::black_box(LOCAL_KEY[10..40].to_vec())));
    assert_eq!(hits, 1);
    let hits = unwiped_frees(|| {
        let mut copy = std::hint::black_box(LOCAL_KEY.to_vec());
        zeroize::Zeroize::zeroize(&mut copy);
    });
    assert_eq!(hits, 0);
}

#[test]
fn kms_provider_aws_wipes_its_copy_of_the_secret() {
    if under_valgrind() {
        return;
    }
    let hits = unwiped_frees(|| {
        let crypt = Crypt::builder().kms_provider_aws("AKIAEXAMPLE", AWS_SECRET).unwrap().build().unwrap();
        drop(crypt);
    });
    assert_no_unwiped_copy("accepted by libmongocrypt", hits);

    let hits = unwiped_frees(|| {
        // libmongocrypt refuses a second AWS provider.
        let builder = Crypt::builder().kms_provider_aws("AKIAEXAMPLE", "first").unwrap();
        let err = builder.kms_provider_aws("AKIAEXAMPLE", AWS_SECRET).err().expect("refused");
        assert!(matches!(err, Error::Client { .. }), "{err:?}");
    });
    assert_no_unwiped_copy("refused by libmongocrypt", hits);

    let hits = unwiped_frees(|| {
        // Built at its final capacity: a growing String would leave copies of its own.
        let mut with_nul = String::with_capacity(AWS_SECRET.len() + 5);
        with_nul.push_str(AWS_SECRET);
        with_nul.push_str("\0tail");
        let err = Crypt::builder().kms_provider_aws("AKIAEXAMPLE", &with_nul).err().expect("refused");
        assert!(matches!(&err, Error::InvalidArgument(m) if m.contains("NUL")), "{err:?}");
        // The test's own copy, wiped here so that only the binding's copies count.
        zeroize::Zeroize::zeroize(&mut { with_nul });
    });
    assert_no_unwiped_copy("refused by the binding (a NUL byte)", hits);

    let hits = unwiped_frees(|| {
        // The secret is fine but the key id has a NUL: the secret's copy is made first, and dropped.
        let err = Crypt::builder().kms_provider_aws(AWS_SECRET, "AKIA\0EXAMPLE").err().expect("refused");
        assert!(matches!(&err, Error::InvalidArgument(m) if m.contains("NUL")), "{err:?}");
    });
    assert_no_unwiped_copy("dropped when the other argument is refused", hits);
}

#[test]
fn kms_providers_serialization_leaves_no_copy_of_a_local_key() {
    if under_valgrind() {
        return;
    }
    let hits = unwiped_frees(|| {
        let providers = KmsProviders::new().local("local", &LOCAL_KEY).aws("aws", "AKIAEXAMPLE", AWS_SECRET, None);
        let crypt = Crypt::builder().kms_providers(&providers).unwrap().build().unwrap();
        drop(providers);
        drop(crypt);
    });
    assert_no_unwiped_copy("KmsProviders", hits);

    // A provider set twice under one name: the replaced credentials are wiped too.
    let hits = unwiped_frees(|| {
        let providers = KmsProviders::new().local("local", &LOCAL_KEY).local("local", &[7; 96]);
        drop(Crypt::builder().kms_providers(&providers).unwrap().build().unwrap());
    });
    assert_no_unwiped_copy("KmsProviders with a replaced provider", hits);

    // A plain Document goes through the same serializer; the document itself is the caller's to wipe.
    let document = doc! {
        "local": { "key": Binary { subtype: BinarySubtype::Generic, bytes: LOCAL_KEY.to_vec() } },
        "aws": { "accessKeyId": "AKIAEXAMPLE", "secretAccessKey": AWS_SECRET },
    };
    let hits = unwiped_frees(|| {
        let crypt = Crypt::builder().kms_providers(&document).unwrap().build().unwrap();
        drop(crypt);
    });
    assert_no_unwiped_copy("Document", hits);

    // Refused by libmongocrypt (a 95-byte local key): the serialized copy is wiped all the same.
    let hits = unwiped_frees(|| {
        let providers = KmsProviders::new().local("local", &LOCAL_KEY[..95]);
        let err = Crypt::builder().kms_providers(&providers).err().expect("refused");
        assert!(matches!(err, Error::Client { .. }), "{err:?}");
    });
    assert_no_unwiped_copy("KmsProviders refused", hits);
}
