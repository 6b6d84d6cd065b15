//! HMAC-SHA-512 for [`RustCrypto`](super::RustCrypto), written here for x86-64 CPUs with AVX2 and BMI2, ring's
//! otherwise.
//!
//! Why by hand: HMAC-SHA-512 is most of what an FLE1 operation on a large value costs, and no crate's SHA-512 is as
//! cheap as the OpenSSL 3.0 code libmongocrypt's native crypto uses (AVX2 message schedule for two blocks at once,
//! interleaved with BMI2 rounds). Instructions per 128-byte block under callgrind, HMAC-SHA-512 of 64 KiB: OpenSSL
//! 3.0 about 2,410; ring 0.17 and aws-lc-rs 1 about 2,950 (AVX schedule of one block, no BMI2); the `sha2` crate's
//! AVX2 backend (0.10 and 0.11) about 4,300; this file about 2,390, at about OpenSSL's speed natively once the
//! schedule of the next pair of blocks runs interleaved with the rounds of this one (BENCHMARKS.md has the whole
//! operations).
//! It follows FIPS 180-4 (SHA-512) and RFC 2104 (HMAC); the tests compare it with ring's on every length that
//! matters and with RFC 4231's vectors.
//!
//! Every buffer of key material or message words this code keeps on the stack is wiped before it returns; what
//! lives in registers (the state, the schedule's last words) is not, nor any spill of it the compiler makes.

/// HMAC-SHA-512 of `input` under `key`.
pub(super) fn hmac_sha512(key: &[u8], input: &[u8]) -> [u8; 64] {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2")
        && std::is_x86_feature_detected!("bmi1")
        && std::is_x86_feature_detected!("bmi2")
    {
        // SAFETY: not a mongocrypt.h rule: `avx2_bmi2::hmac` needs the CPU features it is compiled for, and
        // all three were detected just above.
        return unsafe { avx2_bmi2::hmac(key, input) };
    }
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA512, key), input);
    tag.as_ref().try_into().expect("HMAC-SHA-512 tags are 64 bytes")
}

#[cfg(target_arch = "x86_64")]
mod avx2_bmi2 {
    use core::arch::x86_64::*;

    use zeroize::Zeroize;

    /// SHA-512's block.
    const BLOCK: usize = 128;

    /// FIPS 180-4 section 4.2.3: the first 64 bits of the fractional parts of the cube roots of the first 80 primes.
    #[rustfmt::skip]
    const K: [u64; 80] = [
        0x428a2f98d728ae22, 0x7137449123ef65cd, 0xb5c0fbcfec4d3b2f, 0xe9b5dba58189dbbc,
        0x3956c25bf348b538, 0x59f111f1b605d019, 0x923f82a4af194f9b, 0xab1c5ed5da6d8118,
        0xd807aa98a3030242, 0x12835b0145706fbe, 0x243185be4ee4b28c, 0x550c7dc3d5ffb4e2,
        0x72be5d74f27b896f, 0x80deb1fe3b1696b1, 0x9bdc06a725c71235, 0xc19bf174cf692694,
        0xe49b69c19ef14ad2, 0xefbe4786384f25e3, 0x0fc19dc68b8cd5b5, 0x240ca1cc77ac9c65,
        0x2de92c6f592b0275, 0x4a7484aa6ea6e483, 0x5cb0a9dcbd41fbd4, 0x76f988da831153b5,
        0x983e5152ee66dfab, 0xa831c66d2db43210, 0xb00327c898fb213f, 0xbf597fc7beef0ee4,
        0xc6e00bf33da88fc2, 0xd5a79147930aa725, 0x06ca6351e003826f, 0x142929670a0e6e70,
        0x27b70a8546d22ffc, 0x2e1b21385c26c926, 0x4d2c6dfc5ac42aed, 0x53380d139d95b3df,
        0x650a73548baf63de, 0x766a0abb3c77b2a8, 0x81c2c92e47edaee6, 0x92722c851482353b,
        0xa2bfe8a14cf10364, 0xa81a664bbc423001, 0xc24b8b70d0f89791, 0xc76c51a30654be30,
        0xd192e819d6ef5218, 0xd69906245565a910, 0xf40e35855771202a, 0x106aa07032bbd1b8,
        0x19a4c116b8d2d0c8, 0x1e376c085141ab53, 0x2748774cdf8eeb99, 0x34b0bcb5e19b48a8,
        0x391c0cb3c5c95a63, 0x4ed8aa4ae3418acb, 0x5b9cca4f7763e373, 0x682e6ff3d6b2b8a3,
        0x748f82ee5defb2fc, 0x78a5636f43172f60, 0x84c87814a1f0ab72, 0x8cc702081a6439ec,
        0x90befffa23631e28, 0xa4506cebde82bde9, 0xbef9a3f7b2c67915, 0xc67178f2e372532b,
        0xca273eceea26619c, 0xd186b8c721c0c207, 0xeada7dd6cde0eb1e, 0xf57d4f7fee6ed178,
        0x06f067aa72176fba, 0x0a637dc5a2c898a6, 0x113f9804bef90dae, 0x1b710b35131c471b,
        0x28db77f523047d84, 0x32caab7b40c72493, 0x3c9ebe0a15c9bebc, 0x431d67c49c100d4c,
        0x4cc5d4becb3e42b6, 0x597f299cfc657e2a, 0x5fcb6fab3ad6faec, 0x6c44198c4a475817,
    ];

