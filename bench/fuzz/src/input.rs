//! One fuzz input: a mutated request for the router, or a mutated SDP offer or
//! trickle fragment for the parsers.

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Request};
use uuid::Uuid;

use crate::corpus::{self, Template, BAD_AUTH, HEADERS, OFFER, REQUESTS, SDPFRAGS};
use crate::mutate;
use crate::rng::Rng;
use crate::server::{Tokens, World};

/// What an input is.
pub enum Input {
    /// A request through the router; `route` names its template for the counts.
    Request {
        /// `METHOD template` of the template it came from.
        route: String,
        /// The request (boxed: it is much larger than the parsers' inputs).
        request: Box<Request<Body>>,
    },
    /// SDP text for the offer parser.
    Sdp(String),
    /// Text for the trickle-fragment parser.
    SdpFrag(String),
}

/// Percent-encode everything but unreserved characters and `/` (kept as given when
/// `keep_slash`), so any string makes a valid path.
fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn mutated_sdp(rng: &mut Rng) -> String {
    if rng.chance(70) {
        mutate::lines(rng, OFFER)
    } else {
        let mut b = OFFER.as_bytes().to_vec();
        mutate::bytes(rng, &mut b, SDPFRAGS[0].as_bytes());
        String::from_utf8_lossy(&b).into_owned()
    }
}

fn mutated_frag(rng: &mut Rng) -> String {
    let base = *rng.pick(SDPFRAGS);
    if rng.chance(60) {
        mutate::lines(rng, base)
    } else {
        let mut b = base.as_bytes().to_vec();
        mutate::bytes(rng, &mut b, OFFER.as_bytes());
        String::from_utf8_lossy(&b).into_owned()
    }
}

/// An id for a placeholder: usually the fixture's, sometimes another one.
fn id(rng: &mut Rng, fixture: Uuid, others: &[Uuid]) -> String {
    match rng.below(20) {
        0 => Uuid::new_v4().to_string(),
        1 => others[rng.below(others.len())].to_string(),
        2 => encode(&mutate::string(rng), false),
        3 => fixture.to_string().to_uppercase(),
        4 => fixture.simple().to_string(),
        _ => fixture.to_string(),
    }
}

fn fill(rng: &mut Rng, text: &str, w: &World) -> String {
    let all = [
        w.meetings[0],
        w.meetings[1],
        w.recording,
        w.stream,
        w.session,
        w.participants[0],
    ];
    let meeting = w.meetings[rng.below(2)];
    let pid = *rng.pick(&w.participants);
    text.replace("{meeting}", &id(rng, meeting, &all))
        .replace("{pid}", &id(rng, pid, &all))
        .replace("{rid}", &id(rng, w.recording, &all))
        .replace("{sid}", &id(rng, w.stream, &all))
        .replace("{session}", &id(rng, w.session, &all))
}

fn mutated_path(rng: &mut Rng, path: String) -> String {
    let (p, q) = match path.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (path, None),
    };
    let mut segs: Vec<String> = p.split('/').map(str::to_string).collect();
    match rng.below(6) {
        0 if segs.len() > 1 => {
            let i = 1 + rng.below(segs.len() - 1);
            segs[i] = encode(&mutate::string(rng), false);
        }
        1 => segs.push(encode(&mutate::string(rng), false)),
        2 if segs.len() > 2 => {
            segs.pop();
        }
        3 => segs.push(String::new()),
        _ => {}
    }
    let mut out = segs.join("/");
    let query = match (q, rng.below(4)) {
        (_, 0) => Some(format!(
            "{}={}",
            rng.pick(&[
                "limit",
                "cursor",
                "offset",
                "from",
                "to",
                "q",
                "public",
                "after",
                "content",
                "access_token"
            ]),
            encode(&mutate::string(rng), false)
        )),
        (Some(q), 1) => {
            let mut b = q.into_bytes();
            mutate::bytes(rng, &mut b, b"");
            Some(
                encode(&String::from_utf8_lossy(&b), false)
                    .replace("%3D", "=")
                    .replace("%26", "&"),
            )
        }
        (q, _) => q,
    };
    if let Some(q) = query {
        out.push('?');
        out.push_str(&q);
    }
    out
}

