//! The x86-64 builds and what they share: the HMAC construction, the grouping of blocks, the rounds.

use zeroize::Zeroize;

/// A build of this code the CPU can run: only [`Build::detect`] and [`Build::all`] make one, after detecting its
/// features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Build {
    /// [`avx512`] rather than [`avx2`].
    avx512: bool,
}

impl Build {
    /// The fastest build this CPU can run, if any.
    pub(super) fn detect() -> Option<Build> {
        let avx2 = std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("bmi1")
            && std::is_x86_feature_detected!("bmi2");
        let avx512 = std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw");
        avx2.then_some(Build { avx512 })
    }

    /// Every build this CPU can run (the tests check each).
    #[cfg(test)]
    pub(super) fn all() -> Vec<Build> {
        let best = Build::detect();
        best.map(|_| Build { avx512: false }).into_iter().chain(best.filter(|b| b.avx512)).collect()
    }

    /// Its module's name.
    #[cfg(test)]
    pub(super) fn name(self) -> &'static str {
        if self.avx512 {
            "avx512"
        } else {
            "avx2"
        }
    }

    /// HMAC-SHA-512 (RFC 2104 with SHA-512's 128-byte block).
    pub(super) fn hmac(self, key: &[u8], input: &[u8]) -> [u8; 64] {
        if self.avx512 {
            // SAFETY: not a mongocrypt.h rule: `avx512::hmac` needs the CPU features it is compiled for, which
            // `Build::detect` detected before it made `self`.
            unsafe { avx512::hmac(key, input) }
        } else {
            // SAFETY: not a mongocrypt.h rule: as just above, for `avx2::hmac`.
            unsafe { avx2::hmac(key, input) }
        }
    }
}

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

/// RFC 2104 over a build's SHA-512: `hash_into(state, first, message)` runs the compression over `first` (if any),
/// then `message`, then their padding.
#[inline(always)]
fn hmac_with(
    key: &[u8],
    input: &[u8],
    mut hash_into: impl FnMut(&mut [u64; 8], Option<&[u8; BLOCK]>, &[u8]),
) -> [u8; 64] {
    let mut key_block = [0u8; BLOCK];
    if key.len() > BLOCK {
        let mut state = H0;
        hash_into(&mut state, None, key);
        key_block[..64].copy_from_slice(&digest_bytes(&state));
        state.zeroize();
    } else {
        key_block[..key.len()].copy_from_slice(key);
    }
    let mut pad = key_block.map(|b| b ^ 0x36);
    let mut inner = H0;
    hash_into(&mut inner, Some(&pad), input);
    pad = key_block.map(|b| b ^ 0x5c);
    let mut inner_digest = digest_bytes(&inner);
    let mut outer = H0;
    hash_into(&mut outer, Some(&pad), &inner_digest);
    let tag = digest_bytes(&outer);
    wipe(&mut key_block);
    wipe(&mut pad);
    inner.zeroize();
    wipe(&mut inner_digest);
    outer.zeroize();
    tag
}

/// Wipes a copy of secret bytes (the `zeroize` crate's volatile writes), eight at a time where aligned: a byte at a
/// time, the buffers here would cost as much to wipe as a short value costs to hash.
fn wipe(bytes: &mut [u8]) {
    // SAFETY: not a mongocrypt.h rule: every bit pattern is a valid u64 and a valid u8, so viewing the aligned middle
    // of the bytes as u64s is sound.
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

/// The blocks SHA-512 compresses for `first` (if any), then a message, then the padding, in groups of `N` (one
/// per lane of the vector schedule). They come from three places: `start` (`first` and the message's
/// first `N - 1` blocks, copied, when the message has that many), the message's blocks in place (`bulk`, whole
/// groups), and `end` (what is left: `first` if `start` did not take it, the blocks short of a group, the last
/// bytes and the padding). [`Blocks::wipe`] wipes both copies.
struct Blocks<'a, const N: usize> {
    start: [[u8; BLOCK]; N],
    /// 0 or `N`.
    start_blocks: usize,
    bulk: &'a [[u8; BLOCK]],
    /// At most `N - 1` blocks and a partial one, then 17 bytes of padding: `N + 1` blocks; room for two whole
    /// groups (`N` is 4 at most), so that the last group is `N` blocks in a row too (those past the end zero).
    end: [[u8; BLOCK]; 8],
    end_blocks: usize,
}

