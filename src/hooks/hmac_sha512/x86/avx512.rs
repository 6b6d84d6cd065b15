//! The AVX-512 build: the message schedule of four blocks at once in 512-bit registers (one 128-bit lane per block),
//! the next group's interleaved with this group's rounds.
//!
//! Against `super::avx2`: the same rounds, half the schedule's steps per block (a step makes two words of four
//! blocks), and each rotate one VPRORQ and each three-way XOR one VPTERNLOGQ instead of two shifts and an OR. The
//! rounds of one block are a function of the block's lane, so the loop's code stays the size of the AVX2 build's
//! (80 rounds, not 320).

use core::arch::x86_64::*;

use super::{hmac_with, Blocks, BLOCK, K};

/// Message words plus round constants, `W[t] + K[t]`, of a group of four blocks as the schedule makes them: entry
/// `j` holds words `2j` and `2j + 1` of each block in turn (one 64-byte store per step). Aligned to a cache line,
/// as those stores are.
#[repr(C, align(64))]
struct Wk([[u64; 8]; 40]);

/// [`K`] as [`Wk`] lays it out: entry `j` holds `K[2j]` and `K[2j + 1]` four times.
static K4: Wk = {
    let mut k4 = [[0; 8]; 40];
    let mut j = 0;
    while j < 40 {
        let (k0, k1) = (K[2 * j], K[2 * j + 1]);
        k4[j] = [k0, k1, k0, k1, k0, k1, k0, k1];
        j += 1;
    }
    Wk(k4)
};

/// The words of [`Wk`] from those of one block on: word `t` of that block is at `8 * (t / 2) + t % 2`.
type Lane = [u64; 8 * 39 + 2];

/// `W[t] + K[t]` of the block whose [`Lane`] `lane` is.
#[inline]
fn word(lane: &Lane, t: usize) -> u64 {
    lane[8 * (t / 2) + t % 2]
}

/// HMAC-SHA-512 (RFC 2104 with SHA-512's 128-byte block).
#[target_feature(enable = "avx2,bmi1,bmi2,avx512f,avx512bw")]
pub(super) fn hmac(key: &[u8], input: &[u8]) -> [u8; 64] {
    let mut wk = [Wk([[0; 8]; 40]), Wk([[0; 8]; 40])];
    let tag = hmac_with(key, input, |state, first, message| hash_into(state, first, message, &mut wk));
    // The schedules are the message: wiped with volatile stores (a cache line each), which the compiler keeps.
    for entry in wk.iter_mut().flat_map(|wk| &mut wk.0) {
        // SAFETY: not a mongocrypt.h rule: `entry` is 64 bytes, exclusively borrowed, and 64-byte aligned (`Wk`
        // is, and its entries are 64 bytes).
        unsafe { std::ptr::write_volatile(entry.as_mut_ptr().cast::<__m512i>(), _mm512_setzero_si512()) };
    }
    tag
}

/// Runs SHA-512 over `first` (if any), then `message`, then their padding, into `state`.
///
/// Blocks go by groups of four, pipelined: while the rounds of one group's blocks run, the schedule of the next
/// group is made ([`rounds_and_steps`]); `wk` holds the schedules of both. The last group is followed by itself
/// (its schedule made again, unused), so that the rounds have one form.
#[target_feature(enable = "avx2,bmi1,bmi2,avx512f,avx512bw")]
fn hash_into(state: &mut [u64; 8], first: Option<&[u8; BLOCK]>, message: &[u8], wk: &mut [Wk; 2]) {
    let mut blocks = Blocks::<4>::new(first, message);
    let total = blocks.total();
    let groups = total.div_ceil(4);
    let [mut current, mut next] = wk.each_mut();
    let mut x = [_mm512_setzero_si512(); 8];
    load(blocks.group(0), &mut x, current);
    for k in 1..5 {
        for i in 0..8 {
            step(i, 8 * k + i, &mut x, current);
        }
    }
    for g in 0..groups {
        load(blocks.group((g + 1).min(groups - 1)), &mut x, next);
        let blocks_here = if g + 1 == groups { total - 4 * g } else { 4 };
        for block in 0..blocks_here {
            rounds_and_steps(state, current, block, &mut x, next);
        }
        std::mem::swap(&mut current, &mut next);
    }
    blocks.wipe();
}

/// Steps 0 to 7 of the schedule of `blocks`: words `2j` and `2j + 1` of each, loaded (big-endian) into `x[j]` and,
/// plus their round constants, into `wk`.
#[target_feature(enable = "avx2,bmi1,bmi2,avx512f,avx512bw")]
#[inline]
fn load(blocks: &[[u8; BLOCK]; 4], x: &mut [__m512i; 8], wk: &mut Wk) {
    // Byte order: big-endian words, swapped within each 64-bit lane.
    let swap = _mm512_broadcast_i32x4(_mm_setr_epi8(7, 6, 5, 4, 3, 2, 1, 0, 15, 14, 13, 12, 11, 10, 9, 8));
    for (j, x) in x.iter_mut().enumerate() {
        let [b0, b1, b2, b3] = blocks.each_ref().map(|b| {
            let words: &[u8; 16] = b[16 * j..16 * j + 16].try_into().expect("16 bytes");
            // SAFETY: not a mongocrypt.h rule: a 16-byte load from a 16-byte array.
            unsafe { _mm_loadu_si128(words.as_ptr().cast()) }
        });
        let low = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(b0), b1);
        let high = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(b2), b3);
        *x = _mm512_shuffle_epi8(_mm512_inserti64x4::<1>(_mm512_castsi256_si512(low), high), swap);
        store(j, *x, wk);
    }
}