fn body_of(
    rng: &mut Rng,
    t: &Template,
    w: &World,
    mutate_it: bool,
) -> (Option<&'static str>, Vec<u8>) {
    match t.body {
        corpus::Body::None if !mutate_it => (None, Vec::new()),
        corpus::Body::None => {
            let v = mutate::value(rng, 2);
            (Some("application/json"), v.to_string().into_bytes())
        }
        corpus::Body::Json(text) => {
            let text = fill(rng, text, w);
            if !mutate_it {
                return (Some("application/json"), text.into_bytes());
            }
            if rng.chance(70) {
                let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                mutate::json(rng, &mut doc);
                (Some("application/json"), doc.to_string().into_bytes())
            } else {
                let mut b = text.into_bytes();
                mutate::bytes(rng, &mut b, b"{\"a\":[1,2,{}]}");
                (Some("application/json"), b)
            }
        }
        corpus::Body::Sdp => (
            Some("application/sdp"),
            if mutate_it {
                mutated_sdp(rng)
            } else {
                OFFER.to_string()
            }
            .into_bytes(),
        ),
        corpus::Body::SdpFrag => (
            Some("application/trickle-ice-sdpfrag"),
            if mutate_it {
                mutated_frag(rng)
            } else {
                SDPFRAGS[0].to_string()
            }
            .into_bytes(),
        ),
    }
}

fn auth_header(rng: &mut Rng, tokens: &Tokens, w: &World) -> Option<String> {
    let good = |t: &str| format!("Bearer {t}");
    match rng.below(20) {
        0..=5 => Some(good(&tokens.admin)),
        6..=8 => Some(good(&tokens.moderator)),
        9..=10 => Some(good(&tokens.viewer)),
        11..=12 => Some(good(&tokens.archivist)),
        13..=15 => Some(good(&w.join)),
        16 => None,
        17 => Some(rng.pick(BAD_AUTH).to_string()),
        _ => {
            // A real token, mutated.
            let base = match rng.below(3) {
                0 => tokens.admin.clone(),
                1 => w.join.clone(),
                _ => tokens.viewer.clone(),
            };
            let mut b = base.into_bytes();
            mutate::bytes(rng, &mut b, tokens.moderator.as_bytes());
            Some(format!("Bearer {}", String::from_utf8_lossy(&b)))
        }
    }
}

/// Input `rng` describes, for fixtures `w`.
pub fn next(rng: &mut Rng, tokens: &Tokens, w: &World) -> Input {
    match rng.below(100) {
        0..=9 => return Input::Sdp(mutated_sdp(rng)),
        10..=17 => return Input::SdpFrag(mutated_frag(rng)),
        _ => {}
    }
    let t = rng.pick(REQUESTS);
    let route = format!(
        "{} {}",
        t.method,
        t.path.split('?').next().unwrap_or(t.path)
    );
    let mut path = fill(rng, t.path, w);
    if rng.chance(20) {
        path = mutated_path(rng, path);
    }
    let method = if rng.chance(8) {
        *rng.pick(&[
            "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "BREW",
        ])
    } else {
        t.method
    };
    let mutate_body = rng.chance(55);
    let (ctype, body) = body_of(rng, t, w, mutate_body);
    let mut req = Request::builder().method(method).uri(path.as_str());
    if let Some(a) = auth_header(rng, tokens, w) {
        if let Ok(v) = HeaderValue::from_str(&a) {
            req = req.header("authorization", v);
        }
    }
    let mut ctype = ctype.map(str::to_string);
    if rng.chance(8) {
        ctype = Some(rng.pick(HEADERS[2].1).to_string());
    }
    if let Some(c) = ctype {
        if let Ok(v) = HeaderValue::from_str(&c) {
            req = req.header("content-type", v);
        }
    }
    for _ in 0..rng.below(3) {
        if rng.chance(50) {
            let (name, values) = rng.pick(HEADERS);
            let value = if rng.chance(80) {
                rng.pick(values).to_string()
            } else {
                mutate::string(rng)
            };
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                req = req.header(n, v);
            }
        }
    }
    match req.body(Body::from(body)) {
        Ok(request) => Input::Request {
            route,
            request: Box::new(request),
        },
        // A URI the HTTP layer would not accept: give the parsers the bytes instead.
        Err(_) => Input::SdpFrag(path),
    }
}