    /// FIPS 180-4 section 5.3.5: the first 64 bits of the fractional parts of the square roots of the first 8
    /// primes.
    const H0: [u64; 8] = [
        0x6a09e667f3bcc908,
        0xbb67ae8584caa73b,
        0x3c6ef372fe94f82b,
        0xa54ff53a5f1d36f1,
        0x510e527fade682d1,
        0x9b05688c2b3e6c1f,
        0x1f83d9abfb41bd6b,
        0x5be0cd19137e2179,
    ];

    /// Message words plus round constants, `W[t] + K[t]`, of one block.
    type Wk = [u64; 80];

    /// HMAC-SHA-512 (RFC 2104 with SHA-512's 128-byte block).
    #[target_feature(enable = "avx2,bmi1,bmi2")]
    pub(super) fn hmac(key: &[u8], input: &[u8]) -> [u8; 64] {
        let mut wk = [[[0u64; 80]; 2]; 2];
        let mut key_block = [0u8; BLOCK];
        if key.len() > BLOCK {
            let mut state = H0;
            hash_into(&mut state, None, key, &mut wk);
            key_block[..64].copy_from_slice(&digest_bytes(&state));
            state.zeroize();
        } else {
            key_block[..key.len()].copy_from_slice(key);
        }
        let mut pad = key_block.map(|b| b ^ 0x36);
        let mut inner = H0;
        hash_into(&mut inner, Some(&pad), input, &mut wk);
        pad = key_block.map(|b| b ^ 0x5c);
        let mut inner_digest = digest_bytes(&inner);
        let mut outer = H0;
        hash_into(&mut outer, Some(&pad), &inner_digest, &mut wk);
        let tag = digest_bytes(&outer);
        wipe(&mut key_block);
        wipe(&mut pad);
        inner.zeroize();
        wipe(&mut inner_digest);
        outer.zeroize();
        wk.zeroize();
        tag
    }

    /// Wipes a copy of secret bytes (the `zeroize` crate's volatile writes), eight at a time where aligned: a byte
    /// at a time, the buffers here would cost as much to wipe as a short value costs to hash.
    fn wipe(bytes: &mut [u8]) {
        // SAFETY: not a mongocrypt.h rule: every bit pattern is a valid u64 and a valid u8, so viewing the aligned
        // middle of the bytes as u64s is sound.
        let (head, middle, tail) = unsafe { bytes.align_to_mut::<u64>() };
        head.zeroize();
        middle.zeroize();
        tail.zeroize();
    }

