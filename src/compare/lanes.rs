//! blake3 of many short inputs at once. A row digest's input is usually one block (at
//! most 64 bytes), and one block's compression is a chain of dependent steps that keeps
//! a core waiting. Compressing 8 or 16 rows side by side, one row per vector lane, does
//! the same steps for all of them in the time of about one. The result is exactly
//! `blake3::hash` (a test holds it to the crate for every length); inputs longer than a
//! block, and processors without the vector instructions, go through the crate.

/// Bytes in a blake3 block: inputs up to this long take one compression.
pub const BLOCK_LEN: usize = 64;

/// Inputs hashed side by side: the widest vector's lanes of 32-bit words.
pub const LANES: usize = 16;

const IV: [u32; 8] = [
    0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19,
];

/// The message words each round reads, in order: blake3's permutation applied 0 to 6
/// times.
const SCHEDULE: [[usize; 16]; 7] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8],
    [3, 4, 10, 12, 13, 2, 7, 14, 6, 5, 9, 0, 11, 15, 8, 1],
    [10, 7, 12, 9, 14, 3, 13, 15, 4, 0, 11, 2, 5, 8, 1, 6],
    [12, 13, 9, 11, 15, 10, 14, 8, 7, 2, 5, 3, 0, 1, 6, 4],
    [9, 14, 11, 5, 8, 12, 15, 1, 13, 3, 0, 10, 2, 6, 4, 7],
    [11, 15, 5, 0, 1, 9, 8, 6, 14, 10, 2, 12, 3, 4, 7, 13],
];

/// The flags of the only block of an unkeyed hash: chunk start, chunk end, root.
const ONE_BLOCK_FLAGS: u32 = 1 | 2 | 8;

/// Up to [`LANES`] inputs waiting to be hashed together.
pub struct Batch {
    /// Each input, zero-padded to a block, as little-endian words.
    blocks: [[u32; 16]; LANES],
    lens: [u32; LANES],
    count: usize,
}

impl Default for Batch {
    fn default() -> Batch {
        Batch {
            blocks: [[0; 16]; LANES],
            lens: [0; LANES],
            count: 0,
        }
    }
}

impl Batch {
    /// Inputs held.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when no input is held.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// True when no further input fits.
    pub fn is_full(&self) -> bool {
        self.count == LANES
    }

    /// Adds an input of at most [`BLOCK_LEN`] bytes; false (nothing added) for a longer
    /// one, which [`hash_prefix`] hashes on its own.
    pub fn push(&mut self, input: &[u8]) -> bool {
        if input.len() > BLOCK_LEN || self.is_full() {
            return false;
        }
        let mut bytes = [0u8; BLOCK_LEN];
        bytes[..input.len()].copy_from_slice(input);
        let block = &mut self.blocks[self.count];
        for (word, four) in block.iter_mut().zip(bytes.chunks_exact(4)) {
            *word = u32::from_le_bytes([four[0], four[1], four[2], four[3]]);
        }
        self.lens[self.count] = input.len() as u32;
        self.count += 1;
        true
    }

    /// The first 16 bytes of each held input's blake3 hash, in the order they were
    /// pushed; empties the batch.
    pub fn finish(&mut self, out: &mut [[u8; 16]; LANES]) {
        hash_blocks(&self.blocks, &self.lens, self.count, out);
        self.count = 0;
    }
}

/// The first 16 bytes of `input`'s blake3 hash, through the crate.
pub fn hash_prefix(input: &[u8]) -> [u8; 16] {
    let mut out = [0; 16];
    out.copy_from_slice(&blake3::hash(input).as_bytes()[..16]);
    out
}

/// The vector instructions a batch is hashed with.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
enum Level {
    Avx512,
    Avx2,
    /// One input at a time, through the crate.
    Scalar,
}

