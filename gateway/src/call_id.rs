//! Call ids `gw_<16 hex>` (runtime-gateway.md §6.1), minted without a system call.
//!
//! `ktsu_shared::ids::new_call_id` asks the kernel for 8 random bytes per id; on the `/invoke`
//! hot path that `getrandom` call was measurable (bench/README.md, LLM gateway). An id only has
//! to be unique, not secret, so this generator draws a random key once per process and then
//! numbers the calls: id = mix(key ⊕ counter). `mix` is a bijection on 64 bits, so two calls of
//! one process never share an id; the random key makes ids of different processes (and
//! restarts) as unlikely to collide as 64 random bits would.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

struct Generator {
    key: u64,
    counter: AtomicU64,
}

static CALL_IDS: LazyLock<Generator> = LazyLock::new(|| Generator {
    key: random_seed(),
    counter: AtomicU64::new(0),
});

/// A new call id: `gw_` + 16 lowercase hex.
pub fn new_call_id() -> String {
    let n = CALL_IDS.counter.fetch_add(1, Ordering::Relaxed);
    format!("gw_{:016x}", mix(n ^ CALL_IDS.key))
}

/// 64 random bits from the OS, else from the clock: enough for ids and jitter, which need
/// spread, not secrecy.
pub fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_ok() {
        return u64::from_le_bytes(bytes);
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    mix(nanos as u64 ^ (nanos >> 64) as u64)
}

/// The splitmix64 finalizer: xor-shifts and multiplications by odd constants, each invertible,
/// so distinct inputs give distinct outputs, and neighbouring inputs look unrelated.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_have_the_format_and_never_repeat() {
        let ids: Vec<String> = (0..10_000).map(|_| new_call_id()).collect();
        for id in &ids {
            let hex = id.strip_prefix("gw_").unwrap();
            assert_eq!(hex.len(), 16, "{id}");
            assert!(hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        }
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
        // Consecutive ids do not look consecutive.
        let first = u64::from_str_radix(&ids[0][3..], 16).unwrap();
        let second = u64::from_str_radix(&ids[1][3..], 16).unwrap();
        assert!((first ^ second).count_ones() > 8, "{first:x} {second:x}");
    }

    #[test]
    fn mix_is_a_bijection_on_a_sample() {
        let outputs: HashSet<u64> = (0..100_000u64).map(mix).collect();
        assert_eq!(outputs.len(), 100_000);
        assert_ne!(random_seed(), random_seed());
    }
}
