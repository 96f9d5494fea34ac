//! Mutations: byte-level (flip, insert, delete, splice, repeat) and structure-aware
//! (JSON values, SDP lines, path segments, header values), all driven by [`Rng`].

use serde_json::{Map, Value};

use crate::rng::Rng;

/// Strings that tend to break parsers and validators.
pub const NASTY: &[&str] = &[
    "",
    " ",
    "\0",
    "a\0b",
    "\u{1b}[31mred\u{1b}[0m",
    "line\nbreak",
    "\r\n\r\n",
    "\u{202e}evil\u{202c}",
    "\u{2066}x\u{2069}",
    "\u{feff}",
    "💥",
    "ä ö ü ß",
    "../../etc/passwd",
    "%00",
    "%2e%2e%2f",
    "' or 1=1 --",
    "\"; drop table meetings; --",
    "<script>alert(1)</script>",
    "${jndi:ldap://127.0.0.1/x}",
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "not-a-uuid",
    "-1",
    "0",
    "18446744073709551616",
    "-9223372036854775809",
    "1e309",
    "NaN",
    "true",
    "null",
    "{}",
    "[]",
];

/// A string of `n` repetitions of a random character.
fn long(rng: &mut Rng) -> String {
    let n = *rng.pick(&[64usize, 201, 501, 1025, 5000, 70_000]);
    let c = *rng.pick(&['a', 'ä', '💥', '\0', ' ', '/']);
    std::iter::repeat_n(c, n).collect()
}

/// A random string: nasty, long, or random bytes made UTF-8.
pub fn string(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => long(rng),
        1 => {
            let bytes: Vec<u8> = (0..rng.below(40)).map(|_| rng.byte()).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ => rng.pick(NASTY).to_string(),
    }
}

/// A random JSON value, nested at most `depth` deep.
pub fn value(rng: &mut Rng, depth: u32) -> Value {
    match rng.below(if depth == 0 { 6 } else { 8 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.chance(50)),
        2 => Value::from(*rng.pick(&[
            0i64,
            -1,
            1,
            29,
            30,
            200,
            201,
            3650,
            3651,
            i64::MAX,
            i64::MIN,
        ])),
        3 => serde_json::Number::from_f64(*rng.pick(&[0.5, -0.0, 1e300, -1e-300]))
            .map(Value::Number)
            .unwrap_or(Value::Null),
        4 | 5 => Value::String(string(rng)),
        6 => Value::Array((0..rng.below(4)).map(|_| value(rng, depth - 1)).collect()),
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.below(4) {
                m.insert(string(rng), value(rng, depth - 1));
            }
            Value::Object(m)
        }
    }
}

/// Mutate a JSON document in place: change, drop or add a field, change its type,
/// or replace the whole document.
pub fn json(rng: &mut Rng, doc: &mut Value) {
    match doc {
        Value::Object(m) if !m.is_empty() && rng.chance(85) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            let key = rng.pick(&keys).clone();
            match rng.below(5) {
                0 => {
                    m.remove(&key);
                }
                1 => {
                    m.insert(string(rng), value(rng, 2));
                }
                2 => {
                    // Recurse into the field.
                    if let Some(v) = m.get_mut(&key) {
                        json(rng, v);
                    }
                }
                _ => {
                    m.insert(key, value(rng, 2));
                }
            }
        }
        Value::Array(items) if !items.is_empty() && rng.chance(70) => {
            let i = rng.below(items.len());
            match rng.below(3) {
                0 => {
                    items.remove(i);
                }
                1 => {
                    let v = items[i].clone();
                    for _ in 0..rng.below(300) {
                        items.push(v.clone());
                    }
                }
                _ => json(rng, &mut items[i]),
            }
        }
        _ => *doc = value(rng, 3),
    }
}

/// Byte-level mutation: `rounds` random edits.
pub fn bytes(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                for _ in 0..n {
                    data.insert(i, rng.byte());
                }
            }
            2 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                data.drain(i..i + n);
            }
            3 if len > 0 => data.truncate(rng.below(len)),
            4 if !other.is_empty() => {
                // Splice: our head, the other input's tail.
                let i = rng.below(len + 1);
                let j = rng.below(other.len());
                data.truncate(i);
                data.extend_from_slice(&other[j..]);
            }
            5 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(32));
                let chunk = data[i..i + n].to_vec();
                for _ in 0..1 + rng.below(64) {
                    data.extend_from_slice(&chunk);
                }
            }
            6 => {
                let i = rng.below(len + 1);
                let s = rng.pick(NASTY).as_bytes().to_vec();
                data.splice(i..i, s);
            }
            _ if len > 0 => {
                let i = rng.below(len);
                data[i] = *rng.pick(b"\0\r\n:;=\"{}[]\\/ \xff\xc3");
            }
            _ => data.push(rng.byte()),
        }
    }
}

/// Line-aware mutation of SDP-like text: drop, duplicate, swap or garble a line,
/// or change one field of it.
pub fn lines(rng: &mut Rng, text: &str) -> String {
    let mut ls: Vec<String> = text.split("\r\n").map(str::to_string).collect();
    if ls.is_empty() {
        return text.to_string();
    }
    for _ in 0..1 + rng.below(3) {
        let i = rng.below(ls.len());
        match rng.below(6) {
            0 => {
                ls.remove(i);
                if ls.is_empty() {
                    break;
                }
            }
            1 => {
                let l = ls[i].clone();
                for _ in 0..1 + rng.below(50) {
                    ls.insert(i, l.clone());
                }
            }
            2 => {
                let j = rng.below(ls.len());
                ls.swap(i, j);
            }
            3 => {
                // One whitespace/colon-separated field replaced.
                let parts: Vec<&str> = ls[i].split([' ', ':']).collect();
                let k = rng.below(parts.len());
                let mut out = Vec::new();
                for (n, p) in parts.iter().enumerate() {
                    out.push(if n == k { string(rng) } else { p.to_string() });
                }
                ls[i] = out.join(" ");
            }
            4 => ls[i] = format!("{}{}", ls[i], string(rng)),
            _ => {
                let mut b = ls[i].clone().into_bytes();
                bytes(rng, &mut b, &[]);
                ls[i] = String::from_utf8_lossy(&b).into_owned();
            }
        }
    }
    let sep = if rng.chance(10) { "\n" } else { "\r\n" };
    ls.join(sep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_mutation_changes_documents_reproducibly() {
        let doc = serde_json::json!({"title": "Rat", "public": true});
        let run = |seed| {
            let mut rng = Rng::for_input(seed, 0);
            let mut d = doc.clone();
            json(&mut rng, &mut d);
            d
        };
        assert_eq!(run(1), run(1));
        assert!((0..20).any(|s| run(s) != doc));
    }

    #[test]
    fn byte_mutation_never_panics_on_empty_input() {
        for i in 0..1000 {
            let mut rng = Rng::for_input(0, i);
            let mut d = Vec::new();
            bytes(&mut rng, &mut d, b"x");
            let _ = lines(&mut rng, "");
        }
    }
}