impl<'a, const N: usize> Blocks<'a, N> {
    #[inline(always)]
    fn new(first: Option<&[u8; BLOCK]>, message: &'a [u8]) -> Blocks<'a, N> {
        const { assert!(N >= 1 && N <= 4) };
        let (blocks, rest) = message.as_chunks::<BLOCK>();
        let mut start = [[0u8; BLOCK]; N];
        let (start_blocks, body) = match first {
            Some(first) if blocks.len() >= N - 1 => {
                start[0] = *first;
                start[1..].copy_from_slice(&blocks[..N - 1]);
                (N, &blocks[N - 1..])
            }
            _ => (0, blocks),
        };
        let (bulk, short) = body.split_at(body.len() - body.len() % N);
        // 0x80, zeros, then the length in bits as a 128-bit big-endian number.
        let mut end = [[0u8; BLOCK]; 8];
        let flat = end.as_flattened_mut();
        let mut used = 0;
        let first_left = first.filter(|_| start_blocks == 0).map_or(&[][..], |f| &f[..]);
        for part in [first_left, short.as_flattened(), rest] {
            flat[used..used + part.len()].copy_from_slice(part);
            used += part.len();
        }
        flat[used] = 0x80;
        let end_blocks = (used + 1 + 16).div_ceil(BLOCK);
        let bits = ((usize::from(first.is_some()) * BLOCK + message.len()) as u128) << 3;
        flat[end_blocks * BLOCK - 16..end_blocks * BLOCK].copy_from_slice(&bits.to_be_bytes());
        Blocks { start, start_blocks, bulk, end, end_blocks }
    }

    /// How many blocks there are.
    #[inline(always)]
    fn total(&self) -> usize {
        self.start_blocks + self.bulk.len() + self.end_blocks
    }

    /// Wipes the copies. Called at the end of a hash rather than from a `Drop`: with drop glue, every bounds
    /// check in the rounds keeps an unwinding path to it, and the AVX-512 build measured a few percent slower.
    #[inline(always)]
    fn wipe(&mut self) {
        wipe(&mut self.start.as_flattened_mut()[..self.start_blocks * BLOCK]);
        wipe(&mut self.end.as_flattened_mut()[..self.end_blocks * BLOCK]);
    }

    /// Group `i`: blocks `N * i` to `N * i + N - 1`, zero blocks past the end. One reference to `N` blocks in a
    /// row rather than `N` references: one register for the schedule's loads (the AVX-512 build measured a few
    /// percent slower with four).
    #[inline(always)]
    fn group(&self, i: usize) -> &[[u8; BLOCK]; N] {
        let i = N * i;
        if i < self.start_blocks {
            return &self.start;
        }
        let i = i - self.start_blocks;
        let blocks = if i < self.bulk.len() { &self.bulk[i..] } else { &self.end[i - self.bulk.len()..] };
        blocks.first_chunk().expect("`bulk` is whole groups, `end` has room for two")
    }
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

/// Eight rounds from round `$t`, reading `W[t] + K[t]` as `$word($($arg,)* t)`, then `$after` if given (the schedule
/// steps interleaved with them). Unrolled in full: constant offsets into the schedule, no loop counter to keep in a
/// register.
macro_rules! eight_rounds {
    ($v:ident, $word:ident($($arg:expr),*), $t:literal $(, $after:expr)?) => {
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = $v;
        round!(a, b, c, d, e, f, g, h, $word($($arg,)* $t));
        round!(h, a, b, c, d, e, f, g, $word($($arg,)* $t + 1));
        round!(g, h, a, b, c, d, e, f, $word($($arg,)* $t + 2));
        round!(f, g, h, a, b, c, d, e, $word($($arg,)* $t + 3));
        round!(e, f, g, h, a, b, c, d, $word($($arg,)* $t + 4));
        round!(d, e, f, g, h, a, b, c, $word($($arg,)* $t + 5));
        round!(c, d, e, f, g, h, a, b, $word($($arg,)* $t + 6));
        round!(b, c, d, e, f, g, h, a, $word($($arg,)* $t + 7));
        $v = [a, b, c, d, e, f, g, h];
        $($after;)?
    };
}

mod avx2;
mod avx512;
