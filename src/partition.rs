//! Which input partition a record key lands in, computed as the dialers' Kafka producers compute
//! it. With several instances each holds the state of its assigned partitions only, so the
//! pre-dial check answers for a debtor only where the debtor's partition is assigned: elsewhere
//! it would read no calls and allow what the owner would refuse.

/// How the producers of the input topic spread keys over partitions (`check.partitioner`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioner {
    /// The Java client's default (Kafka Connect, Kafka Streams, most bridges), and librdkafka's
    /// `murmur2_random` for keyed records: murmur2 of the key with its sign bit cleared, modulo
    /// the partition count.
    Murmur2,
    /// librdkafka's default (`consistent_random` for keyed records, so most C, Go, Python and
    /// Rust clients): CRC-32 of the key, modulo the partition count.
    Consistent,
}

impl Partitioner {
    /// The configuration value.
    pub fn as_str(self) -> &'static str {
        match self {
            Partitioner::Murmur2 => "murmur2",
            Partitioner::Consistent => "consistent",
        }
    }

    /// The partition of `key` among `partitions` (at least 1).
    pub fn partition(self, key: &[u8], partitions: u32) -> i32 {
        let partitions = partitions.max(1);
        let h = match self {
            Partitioner::Murmur2 => murmur2(key) & 0x7fff_ffff,
            Partitioner::Consistent => crc32(key),
        };
        (h % partitions) as i32
    }
}

/// Kafka's murmur2: 32 bits, seed `0x9747b28c`, the words read little-endian.
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    let mut h = SEED ^ data.len() as u32;
    let words = data.chunks_exact(4);
    let tail = words.remainder();
    for w in words {
        let mut k = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    if !tail.is_empty() {
        for (i, b) in tail.iter().enumerate() {
            h ^= u32::from(*b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// CRC-32 (the zlib one: reflected polynomial `0xedb88320`), as librdkafka's `rd_crc32`.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for b in data {
        c ^= u32::from(*b);
        for _ in 0..8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0xedb8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Java client's own test values (`Utils.murmur2`, as signed 32-bit ints).
    #[test]
    fn murmur2_hashes_as_the_java_client_does() {
        for (key, want) in [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ] {
            assert_eq!(murmur2(key.as_bytes()) as i32, want, "{key}");
        }
    }

    #[test]
    fn crc32_is_the_standard_one() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn partitions_are_in_range_and_follow_the_hash() {
        assert_eq!(
            Partitioner::Murmur2.partition(b"foobar", 7),
            ((-790_332_482i32 as u32 & 0x7fff_ffff) % 7) as i32
        );
        assert_eq!(
            Partitioner::Consistent.partition(b"123456789", 10),
            (0xcbf4_3926u32 % 10) as i32
        );
        for p in 1..20 {
            for k in ["", "D1", "debtor-000123"] {
                assert!((0..p as i32).contains(&Partitioner::Murmur2.partition(k.as_bytes(), p)));
                assert!((0..p as i32).contains(&Partitioner::Consistent.partition(k.as_bytes(), p)));
            }
        }
    }
}
