//! The process-wide transport hint (runtime-gateway.md §4.1): which transport a server URL spoke
//! last time, kept 600 s so that later sessions skip a failed probe. A failure through a hint
//! discards it (the caller then negotiates again once).

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};
use url::Url;

const TTL: Duration = Duration::from_secs(600);
/// Enough for every server of a large deployment; beyond it expired hints are purged first.
const MAX_HINTS: usize = 4096;

/// How a server was reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportHint {
    Streamable,
    /// Legacy HTTP+SSE with the stream at this URL.
    Legacy(Url),
}

static HINTS: LazyLock<Mutex<HashMap<String, (TransportHint, Instant)>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The live hint for `server_url`, if any.
pub fn get(server_url: &Url) -> Option<TransportHint> {
    let mut hints = HINTS.lock().unwrap_or_else(PoisonError::into_inner);
    match hints.get(server_url.as_str()) {
        Some((hint, at)) if at.elapsed() < TTL => Some(hint.clone()),
        Some(_) => {
            hints.remove(server_url.as_str());
            None
        }
        None => None,
    }
}

pub fn remember(server_url: &Url, hint: TransportHint) {
    let mut hints = HINTS.lock().unwrap_or_else(PoisonError::into_inner);
    if hints.len() >= MAX_HINTS {
        hints.retain(|_, (_, at)| at.elapsed() < TTL);
        if hints.len() >= MAX_HINTS {
            hints.clear();
        }
    }
    hints.insert(server_url.as_str().to_owned(), (hint, Instant::now()));
}

pub fn forget(server_url: &Url) {
    HINTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(server_url.as_str());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remember_get_forget() {
        let url = Url::parse("http://hint-test.invalid:1/mcp").unwrap();
        assert_eq!(get(&url), None);
        let sse = Url::parse("http://hint-test.invalid:1/mcp/sse").unwrap();
        remember(&url, TransportHint::Legacy(sse.clone()));
        assert_eq!(get(&url), Some(TransportHint::Legacy(sse)));
        forget(&url);
        assert_eq!(get(&url), None);
    }
}