    fn digest_bytes(state: &[u64; 8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        for (o, s) in out.chunks_exact_mut(8).zip(state) {
            o.copy_from_slice(&s.to_be_bytes());
        }
        out
    }

    /// Runs SHA-512 over `first` (if any), then `message`, then their padding.
    ///
    /// Blocks go by pairs (see [`schedule`]), pipelined: the rounds of one pair run interleaved with the schedule
    /// of the next ([`rounds_and_steps`]), so that the vector unit works on the next pair while the scalar rounds
    /// run, as OpenSSL's assembly does; `wk` holds the schedules of both. The pairs come from three places: `start`
    /// (`first` and the message's first block, copied), the message's blocks in place (an even count), and `end`
    /// (what is left: `first` if the message has no whole block, an odd block, the last bytes and the padding).
    #[target_feature(enable = "avx2,bmi1,bmi2")]
    fn hash_into(state: &mut [u64; 8], first: Option<&[u8; BLOCK]>, message: &[u8], wk: &mut [[Wk; 2]; 2]) {
        let (blocks, rest) = message.as_chunks::<BLOCK>();
        let mut start = [[0u8; BLOCK]; 2];
        let (start_blocks, body) = match (first, blocks.split_first()) {
            (Some(first), Some((block, body))) => {
                start = [*first, *block];
                (2, body)
            }
            _ => (0, blocks),
        };
        let (bulk, odd) = body.split_at(body.len() & !1);
        // 0x80, zeros, then the length in bits as a 128-bit big-endian number: at most 128 + 127 + 17 bytes with
        // what precedes it, so one to three blocks.
        let mut end_buffer = [[0u8; BLOCK]; 3];
        let flat = end_buffer.as_flattened_mut();
        let mut used = 0;
        for part in [first.filter(|_| start_blocks == 0).map_or(&[][..], |f| &f[..]), odd.as_flattened(), rest] {
            flat[used..used + part.len()].copy_from_slice(part);
            used += part.len();
        }
        flat[used] = 0x80;
        let end_blocks = (used + 1 + 16).div_ceil(BLOCK);
        let bits = ((usize::from(first.is_some()) * BLOCK + message.len()) as u128) << 3;
        flat[end_blocks * BLOCK - 16..end_blocks * BLOCK].copy_from_slice(&bits.to_be_bytes());
        let end = &end_buffer[..end_blocks];
        let total = start_blocks + bulk.len() + end_blocks;
        // Pair `i` (blocks 2i and 2i + 1), the last block paired with itself when the count is odd.
        let pair = |i: usize| {
            let i = 2 * i;
            if i < start_blocks {
                return (&start[0], &start[1]);
            }
            match bulk.get(i - start_blocks..i - start_blocks + 2) {
                Some([b0, b1]) => (b0, b1),
                _ => {
                    let i = i - start_blocks - bulk.len();
                    (&end[i], &end[(i + 1).min(end.len() - 1)])
                }
            }
        };
        let (mut current, mut next) = {
            let [current, next] = wk;
            (current, next)
        };
        let mut x = [_mm256_setzero_si256(); 8];
        let (b0, b1) = pair(0);
        schedule(b0, b1, current);
        let mut i = 0;
        while 2 * i + 2 < total {
            let following = pair(i + 1);
            rounds_and_steps::<0>(state, &current[0], &mut x, following, next);
            rounds_and_steps::<1>(state, &current[1], &mut x, following, next);
            std::mem::swap(&mut current, &mut next);
            i += 1;
        }
        // The last pair (or lone block): nothing to schedule meanwhile.
        rounds(state, &current[0]);
        if 2 * i + 1 < total {
            rounds(state, &current[1]);
        }
        wipe(&mut start.as_flattened_mut()[..start_blocks * BLOCK]);
        wipe(&mut end_buffer.as_flattened_mut()[..end_blocks * BLOCK]);
    }

    /// The message schedule of two blocks at once: each 256-bit register holds two consecutive words of `b0` in
    /// its low half and the same two of `b1` in its high half, so one step makes four words.
    #[target_feature(enable = "avx2,bmi1,bmi2")]
    fn schedule(b0: &[u8; BLOCK], b1: &[u8; BLOCK], wk: &mut [Wk; 2]) {
        let mut x = [_mm256_setzero_si256(); 8];
        macro_rules! eight_steps {
            ($($j:literal)*) => {$(
                step($j, &mut x, (b0, b1), wk);
                step($j + 1, &mut x, (b0, b1), wk);
                step($j + 2, &mut x, (b0, b1), wk);
                step($j + 3, &mut x, (b0, b1), wk);
                step($j + 4, &mut x, (b0, b1), wk);
                step($j + 5, &mut x, (b0, b1), wk);
                step($j + 6, &mut x, (b0, b1), wk);
                step($j + 7, &mut x, (b0, b1), wk);
            )*};
        }
        eight_steps!(0 8 16 24 32);
    }

    /// Step `j` (0 to 39) of the schedule of `blocks`: words 2j and 2j + 1 of both, into `x[j % 8]` and, plus their
    /// round constants, into `wk`. Steps 0 to 7 load the blocks' words; from 8 on, W[t] = σ1(W[t-2]) + W[t-7] +
    /// σ0(W[t-15]) + W[t-16], where `x[j % 8]` holds words 2j-16 and 2j-15 before the step. Always inlined where
    /// `j` is a constant, so that `x` stays in registers.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn step(j: usize, x: &mut [__m256i; 8], (b0, b1): (&[u8; BLOCK], &[u8; BLOCK]), wk: &mut [Wk; 2]) {
        let w = if j < 8 {
            // Byte order: big-endian words, swapped within each 64-bit lane.
            let swap = _mm256_setr_epi8(
                7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10,
                9, 8,
            );
            assert!(16 * j + 16 <= BLOCK);
            // SAFETY: not a mongocrypt.h rule: both loads read 16 bytes at 16 * j of 128-byte blocks (asserted).
            let pair = unsafe { _mm256_loadu2_m128i(b1.as_ptr().add(16 * j).cast(), b0.as_ptr().add(16 * j).cast()) };
            _mm256_shuffle_epi8(pair, swap)
        } else {
            let w16 = x[j % 8]; // words 2j-16, 2j-15
            let w15 = _mm256_alignr_epi8::<8>(x[(j + 1) % 8], w16); // 2j-15, 2j-14
            let w7 = _mm256_alignr_epi8::<8>(x[(j + 5) % 8], x[(j + 4) % 8]); // 2j-7, 2j-6
            let w2 = x[(j + 7) % 8]; // 2j-2, 2j-1
            _mm256_add_epi64(_mm256_add_epi64(w16, small_sigma0(w15)), _mm256_add_epi64(w7, small_sigma1(w2)))
        };
        x[j % 8] = w;
        let [wk0, wk1] = wk;
        store(j, w, wk0, wk1);
    }

