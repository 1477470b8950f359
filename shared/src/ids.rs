//! Identifiers with the formats the spec fixes, and the step-address syntax.
//!
//! | id | format | minted by |
//! |---|---|---|
//! | run | `run_` + 16 lowercase hex (8 CSPRNG bytes) | orchestrator |
//! | sub-run | `<parent run id>.<step id>` (nests) | orchestrator |
//! | runtime | `rt-` + 12 hex (or `KTSU_RUNTIME_ID`, `[A-Za-z0-9._-]{1,64}`) | runtime |
//! | gateway call | `gw_` + 16 hex | gateway |
//! | callback idempotency key | `cb_` + 16 hex | runtime |
//! | step address | `<step id>` or `<step id>.<index>` | orchestrator |

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;

/// The operating system's CSPRNG could not deliver random bytes.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed: {0}")]
pub struct RandomError(getrandom::Error);

/// `2 * bytes` lowercase hex characters from the OS CSPRNG. Use this for secrets (for example a
/// generated internal token): unlike the id constructors it never falls back to a weaker source.
pub fn random_hex(bytes: usize) -> Result<String, RandomError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(RandomError)?;
    Ok(hex(&buf))
}

/// A new root run id: `run_` + 16 lowercase hex.
pub fn new_run_id() -> String {
    format!("run_{}", hex(&id_bytes::<8>()))
}

/// The id of the sub-run started by `step_id` of `parent_run_id`: `<parent>.<step>`.
pub fn sub_run_id(parent_run_id: &str, step_id: &str) -> String {
    format!("{parent_run_id}.{step_id}")
}

/// A generated runtime id: `rt-` + 12 lowercase hex.
pub fn new_runtime_id() -> String {
    format!("rt-{}", hex(&id_bytes::<6>()))
}

/// A new gateway call id: `gw_` + 16 lowercase hex.
///
/// Minted on every `/invoke`, so without a system call: asking the kernel for 8 random bytes
/// per id was measurable there (bench/README.md, LLM gateway). A call id only has to be unique,
/// not secret, so a random key is drawn once per process and the calls are numbered:
/// id = mix64(key ⊕ counter). `mix64` is a bijection on 64 bits, so two calls of one process
/// never share an id; the random key makes ids of different processes (and restarts) as
/// unlikely to collide as 64 random bits would.
pub fn new_call_id() -> String {
    static KEY: LazyLock<u64> = LazyLock::new(random_u64);
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("gw_{:016x}", mix64(n ^ *KEY))
}

/// 64 random bits for seeds and keys that need spread, not secrecy (the OS CSPRNG, else the
/// fallback of the id constructors). Use [`random_hex`] for secrets.
pub fn random_u64() -> u64 {
    u64::from_le_bytes(id_bytes::<8>())
}

/// A new callback `Idempotency-Key`: `cb_` + 16 lowercase hex.
pub fn new_callback_key() -> String {
    format!("cb_{}", hex(&id_bytes::<8>()))
}

/// `run_` + exactly 16 lowercase hex characters (a root run id).
pub fn is_root_run_id(text: &str) -> bool {
    text.strip_prefix("run_")
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(is_lower_hex))
}

/// A root run id followed by zero or more `.<step id>` segments (root or sub-run id).
pub fn is_run_id(text: &str) -> bool {
    let mut parts = text.split('.');
    parts.next().is_some_and(is_root_run_id) && parts.all(is_step_id)
}

/// Step ids match `[A-Za-z0-9_-]{1,64}`; they never contain `.`, which keeps step addresses and
/// sub-run ids unambiguous.
pub fn is_step_id(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Runtime ids (`KTSU_RUNTIME_ID`) match `[A-Za-z0-9._-]{1,64}`.
pub fn is_runtime_id(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Where a result belongs inside a run: a step, or one item of a fan-out step.
///
/// Written `<step id>` or `<step id>.<index>` (decimal, no leading zeros). Used in callback
/// URLs, heartbeat entries, cancel notices and approval records.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StepAddress {
    pub step_id: String,
    /// The fan-out item index, `None` for the step itself.
    pub index: Option<u32>,
}

/// Why a string is not a valid step address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepAddressError {
    #[error("invalid step id {0:?}: expected [A-Za-z0-9_-], 1 to 64 characters")]
    StepId(String),
    #[error("invalid item index {0:?}: expected a decimal number without leading zeros")]
    Index(String),
}

