//! The opaque `GET /runs` cursor: base64url (no padding) of `<created_at>|<id>` of the last run
//! of a page (orchestrator.md §2.6).

use crate::store::Cursor;
use ktsu_shared::time::Timestamp;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn encode_b64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 3);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn decode_b64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let values: Option<Vec<u32>> = text
        .bytes()
        .map(|c| ALPHABET.iter().position(|a| *a == c).map(|p| p as u32))
        .collect();
    let values = values?;
    for chunk in values.chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut n = 0u32;
        for (i, v) in chunk.iter().enumerate() {
            n |= v << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push(((n >> (16 - 8 * i)) & 0xff) as u8);
        }
    }
    Some(out)
}

pub fn encode(cursor: &Cursor) -> String {
    encode_b64(format!("{}|{}", cursor.created_at, cursor.id).as_bytes())
}

pub fn decode(text: &str) -> Option<Cursor> {
    let raw = String::from_utf8(decode_b64(text)?).ok()?;
    let (ts, id) = raw.split_once('|')?;
    Some(Cursor {
        created_at: Timestamp::parse(ts).ok()?,
        id: id.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_spec_example() {
        let c = Cursor {
            created_at: Timestamp::parse("2026-04-28T10:15:02.100000Z").unwrap(),
            id: "run_3f9a0c1d22b7e6a4".into(),
        };
        let text = encode(&c);
        assert_eq!(
            text,
            "MjAyNi0wNC0yOFQxMDoxNTowMi4xMDAwMDBafHJ1bl8zZjlhMGMxZDIyYjdlNmE0"
        );
        assert_eq!(decode(&text), Some(c));
        assert_eq!(decode("!!!"), None);
        assert_eq!(decode("a"), None);
        assert_eq!(decode(&encode_b64(b"no-separator")), None);
    }
}
