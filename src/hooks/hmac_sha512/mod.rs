//! HMAC-SHA-512 for [`RustCrypto`](super::RustCrypto), written here for x86-64 CPUs with AVX2 and BMI2, ring's
//! otherwise.
//!
//! Why by hand: HMAC-SHA-512 is most of what an FLE1 operation on a large value costs, and no crate's SHA-512 is as
//! cheap as the OpenSSL 3.0 code libmongocrypt's native crypto uses (AVX2 message schedule for two blocks at once,
//! interleaved with BMI2 rounds). Instructions per 128-byte block under callgrind, HMAC-SHA-512 of 64 KiB: OpenSSL
//! 3.0 about 2,410; ring 0.17 and aws-lc-rs 1 about 2,950 (AVX schedule of one block, no BMI2); the `sha2` crate's
//! AVX2 backend (0.10 and 0.11) about 4,300; the AVX2 build here, which is what valgrind runs, about 2,330.
//!
//! Two builds (`x86::avx2`, `x86::avx512`) share the rounds (scalar, BMI2) and differ in the message schedule
//! (vector):
//! - AVX2: the schedule of two blocks at once in 256-bit registers, the next pair's interleaved with this pair's
//!   rounds.
//! - AVX-512, where the CPU has AVX-512F and AVX-512BW: four blocks at once in 512-bit registers, with one-instruction
//!   rotates (VPRORQ) and three-way XORs (VPTERNLOGQ), a quarter of the AVX2 build's schedule instructions per block.
//!
//! Against OpenSSL 3.0's HMAC-SHA-512 (a fresh `HMAC_CTX` per call, as libmongocrypt 1.7.2 makes one), on the Xeon
//! of BENCHMARKS.md, 64 KiB to 1 MiB: the AVX2 build 0.92 to 0.93 times its speed, the AVX-512 build 0.96 to 1.01
//! (SHA-512 of one message is a chain of dependent rounds; both run about as many per cycle as the machine allows,
//! and the build's speed moves by a few percent with code and stack layout). Valgrind hides AVX-512 from the
//! program, so callgrind counts the AVX2 build.
//!
//! It follows FIPS 180-4 (SHA-512) and RFC 2104 (HMAC); the tests compare both builds with ring's on every length
//! that matters and with RFC 4231's vectors.
//!
//! Every buffer of key material or message words this code keeps on the stack is wiped before it returns; what
//! lives in registers (the state, the schedule's last words) is not, nor any spill of it the compiler makes.

/// HMAC-SHA-512 of `input` under `key`.
pub(super) fn hmac_sha512(key: &[u8], input: &[u8]) -> [u8; 64] {
    #[cfg(target_arch = "x86_64")]
    if let Some(build) = x86::Build::detect() {
        return build.hmac(key, input);
    }
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA512, key), input);
    tag.as_ref().try_into().expect("HMAC-SHA-512 tags are 64 bytes")
}

#[cfg(target_arch = "x86_64")]
mod x86;

#[cfg(test)]
mod tests {
    use super::hmac_sha512;

    fn ring_hmac(key: &[u8], input: &[u8]) -> Vec<u8> {
        ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA512, key), input).as_ref().to_vec()
    }

    /// The tag of every build this CPU runs (AVX2, AVX-512), named; and of `hmac_sha512` itself.
    fn every_build(key: &[u8], input: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
        let mut tags = vec![("hmac_sha512", hmac_sha512(key, input).to_vec())];
        #[cfg(target_arch = "x86_64")]
        for build in super::x86::Build::all() {
            tags.push((build.name(), build.hmac(key, input).to_vec()));
        }
        tags
    }

    /// Deterministic bytes (xorshift64).
    fn bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_builds_this_cpu_runs() {
        // The equality tests below check each build of this file's code the CPU can run; say which ones those are.
        match super::x86::Build::all()[..] {
            [] => {
                eprintln!("this CPU lacks AVX2 or BMI2: hmac_sha512 is ring's here, the tests compare ring with itself")
            }
            [_] => eprintln!("this CPU lacks AVX-512F or AVX-512BW: only the AVX2 build is tested here"),
            _ => {}
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn rfc_4231_vectors() {
        let cases: [(&[u8], &[u8], &str); 2] = [
            (
                &[0x0b; 20],
                b"Hi There",
                "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde\
                 daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
            ),
            (
                b"Jefe",
                b"what do ya want for nothing?",
                "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
                 9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
            ),
        ];
        for (key, input, expected) in cases {
            for (build, tag) in every_build(key, input) {
                assert_eq!(hex(&tag), expected, "{build}");
            }
        }
    }

    #[test]
    fn equals_ring_at_every_length_around_the_block_and_padding_edges() {
        let data = bytes(9 * 128 + 40, 7);
        for key_len in [0, 1, 32, 64, 111, 112, 127, 128, 129, 200, 300] {
            let key = bytes(key_len, 11 + key_len as u64);
            for len in 0..=data.len() {
                let expected = ring_hmac(&key, &data[..len]);
                for (build, tag) in every_build(&key, &data[..len]) {
                    assert_eq!(tag, expected, "{build}: key {key_len} bytes, input {len} bytes");
                }
            }
        }
    }

    #[test]
    fn equals_ring_on_large_inputs() {
        let data = bytes((1 << 20) + 77, 3);
        let key = bytes(32, 5);
        for len in [1 << 16, (1 << 16) + 1, (1 << 16) + 200, 1 << 20, (1 << 20) + 77] {
            let expected = ring_hmac(&key, &data[..len]);
            for (build, tag) in every_build(&key, &data[..len]) {
                assert_eq!(tag, expected, "{build}: input {len} bytes");
            }
        }
    }
}