impl StepAddress {
    /// The address of a whole step. The id is not checked; use [`StepAddress::parse`] for input.
    pub fn step(step_id: impl Into<String>) -> Self {
        StepAddress {
            step_id: step_id.into(),
            index: None,
        }
    }

    /// The address of one fan-out item.
    pub fn item(step_id: impl Into<String>, index: u32) -> Self {
        StepAddress {
            step_id: step_id.into(),
            index: Some(index),
        }
    }

    pub fn parse(text: &str) -> Result<Self, StepAddressError> {
        let (step_id, index) = match text.split_once('.') {
            Some((step_id, index)) => (step_id, Some(parse_index(index)?)),
            None => (text, None),
        };
        if !is_step_id(step_id) {
            return Err(StepAddressError::StepId(step_id.to_owned()));
        }
        Ok(StepAddress {
            step_id: step_id.to_owned(),
            index,
        })
    }

    pub fn is_item(&self) -> bool {
        self.index.is_some()
    }
}

fn parse_index(text: &str) -> Result<u32, StepAddressError> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical
        .then(|| text.parse::<u32>().ok())
        .flatten()
        .ok_or_else(|| StepAddressError::Index(text.to_owned()))
}

impl fmt::Display for StepAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(index) => write!(f, "{}.{index}", self.step_id),
            None => f.write_str(&self.step_id),
        }
    }
}

impl FromStr for StepAddress {
    type Err = StepAddressError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        StepAddress::parse(text)
    }
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Random bytes for an identifier.
///
/// Ids come from the OS CSPRNG. Should it ever fail (it does not on supported platforms), ids
/// must still be minted without panicking, and they only need to be unique, not secret: the
/// fallback mixes the clock, the process id and a counter through SplitMix64.
fn id_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    if getrandom::fill(&mut buf).is_err() {
        fallback_fill(&mut buf);
    }
    buf
}

fn fallback_fill(buf: &mut [u8]) {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut state = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0xA24B_AED4_963E_E407);
    for chunk in buf.chunks_mut(8) {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        chunk.copy_from_slice(&mix64(state).to_le_bytes()[..chunk.len()]);
    }
}