impl Level {
    /// The widest the processor has (the standard library caches the answer).
    fn detect() -> Level {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
            {
                return Level::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                return Level::Avx2;
            }
        }
        Level::Scalar
    }
}

fn hash_blocks(blocks: &[[u32; 16]; LANES], lens: &[u32; LANES], count: usize, out: &mut [[u8; 16]; LANES]) {
    let level = if count > 1 { Level::detect() } else { Level::Scalar };
    hash_blocks_with(level, blocks, lens, count, out);
}

fn hash_blocks_with(
    level: Level,
    blocks: &[[u32; 16]; LANES],
    lens: &[u32; LANES],
    count: usize,
    out: &mut [[u8; 16]; LANES],
) {
    match level {
        // SAFETY: `Level::detect` found the features these functions are compiled for.
        #[cfg(target_arch = "x86_64")]
        Level::Avx512 => unsafe { hash_blocks_avx512(blocks, lens, out) },
        #[cfg(target_arch = "x86_64")]
        Level::Avx2 => unsafe { hash_blocks_avx2(blocks, lens, count, out) },
        _ => {
            for i in 0..count {
                out[i] = one_block(&blocks[i], lens[i]);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl")]
fn hash_blocks_avx512(blocks: &[[u32; 16]; LANES], lens: &[u32; LANES], out: &mut [[u8; 16]; LANES]) {
    compress_lanes::<16>(blocks, lens, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn hash_blocks_avx2(
    blocks: &[[u32; 16]; LANES],
    lens: &[u32; LANES],
    count: usize,
    out: &mut [[u8; 16]; LANES],
) {
    compress_lanes::<8>(blocks, lens, out);
    if count > 8 {
        compress_lanes::<8>(&blocks[8..], &lens[8..], &mut out[8..]);
    }
}

/// One compression of the first `N` blocks side by side, each word a vector of `N`
/// lanes; writes the first 16 bytes of each output.
#[inline(always)]
fn compress_lanes<const N: usize>(blocks: &[[u32; 16]], lens: &[u32], out: &mut [[u8; 16]]) {
    // Sliced once to `N`, so that the loops over lanes carry no bound checks.
    let (blocks, lens, out) = (&blocks[..N], &lens[..N], &mut out[..N]);
    let mut m = [[0u32; N]; 16];
    for (word, lanes) in m.iter_mut().enumerate() {
        for (lane, value) in lanes.iter_mut().enumerate() {
            *value = blocks[lane][word];
        }
    }
    let mut v = [[0u32; N]; 16];
    for i in 0..8 {
        v[i] = [IV[i]; N];
    }
    for i in 0..4 {
        v[8 + i] = [IV[i]; N];
    }
    // Words 12 and 13 are the counter, zero for the first chunk.
    v[14].copy_from_slice(lens);
    v[15] = [ONE_BLOCK_FLAGS; N];
    for schedule in &SCHEDULE {
        g(&mut v, 0, 4, 8, 12, &m[schedule[0]], &m[schedule[1]]);
        g(&mut v, 1, 5, 9, 13, &m[schedule[2]], &m[schedule[3]]);
        g(&mut v, 2, 6, 10, 14, &m[schedule[4]], &m[schedule[5]]);
        g(&mut v, 3, 7, 11, 15, &m[schedule[6]], &m[schedule[7]]);
        g(&mut v, 0, 5, 10, 15, &m[schedule[8]], &m[schedule[9]]);
        g(&mut v, 1, 6, 11, 12, &m[schedule[10]], &m[schedule[11]]);
        g(&mut v, 2, 7, 8, 13, &m[schedule[12]], &m[schedule[13]]);
        g(&mut v, 3, 4, 9, 14, &m[schedule[14]], &m[schedule[15]]);
    }
    for (lane, digest) in out.iter_mut().enumerate() {
        for i in 0..4 {
            let word = v[i][lane] ^ v[i + 8][lane];
            digest[4 * i..4 * i + 4].copy_from_slice(&word.to_le_bytes());
        }
    }
}

/// blake3's quarter-round on every lane.
#[inline(always)]
fn g<const N: usize>(
    v: &mut [[u32; N]; 16],
    a: usize,
    b: usize,
    c: usize,
    d: usize,
    x: &[u32; N],
    y: &[u32; N],
) {
    for lane in 0..N {
        let (mut va, mut vb, mut vc, mut vd) = (v[a][lane], v[b][lane], v[c][lane], v[d][lane]);
        va = va.wrapping_add(vb).wrapping_add(x[lane]);
        vd = (vd ^ va).rotate_right(16);
        vc = vc.wrapping_add(vd);
        vb = (vb ^ vc).rotate_right(12);
        va = va.wrapping_add(vb).wrapping_add(y[lane]);
        vd = (vd ^ va).rotate_right(8);
        vc = vc.wrapping_add(vd);
        vb = (vb ^ vc).rotate_right(7);
        v[a][lane] = va;
        v[b][lane] = vb;
        v[c][lane] = vc;
        v[d][lane] = vd;
    }
}

/// One block without vector lanes: the same compression as a lane of [`compress_lanes`].
fn one_block(block: &[u32; 16], len: u32) -> [u8; 16] {
    let mut bytes = [0u8; BLOCK_LEN];
    for (four, word) in bytes.chunks_exact_mut(4).zip(block) {
        four.copy_from_slice(&word.to_le_bytes());
    }
    hash_prefix(&bytes[..len as usize])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn batch_digests(inputs: &[Vec<u8>]) -> Vec<[u8; 16]> {
        let mut batch = Batch::default();
        let mut out = [[0u8; 16]; LANES];
        let mut digests = Vec::new();
        for chunk in inputs.chunks(LANES) {
            for input in chunk {
                assert!(batch.push(input));
            }
            batch.finish(&mut out);
            digests.extend_from_slice(&out[..chunk.len()]);
        }
        digests
    }

    /// The levels this processor can run.
    fn levels() -> Vec<Level> {
        let mut levels = vec![Level::Scalar];
        if Level::detect() == Level::Avx512 {
            levels.push(Level::Avx512);
        }
        if matches!(Level::detect(), Level::Avx512 | Level::Avx2) {
            levels.push(Level::Avx2);
        }
        levels
    }

    #[test]
    fn every_length_up_to_a_block_hashes_as_the_crate_does() {
        let inputs: Vec<Vec<u8>> = (0..=BLOCK_LEN)
            .map(|len| (0..len).map(|i| (i * 7 + len) as u8).collect())
            .collect();
        let expected: Vec<[u8; 16]> = inputs.iter().map(|i| hash_prefix(i)).collect();
        assert_eq!(batch_digests(&inputs), expected);
        // Every level, with every count of inputs in a batch.
        for level in levels() {
            for count in 1..=LANES {
                let mut batch = Batch::default();
                for input in &inputs[BLOCK_LEN + 1 - count..] {
                    assert!(batch.push(input));
                }
                let mut out = [[0u8; 16]; LANES];
                hash_blocks_with(level, &batch.blocks, &batch.lens, count, &mut out);
                assert_eq!(
                    &out[..count],
                    &expected[BLOCK_LEN + 1 - count..],
                    "{level:?}, {count} inputs"
                );
            }
        }
    }

    #[test]
    fn a_longer_input_is_refused() {
        let mut batch = Batch::default();
        assert!(!batch.push(&[1; BLOCK_LEN + 1]));
        assert!(batch.is_empty());
    }

    proptest! {
        #[test]
        fn any_batch_hashes_as_the_crate_does(
            inputs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..=BLOCK_LEN), 1..40)
        ) {
            let expected: Vec<[u8; 16]> = inputs.iter().map(|i| hash_prefix(i)).collect();
            prop_assert_eq!(batch_digests(&inputs), expected);
        }
    }
}
