//! `gremium demo`: a newcomer's first look. The service on embedded defaults with a
//! public meeting, three synthetic participants publishing over WHIP (each with a
//! different consent), a recording and an HLS livestream already running, and the
//! links a person opens next: the chair's console, the citizens' watch page and a join
//! page, each with a working token.
//!
//! Owns: the demo's script (which meeting, people, consents and outputs) and what it
//! prints. Must not: reach into the crates (everything goes through the HTTP API, as a
//! real client would) or decide anything the service decides.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::config::Config;
use crate::publish::{publish, PublishArgs};

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let mut req = http.request(method, &url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.without_url()))?;
    let status = resp.status();
    let value: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("{url} answered {status}: {value}");
    }
    Ok(value)
}

/// A synthetic participant: their colour, tone and consent.
struct Person {
    name: &'static str,
    color: &'static str,
    tone: f64,
    recording: bool,
    streaming: bool,
}

impl Person {
    const fn new(
        name: &'static str,
        color: &'static str,
        tone: f64,
        recording: bool,
        streaming: bool,
    ) -> Person {
        Person {
            name,
            color,
            tone,
            recording,
            streaming,
        }
    }
}

/// The names of the `people` for whom `consents` holds, for the printout.
fn names_of(people: &[Person], consents: fn(&Person) -> bool) -> String {
    let names: Vec<&str> = people
        .iter()
        .filter(|p| consents(p))
        .map(|p| p.name)
        .collect();
    if names.is_empty() {
        "nobody".into()
    } else {
        names.join(", ")
    }
}

/// Start an output of the meeting (`recordings` or `streams`); its id.
async fn start_output(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    mid: &str,
    kind: &str,
    body: Option<Value>,
) -> anyhow::Result<String> {
    let output = call(
        http,
        reqwest::Method::POST,
        format!("{base}/api/v1/meetings/{mid}/{kind}"),
        token,
        body,
    )
    .await?;
    Ok(output["id"].as_str().context("output id")?.to_string())
}