/// The SplitMix64 finalizer: xor-shifts and multiplications by odd constants, each invertible,
/// so distinct inputs give distinct outputs, and neighbouring inputs look unrelated.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn assert_prefixed_hex(id: &str, prefix: &str, hex_len: usize) {
        let rest = id.strip_prefix(prefix).unwrap_or_else(|| panic!("{id}"));
        assert_eq!(rest.len(), hex_len, "{id}");
        assert!(rest.bytes().all(is_lower_hex), "{id}");
    }

    #[test]
    fn generated_ids_have_spec_formats() {
        assert_prefixed_hex(&new_run_id(), "run_", 16);
        assert_prefixed_hex(&new_runtime_id(), "rt-", 12);
        assert_prefixed_hex(&new_call_id(), "gw_", 16);
        assert_prefixed_hex(&new_callback_key(), "cb_", 16);
        assert!(is_root_run_id(&new_run_id()));
        assert!(is_runtime_id(&new_runtime_id()));
    }

    #[test]
    fn call_ids_never_repeat_and_do_not_look_consecutive() {
        let ids: Vec<String> = (0..10_000).map(|_| new_call_id()).collect();
        for id in &ids {
            assert_prefixed_hex(id, "gw_", 16);
        }
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
        let first = u64::from_str_radix(&ids[0][3..], 16).unwrap();
        let second = u64::from_str_radix(&ids[1][3..], 16).unwrap();
        assert!((first ^ second).count_ones() > 8, "{first:x} {second:x}");
    }

    #[test]
    fn mix64_is_a_bijection_on_a_sample() {
        let outputs: HashSet<u64> = (0..100_000u64).map(mix64).collect();
        assert_eq!(outputs.len(), 100_000);
        assert_ne!(random_u64(), random_u64());
    }

    #[test]
    fn generated_ids_differ() {
        let ids: HashSet<String> = (0..1000).map(|_| new_run_id()).collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn random_hex_has_requested_length() {
        let token = random_hex(32).unwrap();
        assert_eq!(token.len(), 64);
        assert!(token.bytes().all(is_lower_hex));
        assert_eq!(random_hex(0).unwrap(), "");
    }

    #[test]
    fn fallback_is_unique_enough() {
        let ids: HashSet<[u8; 8]> = (0..1000)
            .map(|_| {
                let mut buf = [0u8; 8];
                fallback_fill(&mut buf);
                buf
            })
            .collect();
        assert_eq!(ids.len(), 1000);
        let mut odd = [0u8; 5];
        fallback_fill(&mut odd);
    }

    #[test]
    fn run_id_checks() {
        assert!(is_root_run_id("run_0123456789abcdef"));
        assert!(!is_root_run_id("run_0123456789ABCDEF"));
        assert!(!is_root_run_id("run_0123456789abcde"));
        assert!(!is_root_run_id("run_0123456789abcdef.x"));
        assert!(!is_root_run_id("rn_0123456789abcdef"));
        assert_eq!(
            sub_run_id(&sub_run_id("run_0123456789abcdef", "enrich"), "lookup"),
            "run_0123456789abcdef.enrich.lookup"
        );
        assert!(is_run_id("run_0123456789abcdef"));
        assert!(is_run_id("run_0123456789abcdef.enrich.lookup"));
        assert!(!is_run_id("run_0123456789abcdef."));
        assert!(!is_run_id("run_0123456789abcdef.a b"));
        assert!(!is_run_id("x.enrich"));
    }

    #[test]
    fn step_and_runtime_id_patterns() {
        assert!(is_step_id("search-hn_2"));
        assert!(is_step_id(&"a".repeat(64)));
        assert!(!is_step_id(&"a".repeat(65)));
        assert!(!is_step_id(""));
        assert!(!is_step_id("a.b"));
        assert!(!is_step_id("ä"));
        assert!(is_runtime_id("rt-9c41e2"));
        assert!(is_runtime_id("host.example_1"));
        assert!(!is_runtime_id("a/b"));
        assert!(!is_runtime_id(&"r".repeat(65)));
    }

    #[test]
    fn step_address_parse_and_format() {
        let step = StepAddress::parse("classify").unwrap();
        assert_eq!(step, StepAddress::step("classify"));
        assert!(!step.is_item());
        let item = StepAddress::parse("analyze.3").unwrap();
        assert_eq!(item, StepAddress::item("analyze", 3));
        assert_eq!(item.to_string(), "analyze.3");
        assert_eq!("analyze.0".parse::<StepAddress>().unwrap().index, Some(0));
        assert_eq!(
            StepAddress::parse("a.4294967295").unwrap().index,
            Some(u32::MAX)
        );
        for bad in [
            "",
            ".1",
            "a.",
            "a.01",
            "a.-1",
            "a.+1",
            "a.1.2",
            "a b",
            "a.1x",
            "a.4294967296",
        ] {
            assert!(StepAddress::parse(bad).is_err(), "accepted {bad:?}");
        }
        assert!(matches!(
            StepAddress::parse("a.01"),
            Err(StepAddressError::Index(_))
        ));
        assert!(matches!(
            StepAddress::parse("a/b.1"),
            Err(StepAddressError::StepId(_))
        ));
    }
}
