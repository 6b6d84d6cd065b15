//! The AVX2 build: the message schedule of two blocks at once in 256-bit registers, the next pair's interleaved with
//! this pair's rounds.

use core::arch::x86_64::*;

use zeroize::Zeroize;

use super::{hmac_with, Blocks, BLOCK, K};

/// Message words plus round constants, `W[t] + K[t]`, of a pair of blocks as the schedule makes them: entry `j` holds
/// words `2j` and `2j + 1` of the first block, then the same two of the second (one store per step).
///
/// Aligned to a cache line, so that no 32-byte store of the schedule straddles two, wherever the stack puts it.
#[repr(C, align(64))]
struct Wk([[u64; 4]; 40]);

/// `W[t] + K[t]` of block `block` (0 or 1) of a pair.
#[inline]
fn word(wk: &Wk, block: usize, t: usize) -> u64 {
    wk.0[t / 2][2 * block + t % 2]
}

/// HMAC-SHA-512 (RFC 2104 with SHA-512's 128-byte block).
#[target_feature(enable = "avx2,bmi1,bmi2")]
pub(super) fn hmac(key: &[u8], input: &[u8]) -> [u8; 64] {
    let mut wk = [Wk([[0; 4]; 40]), Wk([[0; 4]; 40])];
    let tag = hmac_with(key, input, |state, first, message| hash_into(state, first, message, &mut wk));
    for wk in &mut wk {
        wk.0.zeroize();
    }
    tag
}

/// Steps `$j` to `$j + 7` of the schedule, for each `$j` (constants, so that `x` stays in registers).
macro_rules! eight_steps {
    ($x:ident, $blocks:expr, $wk:ident; $($j:literal)*) => {$(
        step($j, &mut $x, $blocks, $wk);
        step($j + 1, &mut $x, $blocks, $wk);
        step($j + 2, &mut $x, $blocks, $wk);
        step($j + 3, &mut $x, $blocks, $wk);
        step($j + 4, &mut $x, $blocks, $wk);
        step($j + 5, &mut $x, $blocks, $wk);
        step($j + 6, &mut $x, $blocks, $wk);
        step($j + 7, &mut $x, $blocks, $wk);
    )*};
}

/// Runs SHA-512 over `first` (if any), then `message`, then their padding, into `state`.
///
/// Blocks go by pairs (see [`schedule`]), pipelined: the rounds of one pair run interleaved with the schedule of the
/// next ([`rounds_and_steps`]), so that the vector unit works on the next pair while the scalar rounds run, as
/// OpenSSL's assembly does; `wk` holds the schedules of both.
#[target_feature(enable = "avx2,bmi1,bmi2")]
fn hash_into(state: &mut [u64; 8], first: Option<&[u8; BLOCK]>, message: &[u8], wk: &mut [Wk; 2]) {
    let mut blocks = Blocks::<2>::new(first, message);
    let total = blocks.total();
    let [mut current, mut next] = wk.each_mut();
    let mut x = [_mm256_setzero_si256(); 8];
    let (b0, b1) = pair(&blocks, 0);
    schedule(b0, b1, current);
    let mut i = 0;
    while 2 * i + 2 < total {
        let following = pair(&blocks, i + 1);
        rounds_and_steps::<0>(state, current, &mut x, following, next);
        rounds_and_steps::<1>(state, current, &mut x, following, next);
        std::mem::swap(&mut current, &mut next);
        i += 1;
    }
    // The last pair (or lone block): nothing to schedule meanwhile.
    rounds::<0>(state, current);
    if 2 * i + 1 < total {
        rounds::<1>(state, current);
    }
    blocks.wipe();
}

/// Pair `i` of `blocks`. Not inlined: inlined into the loop of [`hash_into`], it cost the rounds registers (77
/// more instructions per block under callgrind, from spills).
#[inline(never)]
fn pair<'b>(blocks: &'b Blocks<'_, 2>, i: usize) -> (&'b [u8; BLOCK], &'b [u8; BLOCK]) {
    let [b0, b1] = blocks.group(i);
    (b0, b1)
}

/// The message schedule of two blocks at once: each 256-bit register holds two consecutive words of `b0` in its low
/// half and the same two of `b1` in its high half, so one step makes four words.
#[target_feature(enable = "avx2,bmi1,bmi2")]
fn schedule(b0: &[u8; BLOCK], b1: &[u8; BLOCK], wk: &mut Wk) {
    let mut x = [_mm256_setzero_si256(); 8];
    eight_steps!(x, (b0, b1), wk; 0 8 16 24 32);
}

