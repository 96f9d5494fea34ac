//! `gremium-fuzz N [--seed S] [--brief]`: N inputs — mutated API requests (every route and
//! method, JSON bodies, path ids, queries, headers, tokens), WHIP SDP offers and
//! trickle-ICE fragments — through Gremium's real router (in-process, SQLite, a media
//! plane without media) and through the pure parsers directly. Prints counts by
//! outcome; exits 1 on a panic, a hang (no answer in 5 s) or a 5xx not listed in
//! [`INTENDED_5XX`].
//!
//! Stable Rust only (no libFuzzer): the mutations start from a corpus of valid
//! inputs (`corpus.rs`) and are seeded, so input `i` of seed `S` is the same input on
//! every run (the server's state, which earlier inputs change, may differ).

mod corpus;
mod input;
mod mutate;
mod plane;
mod rng;
mod server;

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use input::Input;
use rng::Rng;
use server::{Server, World};

/// 5xx answers that are the intended behaviour: (status, route). None so far.
const INTENDED_5XX: &[(u16, &str)] = &[];

/// New fixtures this often (earlier inputs end meetings and remove participants).
const WORLD_EVERY: u64 = 5_000;
/// A fresh server and database this often: the database only grows (every accepted
/// request adds rows and ledger entries, and `GET /audit/verify` walks the whole
/// ledger), so without it a long run measures the database's size, not the inputs.
const SERVER_EVERY: u64 = 50_000;
/// A request that has not answered after this long is a hang.
const HANG: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Report {
    counts: BTreeMap<String, u64>,
    failures: Vec<String>,
    failed: u64,
}

impl Report {
    fn count(&mut self, key: String) {
        *self.counts.entry(key).or_default() += 1;
    }

    fn fail(&mut self, what: String) {
        self.failed += 1;
        if self.failures.len() < 20 {
            self.failures.push(what);
        }
    }
}

/// Counter and first messages of panics anywhere (handlers, spawned tasks).
static PANICS: AtomicU64 = AtomicU64::new(0);

/// What the command line asks for.
struct Args {
    inputs: u64,
    seed: u64,
    /// Counts by outcome only, not by route.
    brief: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut n, mut seed, mut brief) = (None, 1u64, false);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--brief" => brief = true,
            "--seed" => {
                seed = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .ok_or("--seed takes a number")?
            }
            other => {
                n = Some(
                    other
                        .parse::<u64>()
                        .map_err(|_| format!("not a count: {other}"))?,
                )
            }
        }
    }
    Ok(Args {
        inputs: n.ok_or("usage: gremium-fuzz N [--seed S] [--brief]")?,
        seed,
        brief,
    })
}

/// The error kind of a parser message: up to its first `:` (messages may quote input).
fn kind(message: &str) -> String {
    message
        .split(':')
        .next()
        .unwrap_or(message)
        .chars()
        .take(60)
        .collect()
}

fn run_parsers(input: &Input, report: &mut Report) {
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| match input {
        Input::Sdp(text) => match gremium_pipelines::webrtc::parse_sdp(text) {
            Ok(sdp) => {
                // What the real media plane does next with an offer's text.
                let _ = gremium_pipelines::webrtc::announce_address(text, [127, 0, 0, 1].into());
                match sdp.medias_len() {
                    n @ 1..=2 => format!("sdp offer: parsed ({n} media)"),
                    _ => "sdp offer: parsed (3 or more media)".to_string(),
                }
            }
            Err(e) => format!("sdp offer: {}", kind(&pipeline_message(e))),
        },
        Input::SdpFrag(text) => match gremium_signaling::api::whip::parse_sdpfrag(text) {
            Ok(frag) => match (&frag.ufrag, &frag.pwd) {
                (Some(u), p) => match gremium_pipelines::ice_restart::validate_credentials(
                    u,
                    p.as_deref().unwrap_or(""),
                ) {
                    Ok(()) => "sdpfrag: parsed, ICE restart credentials valid".to_string(),
                    Err(e) => format!(
                        "sdpfrag: parsed, credentials refused: {}",
                        kind(&pipeline_message(e))
                    ),
                },
                (None, _) => "sdpfrag: parsed, candidates only".to_string(),
            },
            Err(e) => format!("sdpfrag: {}", kind(&e)),
        },
        Input::Request { .. } => unreachable!("requests go to the router"),
    }));
    match outcome {
        Ok(key) => report.count(key),
        Err(_) => report.fail(format!("parser panicked on {:?}", debug_input(input))),
    }
}