/// Wait until the recording `rid` has left `stopping`; its final state.
async fn recording_finalized(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    mid: &str,
    rid: &str,
) -> anyhow::Result<String> {
    loop {
        let list = call(
            http,
            reqwest::Method::GET,
            format!("{base}/api/v1/meetings/{mid}/recordings"),
            token,
            None,
        )
        .await?;
        let state = list
            .as_array()
            .and_then(|l| l.iter().find(|r| r["id"] == rid))
            .and_then(|r| r["state"].as_str())
            .context("the recording is not listed")?;
        if !matches!(state, "requested" | "starting" | "active" | "stopping") {
            return Ok(state.to_string());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Wait for every task (no extra dependency for one join).
async fn futures_join_all(tasks: Vec<tokio::task::JoinHandle<anyhow::Result<ExitCode>>>) {
    for t in tasks {
        let _ = t.await;
    }
}

pub async fn demo(config: Config) -> anyhow::Result<ExitCode> {
    let listen = config.listen;
    let data_dir = config.data_dir.clone();
    let loopback_only = listen.ip().is_loopback();
    let mut config = config;
    if loopback_only && config.ice.local_addresses.is_empty() {
        // A demo on loopback keeps its media on loopback too.
        config.ice.local_addresses = vec![listen.ip()];
    }
    let auth = crate::wiring::authenticator(&config)?;
    let moderator = auth.issue_staff_token(
        "demo-moderator",
        &[gremium_signaling::Role::Moderator],
        crate::wiring::unix_now_secs(),
        Duration::from_secs(12 * 3600),
    );
    // The demo decides when the service stops: after its publishers have left.
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::wiring::serve_until(config, async {
        let _ = server_stopped.await;
    }));
    // Links must be openable: a wildcard listen address is reached on loopback (and
    // browsers allow the camera on loopback without TLS).
    let authority = match listen.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            std::net::SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, listen.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, listen.port()))
        }
        _ => listen,
    };
    let base = format!("http://{authority}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut up = false;
    for _ in 0..100 {
        if server.is_finished() {
            break;
        }
        if http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !up {
        return match server.await {
            Ok(Err(e)) => Err(e),
            _ => bail!("the service did not come up on {base}"),
        };
    }
    let meeting = call(
        &http,
        reqwest::Method::POST,
        format!("{base}/api/v1/meetings"),
        &moderator,
        Some(json!({"title": "Demo: Stadtrat, öffentliche Sitzung", "public": true})),
    )
    .await?;
    let mid = meeting["id"].as_str().context("meeting id")?.to_string();
    let people = [
        Person::new("Anna Schmidt", "e53935", 440.0, true, true),
        Person::new("Ben Yılmaz", "1e88e5", 660.0, true, false),
        Person::new("Carla Nowak", "43a047", 880.0, false, false),
    ];
    // The join link is Carla's: she has consented to nothing, so whoever opens it sees
    // the consent dialog first, and their camera takes over her synthetic one (a
    // participant publishes once; a new session replaces the old).
    let mut join_link = None;
    let in_recording = names_of(&people, |p| p.recording);
    let in_stream = names_of(&people, |p| p.streaming);
    let mut seats = Vec::new();
    for Person {
        name,
        color,
        tone,
        recording,
        streaming,
    } in people
    {
        let p = call(
            &http,
            reqwest::Method::POST,
            format!("{base}/api/v1/meetings/{mid}/participants"),
            &moderator,
            Some(json!({"display_name": name})),
        )
        .await?;
        let pid = p["participant"]["id"]
            .as_str()
            .context("participant id")?
            .to_string();
        let join = p["join_token"].as_str().context("join token")?.to_string();
        call(
            &http,
            reqwest::Method::PUT,
            format!("{base}/api/v1/meetings/{mid}/participants/{pid}/consent"),
            &join,
            Some(json!({"recording": recording, "streaming": streaming})),
        )
        .await?;
        if !recording && !streaming {
            join_link = Some((name, format!("{base}/join/{mid}?token={join}")));
        }
        seats.push((name, color, tone, recording, streaming, pid, join));
    }
    // Outputs first, so the recording and the livestream hold the program from the
    // moment the first picture arrives. Neither stops the demo when refused (e.g. a
    // spool disk too full to record): the people are still worth a look.
    let recording = start_output(&http, &base, &moderator, &mid, "recordings", None).await;
    let stream = start_output(
        &http,
        &base,
        &moderator,
        &mid,
        "streams",
        Some(json!({"hls": true})),
    )
    .await;
    let mut publishers = Vec::new();
    for (name, color, tone, recording, streaming, pid, join) in seats {
        let args = PublishArgs {
            server: base.clone(),
            meeting: mid.parse()?,
            token: join,
            pattern: "smpte".into(),
            color: Some(color.into()),
            tone,
            codec: "vp8".into(),
            duration: 0,
            ice_addresses: if loopback_only {
                vec![listen.ip()]
            } else {
                Vec::new()
            },
            width: 640,
            height: 360,
            fps: 30,
            screen: false,
            blink_color: None,
            blink_ms: 4000,
            ice_restart_after: None,
        };
        publishers.push(tokio::spawn(publish(args)));
        println!("participant {name}: id {pid}, consent recording={recording} streaming={streaming}, publishing colour #{color} and a {tone} Hz tone");
    }
    println!();
    println!("Gremium demo running on {base} — meeting {mid}");
    match &recording {
        Ok(rid) => println!(
            "recording {rid} is running; it shows {in_recording} (the others have not consented)"
        ),
        Err(e) => println!("recording not started: {e:#}"),
    }
    match &stream {
        Ok(sid) => println!(
            "livestream {sid} is running: {base}/live/{mid}/index.m3u8; it shows {in_stream}"
        ),
        Err(e) => println!("livestream not started: {e:#}"),
    }
    println!();
    println!("Open next:");
    println!("  chair console:   {base}/console/{mid}?token={moderator}");
    println!("  citizens' watch: {base}/watch/{mid}");
    if let Some((name, link)) = &join_link {
        println!("  join page:       {link}");
        println!("                   (as {name}, who has not consented: the dialog asks first, then your camera replaces the synthetic one)");
    }
    println!();
    println!("moderator token (12 h), for the API:\n  export T={moderator}");
    println!("try:");
    println!("  curl -s -H \"Authorization: Bearer $T\" {base}/api/v1/meetings/{mid}/participants");
    println!("  curl -s -H \"Authorization: Bearer $T\" {base}/api/v1/meetings/{mid}/ledger");
    println!("  websocat \"ws://{authority}/api/v1/meetings/{mid}/events?access_token=$T\"");
    println!("  gremium audit verify --data-dir {}", data_dir.display());
    println!("  {base}/api/v1/openapi.json");
    println!("Ctrl-C (or SIGTERM) stops the demo.");
    // Ctrl-C or SIGTERM; the publishers hear the same signal and leave (WHIP DELETE).
    crate::wiring::shutdown_signal().await;
    // Stop the outputs the demo started, so the recording is finalized into the
    // archive now rather than recovered by the next start. Bounded: a stop must stay
    // prompt (what is not finished is recovered from the spool by the next start).
    let outputs = [
        stream
            .as_ref()
            .ok()
            .map(|id| format!("{base}/api/v1/streams/{id}/stop")),
        recording
            .as_ref()
            .ok()
            .map(|id| format!("{base}/api/v1/recordings/{id}/stop")),
    ];
    for url in outputs.into_iter().flatten() {
        let stop = call(&http, reqwest::Method::POST, url, &moderator, None);
        if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(5), stop).await {
            eprintln!("demo: {e:#}");
        }
    }
    if let Ok(rid) = &recording {
        let finalized = recording_finalized(&http, &base, &moderator, &mid, rid);
        match tokio::time::timeout(Duration::from_secs(8), finalized).await {
            Ok(Ok(state)) => println!("recording {rid}: {state}"),
            Ok(Err(e)) => eprintln!("demo: {e:#}"),
            Err(_) => println!(
                "recording {rid}: still finalizing; the next start with this data directory finishes it"
            ),
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), futures_join_all(publishers)).await;
    let _ = stop_server.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
    Ok(ExitCode::SUCCESS)
}