    /// Stores words `2j` and `2j + 1` of both blocks, plus their round constants.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn store(j: usize, w: __m256i, wk0: &mut Wk, wk1: &mut Wk) {
        let kk = _mm256_set_epi64x(K[2 * j + 1] as i64, K[2 * j] as i64, K[2 * j + 1] as i64, K[2 * j] as i64);
        let sum = _mm256_add_epi64(w, kk);
        assert!(2 * j + 2 <= wk0.len());
        // SAFETY: not a mongocrypt.h rule: two 16-byte stores at word 2j of 80-word arrays, in bounds (asserted).
        unsafe {
            _mm_storeu_si128(wk0.as_mut_ptr().add(2 * j).cast(), _mm256_castsi256_si128(sum));
            _mm_storeu_si128(wk1.as_mut_ptr().add(2 * j).cast(), _mm256_extracti128_si256::<1>(sum));
        }
    }

    /// σ0(x) = ROTR¹ ⊕ ROTR⁸ ⊕ SHR⁷, per 64-bit lane (AVX2 has no 64-bit rotate; the shifted halves do not overlap).
    #[target_feature(enable = "avx2")]
    #[inline]
    fn small_sigma0(x: __m256i) -> __m256i {
        let r1 = _mm256_xor_si256(_mm256_srli_epi64::<1>(x), _mm256_slli_epi64::<63>(x));
        let r8 = _mm256_xor_si256(_mm256_srli_epi64::<8>(x), _mm256_slli_epi64::<56>(x));
        _mm256_xor_si256(_mm256_xor_si256(r1, r8), _mm256_srli_epi64::<7>(x))
    }

    /// σ1(x) = ROTR¹⁹ ⊕ ROTR⁶¹ ⊕ SHR⁶, per 64-bit lane.
    #[target_feature(enable = "avx2")]
    #[inline]
    fn small_sigma1(x: __m256i) -> __m256i {
        let r19 = _mm256_xor_si256(_mm256_srli_epi64::<19>(x), _mm256_slli_epi64::<45>(x));
        let r61 = _mm256_xor_si256(_mm256_srli_epi64::<61>(x), _mm256_slli_epi64::<3>(x));
        _mm256_xor_si256(_mm256_xor_si256(r19, r61), _mm256_srli_epi64::<6>(x))
    }

    /// One round, the eight variables renamed instead of moved: Σ1, Ch, Σ0 and Maj of FIPS 180-4 4.1.3.
    macro_rules! round {
        ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $wk:expr) => {
            let t1 = $h
                .wrapping_add($e.rotate_right(14) ^ $e.rotate_right(18) ^ $e.rotate_right(41))
                .wrapping_add((($f ^ $g) & $e) ^ $g) // Ch(e, f, g)
                .wrapping_add($wk);
            let t2 = ($a.rotate_right(28) ^ $a.rotate_right(34) ^ $a.rotate_right(39))
                .wrapping_add((($a ^ $b) & ($b ^ $c)) ^ $b);
            $d = $d.wrapping_add(t1);
            $h = t1.wrapping_add(t2);
        };
    }

    /// Eight rounds from round `t`, then `$after` if given (the schedule steps interleaved with them). Unrolled
    /// in full: constant offsets into `wk`, no loop counter to keep in a register.
    macro_rules! eight_rounds {
        ($v:ident, $wk:ident, $t:literal $(, $after:expr)?) => {
            let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = $v;
            round!(a, b, c, d, e, f, g, h, $wk[$t]);
            round!(h, a, b, c, d, e, f, g, $wk[$t + 1]);
            round!(g, h, a, b, c, d, e, f, $wk[$t + 2]);
            round!(f, g, h, a, b, c, d, e, $wk[$t + 3]);
            round!(e, f, g, h, a, b, c, d, $wk[$t + 4]);
            round!(d, e, f, g, h, a, b, c, $wk[$t + 5]);
            round!(c, d, e, f, g, h, a, b, $wk[$t + 6]);
            round!(b, c, d, e, f, g, h, a, $wk[$t + 7]);
            $v = [a, b, c, d, e, f, g, h];
            $($after;)?
        };
    }

    /// The 80 rounds of one block, given its `W[t] + K[t]`.
    #[target_feature(enable = "avx2,bmi1,bmi2")]
    fn rounds(state: &mut [u64; 8], wk: &Wk) {
        let mut v = *state;
        eight_rounds!(v, wk, 0);
        eight_rounds!(v, wk, 8);
        eight_rounds!(v, wk, 16);
        eight_rounds!(v, wk, 24);
        eight_rounds!(v, wk, 32);
        eight_rounds!(v, wk, 40);
        eight_rounds!(v, wk, 48);
        eight_rounds!(v, wk, 56);
        eight_rounds!(v, wk, 64);
        eight_rounds!(v, wk, 72);
        for (s, v) in state.iter_mut().zip(v) {
            *s = s.wrapping_add(v);
        }
    }

    /// [`rounds`] of one block with half of the next pair's schedule interleaved: for `HALF` 0 the eight loads of
    /// the next blocks first (so that their addresses need no register during the rounds), then steps 8 to 17, one
    /// per eight rounds; for `HALF` 1 steps 18 to 39, two per eight rounds and the last two at the end.
    #[target_feature(enable = "avx2,bmi1,bmi2")]
    fn rounds_and_steps<const HALF: usize>(
        state: &mut [u64; 8],
        wk: &Wk,
        x: &mut [__m256i; 8],
        blocks: (&[u8; BLOCK], &[u8; BLOCK]),
        next: &mut [Wk; 2],
    ) {
        let mut v = *state;
        let mut xs = *x;
        if HALF == 0 {
            for j in 0..8 {
                step(j, &mut xs, blocks, next);
            }
        }
        let mut steps = |g: usize| {
            if HALF == 0 {
                step(8 + g, &mut xs, blocks, next);
            } else {
                step(18 + 2 * g, &mut xs, blocks, next);
                step(19 + 2 * g, &mut xs, blocks, next);
            }
        };
        eight_rounds!(v, wk, 0, steps(0));
        eight_rounds!(v, wk, 8, steps(1));
        eight_rounds!(v, wk, 16, steps(2));
        eight_rounds!(v, wk, 24, steps(3));
        eight_rounds!(v, wk, 32, steps(4));
        eight_rounds!(v, wk, 40, steps(5));
        eight_rounds!(v, wk, 48, steps(6));
        eight_rounds!(v, wk, 56, steps(7));
        eight_rounds!(v, wk, 64, steps(8));
        eight_rounds!(v, wk, 72, steps(9));
        if HALF == 1 {
            step(38, &mut xs, blocks, next);
            step(39, &mut xs, blocks, next);
        }
        *x = xs;
        for (s, v) in state.iter_mut().zip(v) {
            *s = s.wrapping_add(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::hmac_sha512;

    fn ring_hmac(key: &[u8], input: &[u8]) -> Vec<u8> {
        ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA512, key), input).as_ref().to_vec()
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
    fn the_avx2_bmi2_path_is_taken_here() {
        // The equality tests below check this file's code only where the CPU has both; say so when it does not.
        #[cfg(target_arch = "x86_64")]
        if !(std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("bmi1")
            && std::is_x86_feature_detected!("bmi2"))
        {
            eprintln!("this CPU lacks AVX2 or BMI2: hmac_sha512 is ring's here, the tests compare ring with itself");
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn rfc_4231_vectors() {
        let case1 = hmac_sha512(&[0x0b; 20], b"Hi There");
        assert_eq!(
            hex(&case1),
            "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde\
             daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"
        );
        let case2 = hmac_sha512(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex(&case2),
            "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
             9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
        );
    }

    #[test]
    fn equals_ring_at_every_length_around_the_block_and_padding_edges() {
        let data = bytes(3 * 128 + 40, 7);
        for key_len in [0, 1, 32, 64, 111, 112, 127, 128, 129, 200, 300] {
            let key = bytes(key_len, 11 + key_len as u64);
            for len in 0..=data.len() {
                assert_eq!(
                    hmac_sha512(&key, &data[..len]).to_vec(),
                    ring_hmac(&key, &data[..len]),
                    "key {key_len} bytes, input {len} bytes"
                );
            }
        }
    }

    #[test]
    fn equals_ring_on_large_inputs() {
        let data = bytes((1 << 20) + 77, 3);
        let key = bytes(32, 5);
        for len in [1 << 16, (1 << 16) + 1, (1 << 16) + 200, 1 << 20, (1 << 20) + 77] {
            assert_eq!(hmac_sha512(&key, &data[..len]).to_vec(), ring_hmac(&key, &data[..len]), "input {len} bytes");
        }
    }
}