/// The message of an SDP error without its "SDP: " prefix.
fn pipeline_message(e: gremium_pipelines::PipelineError) -> String {
    match e {
        gremium_pipelines::PipelineError::Sdp(m) => m,
        other => other.to_string(),
    }
}

fn debug_input(input: &Input) -> String {
    match input {
        Input::Sdp(t) | Input::SdpFrag(t) => t.chars().take(300).collect(),
        Input::Request { route, request } => {
            format!("{route}: {} {}", request.method(), request.uri())
        }
    }
}

async fn run(n: u64, seed: u64) -> Result<Report, String> {
    let mut server = Server::start().await?;
    let mut worlds: Vec<World> = vec![server.world().await?];
    let mut report = Report::default();
    let started = Instant::now();
    for i in 0..n {
        if i > 0 && i % SERVER_EVERY == 0 {
            // The old one's scratch directory goes with it.
            server = Server::start().await?;
            worlds = vec![server.world().await?];
            eprintln!("{i} inputs, {:.0} s", started.elapsed().as_secs_f64());
        } else if i > 0 && i % WORLD_EVERY == 0 {
            worlds.push(server.world().await?);
            if worlds.len() > 3 {
                worlds.remove(0);
            }
        }
        let mut rng = Rng::for_input(seed, i);
        let world = worlds[rng.below(worlds.len())].clone();
        let input = input::next(&mut rng, &server.tokens, &world);
        let Input::Request { route, request } = input else {
            run_parsers(&input, &mut report);
            continue;
        };
        let what = format!("input {i}: {route}: {} {}", request.method(), request.uri());
        let panics = PANICS.load(Ordering::SeqCst);
        match AssertUnwindSafe(server.send(*request, HANG))
            .catch_unwind()
            .await
        {
            Err(_) => report.fail(format!("panic: {what}")),
            Ok(None) => report.fail(format!("no answer within {HANG:?}: {what}")),
            Ok(Some((status, body))) => {
                let code = status.as_u16();
                report.count(format!("router {code}"));
                report.count(format!("route {route} {code}"));
                let intended = INTENDED_5XX.iter().any(|(s, r)| *s == code && *r == route);
                if status.is_server_error() && !intended {
                    report.fail(format!(
                        "{code}: {what}: {}",
                        String::from_utf8_lossy(&body)
                    ));
                }
            }
        }
        if PANICS.load(Ordering::SeqCst) != panics {
            report.fail(format!("a task panicked while serving {what}"));
        }
    }
    Ok(report)
}

fn main() {
    let Args {
        inputs: n,
        seed,
        brief,
    } = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let messages = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = messages.clone();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        let mut m = seen.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() < 10 {
            m.push(info.to_string());
        }
    }));
    if let Err(e) = gst::init() {
        eprintln!("GStreamer: {e}");
        std::process::exit(2);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tokio: {e}");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    let report = match runtime.block_on(run(n, seed)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("setting up: {e}");
            std::process::exit(2);
        }
    };
    let secs = started.elapsed().as_secs_f64();
    println!(
        "gremium-fuzz: {n} inputs, seed {seed}, {secs:.1} s ({:.0} inputs/s)",
        n as f64 / secs
    );
    for (k, v) in report
        .counts
        .iter()
        .filter(|(k, _)| !k.starts_with("route "))
    {
        println!("{v:>10}  {k}");
    }
    if !brief {
        println!("by route:");
        for (k, v) in report
            .counts
            .iter()
            .filter(|(k, _)| k.starts_with("route "))
        {
            println!("{v:>10}  {}", &k["route ".len()..]);
        }
    }
    let panics = PANICS.load(Ordering::SeqCst);
    for m in messages.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        println!("panic: {m}");
    }
    for f in &report.failures {
        println!("FAIL {f}");
    }
    if report.failed > 0 || panics > 0 {
        println!("{} failures, {panics} panics", report.failed);
        std::process::exit(1);
    }
    println!("no panic, no hang, no unintended 5xx");
}