/// Step `j` (0 to 39) of the schedule of `blocks`: words 2j and 2j + 1 of both, into `x[j % 8]` and, plus their round
/// constants, into `wk`. Steps 0 to 7 load the blocks' words; from 8 on, W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) +
/// W[t-16], where `x[j % 8]` holds words 2j-16 and 2j-15 before the step. Always inlined where `j` is a constant, so
/// that `x` stays in registers.
#[target_feature(enable = "avx2,bmi1,bmi2")]
#[inline]
fn step(j: usize, x: &mut [__m256i; 8], (b0, b1): (&[u8; BLOCK], &[u8; BLOCK]), wk: &mut Wk) {
    let w = if j < 8 {
        // Byte order: big-endian words, swapped within each 64-bit lane.
        let swap = _mm256_setr_epi8(
            7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8,
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
        let (s0, s1) = (small_sigma0(w15), small_sigma1(w2));
        _mm256_add_epi64(_mm256_add_epi64(w16, s0), _mm256_add_epi64(w7, s1))
    };
    x[j % 8] = w;
    store(j, w, wk);
}

/// Stores words `2j` and `2j + 1` of both blocks, plus their round constants, into entry `j` of `wk`.
#[target_feature(enable = "avx2,bmi1,bmi2")]
#[inline]
fn store(j: usize, w: __m256i, wk: &mut Wk) {
    let (k0, k1) = (K[2 * j] as i64, K[2 * j + 1] as i64);
    let kk = _mm256_set_epi64x(k1, k0, k1, k0);
    let sum = _mm256_add_epi64(w, kk);
    let entry = &mut wk.0[j];
    // SAFETY: not a mongocrypt.h rule: a 32-byte store into a 32-byte array.
    unsafe { _mm256_storeu_si256(entry.as_mut_ptr().cast(), sum) };
}

/// σ0(x) = ROTR¹ ⊕ ROTR⁸ ⊕ SHR⁷, per 64-bit lane (AVX2 has no 64-bit rotate; the shifted halves do not overlap).
#[target_feature(enable = "avx2,bmi1,bmi2")]
#[inline]
fn small_sigma0(x: __m256i) -> __m256i {
    let r1 = _mm256_xor_si256(_mm256_srli_epi64::<1>(x), _mm256_slli_epi64::<63>(x));
    let r8 = _mm256_xor_si256(_mm256_srli_epi64::<8>(x), _mm256_slli_epi64::<56>(x));
    _mm256_xor_si256(_mm256_xor_si256(r1, r8), _mm256_srli_epi64::<7>(x))
}

/// σ1(x) = ROTR¹⁹ ⊕ ROTR⁶¹ ⊕ SHR⁶, per 64-bit lane.
#[target_feature(enable = "avx2,bmi1,bmi2")]
#[inline]
fn small_sigma1(x: __m256i) -> __m256i {
    let r19 = _mm256_xor_si256(_mm256_srli_epi64::<19>(x), _mm256_slli_epi64::<45>(x));
    let r61 = _mm256_xor_si256(_mm256_srli_epi64::<61>(x), _mm256_slli_epi64::<3>(x));
    _mm256_xor_si256(_mm256_xor_si256(r19, r61), _mm256_srli_epi64::<6>(x))
}

/// The 80 rounds of block `B` (0 or 1) of a pair, given the pair's `W[t] + K[t]`.
#[target_feature(enable = "avx2,bmi1,bmi2")]
fn rounds<const B: usize>(state: &mut [u64; 8], wk: &Wk) {
    let mut v = *state;
    eight_rounds!(v, word(wk, B), 0);
    eight_rounds!(v, word(wk, B), 8);
    eight_rounds!(v, word(wk, B), 16);
    eight_rounds!(v, word(wk, B), 24);
    eight_rounds!(v, word(wk, B), 32);
    eight_rounds!(v, word(wk, B), 40);
    eight_rounds!(v, word(wk, B), 48);
    eight_rounds!(v, word(wk, B), 56);
    eight_rounds!(v, word(wk, B), 64);
    eight_rounds!(v, word(wk, B), 72);
    for (s, v) in state.iter_mut().zip(v) {
        *s = s.wrapping_add(v);
    }
}

/// [`rounds`] of one block with half of the next pair's schedule interleaved: for `HALF` 0 the eight loads of the next
/// blocks first (so that their addresses need no register during the rounds), then steps 8 to 17, one per eight rounds;
/// for `HALF` 1 steps 18 to 39, two per eight rounds and the last two at the end.
#[target_feature(enable = "avx2,bmi1,bmi2")]
fn rounds_and_steps<const HALF: usize>(
    state: &mut [u64; 8],
    wk: &Wk,
    x: &mut [__m256i; 8],
    blocks: (&[u8; BLOCK], &[u8; BLOCK]),
    next: &mut Wk,
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
    eight_rounds!(v, word(wk, HALF), 0, steps(0));
    eight_rounds!(v, word(wk, HALF), 8, steps(1));
    eight_rounds!(v, word(wk, HALF), 16, steps(2));
    eight_rounds!(v, word(wk, HALF), 24, steps(3));
    eight_rounds!(v, word(wk, HALF), 32, steps(4));
    eight_rounds!(v, word(wk, HALF), 40, steps(5));
    eight_rounds!(v, word(wk, HALF), 48, steps(6));
    eight_rounds!(v, word(wk, HALF), 56, steps(7));
    eight_rounds!(v, word(wk, HALF), 64, steps(8));
    eight_rounds!(v, word(wk, HALF), 72, steps(9));
    if HALF == 1 {
        step(38, &mut xs, blocks, next);
        step(39, &mut xs, blocks, next);
    }
    *x = xs;
    for (s, v) in state.iter_mut().zip(v) {
        *s = s.wrapping_add(v);
    }
}