/// Step `j` (8 to 39) into `x[i]`, `i = j % 8` (a constant where this is inlined, so that `x` stays in registers):
/// W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16] for words `2j` and `2j + 1` of each block, where `x[i]` holds
/// words 2j-16 and 2j-15 before the step; stored into `wk` with their round constants.
#[target_feature(enable = "avx2,bmi1,bmi2,avx512f,avx512bw")]
#[inline]
fn step(i: usize, j: usize, x: &mut [__m512i; 8], wk: &mut Wk) {
    let w16 = x[i]; // words 2j-16, 2j-15
    let w15 = _mm512_alignr_epi8::<8>(x[(i + 1) % 8], w16); // 2j-15, 2j-14
    let w7 = _mm512_alignr_epi8::<8>(x[(i + 5) % 8], x[(i + 4) % 8]); // 2j-7, 2j-6
    let w2 = x[(i + 7) % 8]; // 2j-2, 2j-1

    // σ0 = ROTR¹ ⊕ ROTR⁸ ⊕ SHR⁷ and σ1 = ROTR¹⁹ ⊕ ROTR⁶¹ ⊕ SHR⁶, per 64-bit lane (each pair of XORs one VPTERNLOGQ).
    let s0 = _mm512_xor_si512(
        _mm512_xor_si512(_mm512_ror_epi64::<1>(w15), _mm512_ror_epi64::<8>(w15)),
        _mm512_srli_epi64::<7>(w15),
    );
    let s1 = _mm512_xor_si512(
        _mm512_xor_si512(_mm512_ror_epi64::<19>(w2), _mm512_ror_epi64::<61>(w2)),
        _mm512_srli_epi64::<6>(w2),
    );
    x[i] = _mm512_add_epi64(_mm512_add_epi64(w16, s0), _mm512_add_epi64(w7, s1));
    store(j, x[i], wk);
}

/// Stores words `2j` and `2j + 1` of each block, plus their round constants, into entry `j` of `wk`.
#[target_feature(enable = "avx2,bmi1,bmi2,avx512f,avx512bw")]
#[inline]
fn store(j: usize, w: __m512i, wk: &mut Wk) {
    let (entry, k4) = (&mut wk.0[j], &K4.0[j]);
    // SAFETY: not a mongocrypt.h rule: a 64-byte load from and a 64-byte store into 64-byte arrays.
    unsafe {
        _mm512_storeu_si512(entry.as_mut_ptr().cast(), _mm512_add_epi64(w, _mm512_loadu_si512(k4.as_ptr().cast())))
    };
}

/// The 80 rounds of block `block` (0 to 3) of the group whose schedule `current` holds, with eight steps of the
/// next group's schedule (steps `8 * (block + 1)` on, into `next`), one after each eight rounds from the first.
#[target_feature(enable = "avx2,bmi1,bmi2,avx512f,avx512bw")]
fn rounds_and_steps(state: &mut [u64; 8], current: &Wk, block: usize, x: &mut [__m512i; 8], next: &mut Wk) {
    // Bounds the steps' `j` below 40 for the compiler: no bounds checks in the rounds.
    assert!(block < 4);
    // The rounds address the block's words from one base, not from the schedule's and the block's offset.
    let lane: &Lane = current.0.as_flattened()[2 * block..][..8 * 39 + 2].try_into().expect("block < 4");
    let j = 8 * (block + 1);
    let mut v = *state;
    let mut xs = *x;
    eight_rounds!(v, word(lane), 0, step(0, j, &mut xs, next));
    eight_rounds!(v, word(lane), 8, step(1, j + 1, &mut xs, next));
    eight_rounds!(v, word(lane), 16, step(2, j + 2, &mut xs, next));
    eight_rounds!(v, word(lane), 24, step(3, j + 3, &mut xs, next));
    eight_rounds!(v, word(lane), 32, step(4, j + 4, &mut xs, next));
    eight_rounds!(v, word(lane), 40, step(5, j + 5, &mut xs, next));
    eight_rounds!(v, word(lane), 48, step(6, j + 6, &mut xs, next));
    eight_rounds!(v, word(lane), 56, step(7, j + 7, &mut xs, next));
    eight_rounds!(v, word(lane), 64);
    eight_rounds!(v, word(lane), 72);
    *x = xs;
    for (s, v) in state.iter_mut().zip(v) {
        *s = s.wrapping_add(v);
    }
}
