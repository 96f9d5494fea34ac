//! The README's flow against the real `gremium` binary on embedded defaults:
//! `gremium serve` on a fresh data directory, `gremium token`, HTTP calls from a
//! client with its own loopback address, WebSocket events, `gremium audit verify`
//! (intact, then broken after a row is altered in SQL), and logs free of tokens and
//! client addresses.

mod common;

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{next_event, wait_event};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_gremium");
/// The test client's source address: it must never show up in the server's logs.
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    child: Child,
    stderr_path: std::path::PathBuf,
}

impl Server {
    fn logs(&self) -> String {
        let mut s = String::new();
        std::fs::File::open(&self.stderr_path)
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        s
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gremium(args: &[&str], data_dir: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("GREMIUM_CONFIG")
        .env_remove("GREMIUM_DATABASE_URL")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn start_server(data_dir: &std::path::Path, port: u16) -> Server {
    start_server_with(data_dir, port, None).await
}

async fn start_server_with(
    data_dir: &std::path::Path,
    port: u16,
    config: Option<&std::path::Path>,
) -> Server {
    let stderr_path = data_dir.with_extension("stderr.log");
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&stderr_path)
        .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
    ])
    .arg(data_dir)
    .env("RUST_LOG", "debug")
    .env_remove("GREMIUM_CONFIG")
    .env_remove("GREMIUM_DATABASE_URL");
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    let child = cmd.stdout(Stdio::null()).stderr(stderr).spawn().unwrap();
    let server = Server { child, stderr_path };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await {
            if r.status() == 200 {
                return server;
            }
        }
        assert!(
            Instant::now() < deadline,
            "server did not come up: {}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Create a meeting (asserts 201); its id.
async fn create_meeting(http: &reqwest::Client, base: &str, token: &str, title: &str) -> String {
    let (s, m) = call(
        http,
        reqwest::Method::POST,
        &format!("{base}/api/v1/meetings"),
        token,
        Some(json!({ "title": title })),
    )
    .await;
    assert_eq!(s, 201, "{m}");
    m["id"].as_str().unwrap().to_string()
}

/// Start recording a meeting (asserts 201); the recording's id.
async fn start_recording(http: &reqwest::Client, base: &str, token: &str, mid: &str) -> String {
    let (s, rec) = call(
        http,
        reqwest::Method::POST,
        &format!("{base}/api/v1/meetings/{mid}/recordings"),
        token,
        None,
    )
    .await;
    assert_eq!(s, 201, "{rec}");
    rec["id"].as_str().unwrap().to_string()
}

/// Poll a recording until it is finished (fails on `failed` or after 30 s).
async fn wait_finished(http: &reqwest::Client, base: &str, rid: &str, token: &str) -> Value {
    wait_state(http, base, rid, token, "finished").await
}

/// Poll a recording until it is in `state` (`finished` or `failed`; 30 s), failing
/// at once if it lands in the other one.
async fn wait_state(
    http: &reqwest::Client,
    base: &str,
    rid: &str,
    token: &str,
    state: &str,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (s, r) = call(
            http,
            reqwest::Method::GET,
            &format!("{base}/api/v1/recordings/{rid}"),
            token,
            None,
        )
        .await;
        assert_eq!(s, 200, "{r}");
        if r["state"] == state {
            return r;
        }
        assert!(
            r["state"] != "finished" && r["state"] != "failed",
            "wanted {state}: {r}"
        );
        assert!(Instant::now() < deadline, "not {state}: {r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// ffprobe a recording's media over HTTP, as a player would: the codec names.
fn probe_codecs(base: &str, rid: &str, token: &str) -> String {
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=codec_name"])
        .args(["-of", "csv=p=0", "-headers"])
        .arg(format!("Authorization: Bearer {token}\r\n"))
        .arg(format!("{base}/api/v1/recordings/{rid}/media"))
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    String::from_utf8_lossy(&probe.stdout).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_flow_against_the_real_binary() {
    let data_dir =
        std::env::temp_dir().join(format!("gremium-cli-{}", uuid::Uuid::new_v4().simple()));
    let port = free_port();
    let server = start_server(&data_dir, port).await;
    let base = format!("http://127.0.0.1:{port}");
    assert!(
        data_dir.join("gremium.db").exists(),
        "SQLite file under the data directory"
    );
    assert!(
        data_dir.join("objects").is_dir(),
        "local object store under the data directory"
    );
    // Free space of the spool and live disks, for alerts (set at the start).
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for dir in ["spool", "live"] {
        let free: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("gremium_disk_free_bytes{{dir=\"{dir}\"}} ")))
            .unwrap_or_else(|| panic!("no free-space gauge for {dir}: {metrics}"))
            .trim()
            .parse()
            .unwrap();
        assert!(free > 0.0, "{dir}: {free}");
    }

    let (code, token, err) = gremium(&["token", "--role", "moderator"], &data_dir);
    assert_eq!(code, 0, "{err}");
    let moderator = token.trim().to_string();
    let (code, token, _) = gremium(
        &["token", "--role", "archivist", "--subject", "archiv"],
        &data_dir,
    );
    assert_eq!(code, 0);
    let archivist = token.trim().to_string();
    let (code, _, err) = gremium(&["token", "--role", "emperor"], &data_dir);
    assert_ne!(code, 0);
    assert!(err.contains("--role"), "{err}");

    let http = reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::V4(CLIENT_IP))
        .build()
        .unwrap();
    use reqwest::Method;
    let mid = create_meeting(&http, &base, &moderator, "Gemeinderat").await;
    let (s, p) = call(
        &http,
        Method::POST,
        &format!("{base}/api/v1/meetings/{mid}/participants"),
        &moderator,
        Some(json!({"display_name": "Karl"})),
    )
    .await;
    assert_eq!(s, 201, "{p}");
    let pid = p["participant"]["id"].as_str().unwrap().to_string();
    let join = p["join_token"].as_str().unwrap().to_string();

    // WebSocket client from the same foreign loopback address.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(IpAddr::V4(CLIENT_IP), 0))
        .unwrap();
    let stream = socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(
        format!("ws://127.0.0.1:{port}/api/v1/meetings/{mid}/events?access_token={moderator}"),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
    )
    .await
    .unwrap();
    assert_eq!(next_event(&mut ws).await["type"], "snapshot");

    let (s, r) = call(
        &http,
        Method::PUT,
        &format!("{base}/api/v1/meetings/{mid}/participants/{pid}/consent"),
        &join,
        Some(json!({"recording": true, "streaming": false})),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let e = wait_event(&mut ws, "consent_changed", |_| true).await;
    assert_eq!(e["recording"], true);

    // Record (nobody publishes: the recording holds the empty program).
    let rid = start_recording(&http, &base, &moderator, &mid).await;
    wait_event(&mut ws, "recording_state_changed", |e| {
        e["state"] == "active"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (s, v) = call(
        &http,
        Method::GET,
        &format!("{base}/api/v1/audit/verify"),
        &archivist,
        None,
    )
    .await;
    assert_eq!((s, v["intact"].as_bool()), (200, Some(true)), "{v}");
    let (s, _) = call(
        &http,
        Method::POST,
        &format!("{base}/api/v1/meetings/{mid}/end"),
        &moderator,
        None,
    )
    .await;
    assert_eq!(s, 200);
    wait_event(&mut ws, "meeting_ended", |_| true).await;
    // Ending the meeting stopped its recording; once post-processing stored it, the
    // archive serves media ffprobe reads (decrypted on the fly, over HTTP).
    wait_finished(&http, &base, &rid, &archivist).await;
    let codecs = probe_codecs(&base, &rid, &archivist);
    assert!(
        codecs.contains("h264") && codecs.contains("aac"),
        "{codecs}"
    );

    let logs = server.logs();
    assert!(
        logs.contains("request"),
        "debug request log present: {logs}"
    );
    for secret in [moderator.as_str(), archivist.as_str(), join.as_str()] {
        let signature = secret.rsplit('.').next().unwrap();
        assert!(!logs.contains(signature), "a token reached the log");
    }
    assert!(
        !logs.contains(&CLIENT_IP.to_string()),
        "the client address reached the log:\n{logs}"
    );
    assert!(
        !logs.contains("access_token"),
        "query strings stay out of the log"
    );
    drop(ws);
    drop(server);

    let (code, out, err) = gremium(&["audit", "verify"], &data_dir);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("ledger intact"), "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["intact"], true);
    assert!(report["entries"].as_u64().unwrap() >= 4);

    // Alter a consent entry directly in the database file.
    let url = format!("sqlite://{}", data_dir.join("gremium.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let changed =
        sqlx::query("update ledger_entries set at = at + 1 where kind = 'consent_changed'")
            .execute(&pool)
            .await
            .unwrap();
    assert_eq!(changed.rows_affected(), 1);
    pool.close().await;
    let (code, out, err) = gremium(&["audit", "verify"], &data_dir);
    assert_eq!(code, 1, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["intact"], false);
    assert_eq!(report["first_broken"]["chain_id"], mid.as_str());
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[test]
fn bad_configuration_is_refused_with_the_key_named() {
    let dir = std::env::temp_dir().join(format!("gremium-cfg-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("gremium.toml");
    std::fs::write(&cfg, "[limits]\nmax_body_bytes = \"lots\"\n").unwrap();
    let out = Command::new(BIN)
        .args(["migrate", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max_body_bytes"), "{err}");
    let out = Command::new(BIN)
        .args(["serve", "--listen", "not-an-address", "--data-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The first word of `line` after `prefix`, when `line` starts with it.
fn word_after<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    line.trim_start()
        .strip_prefix(prefix)?
        .split_whitespace()
        .next()
}

/// Set `slot` to `value` unless it holds one already.
fn keep_first(slot: &mut Option<String>, value: Option<&str>) {
    if slot.is_none() {
        *slot = value.map(str::to_string);
    }
}

/// `GET url` without a token: (status, body).
async fn get_text(http: &reqwest::Client, url: &str) -> (u16, String) {
    let r = http.get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// `gremium demo` is a newcomer's first look: the links it prints open the right pages
/// with tokens that work, a recording runs, the livestream's playlist fills with
/// segments within a minute, and SIGTERM still ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_a_meeting_with_three_publishing_participants() {
    use base64::Engine;
    use tokio::io::{AsyncBufReadExt, BufReader};
    let data_dir =
        std::env::temp_dir().join(format!("gremium-demo-{}", uuid::Uuid::new_v4().simple()));
    let port = free_port();
    let started = Instant::now();
    let mut child = tokio::process::Command::new(BIN)
        .args([
            "demo",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(&data_dir)
        .env_remove("GREMIUM_CONFIG")
        .env_remove("GREMIUM_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut token, mut meeting, mut publishing) = (None, None, 0);
    let (mut console, mut watch, mut join) = (None, None, None);
    let (mut recording, mut livestream) = (None, None);
    let collect = async {
        // The publishers print as they connect, which may be before or after the
        // demo's own block: read until both are complete.
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(t) = line.trim().strip_prefix("export T=") {
                token = Some(t.to_string());
            }
            if let Some(rest) = line.strip_prefix("Gremium demo running on ") {
                meeting = rest.rsplit(' ').next().map(str::to_string);
            }
            if line.starts_with("publishing to meeting") {
                publishing += 1;
            }
            if line.contains(" is running") {
                keep_first(&mut recording, word_after(&line, "recording "));
                keep_first(&mut livestream, word_after(&line, "livestream "));
            }
            keep_first(&mut console, word_after(&line, "chair console:"));
            keep_first(&mut watch, word_after(&line, "citizens' watch:"));
            keep_first(&mut join, word_after(&line, "join page:"));
            if publishing == 3 && token.is_some() && join.is_some() {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), collect)
        .await
        .expect("demo publishes three participants and prints its links");
    let (token, meeting) = (
        token.expect("token printed"),
        meeting.expect("meeting printed"),
    );
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let (s, ps) = call(
        &http,
        reqwest::Method::GET,
        &format!("{base}/api/v1/meetings/{meeting}/participants"),
        &token,
        None,
    )
    .await;
    assert_eq!(s, 200);
    let consents: Vec<(bool, bool)> = ps
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["consent"]["recording"].as_bool().unwrap(),
                p["consent"]["streaming"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(consents, [(true, true), (true, false), (false, false)]);

    // The links: each answers 200 with its own page, and carries a token that works.
    let console = console.expect("console link printed");
    let watch = watch.expect("watch link printed");
    let join = join.expect("join link printed");
    assert_eq!(console, format!("{base}/console/{meeting}?token={token}"));
    assert_eq!(watch, format!("{base}/watch/{meeting}"));
    let join_token = join
        .strip_prefix(&format!("{base}/join/{meeting}?token="))
        .unwrap_or_else(|| panic!("join link {join}"))
        .to_string();
    for (link, title) in [
        (&console, "<title>Sitzungsleitung – Gremium</title>"),
        (&watch, "<title>Livestream – Gremium</title>"),
        (&join, "<title>Sitzung – Gremium</title>"),
    ] {
        let (s, page) = get_text(&http, link).await;
        assert_eq!(s, 200, "{link}");
        assert!(
            page.contains(title),
            "{link} is not the page titled {title}"
        );
    }
    // The console's token is a moderator's: it may list the meeting's recordings,
    // which a participant's token may not.
    let recordings_url = format!("{base}/api/v1/meetings/{meeting}/recordings");
    let (s, _) = call(&http, reqwest::Method::GET, &recordings_url, &token, None).await;
    assert_eq!(s, 200);
    let (s, _) = call(
        &http,
        reqwest::Method::GET,
        &recordings_url,
        &join_token,
        None,
    )
    .await;
    assert_eq!(s, 403);
    // The join token is the participant's whose consent the page asks for (the page
    // takes the participant id from the token's `sub`, so must this test).
    let claims = join_token.split('.').nth(1).expect("a JWT");
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    let pid = claims["sub"].as_str().expect("sub").to_string();
    let (s, p) = call(
        &http,
        reqwest::Method::GET,
        &format!("{base}/api/v1/meetings/{meeting}"),
        &join_token,
        None,
    )
    .await;
    assert_eq!((s, p["id"].as_str()), (200, Some(meeting.as_str())), "{p}");
    let (s, c) = call(
        &http,
        reqwest::Method::GET,
        &format!("{base}/api/v1/meetings/{meeting}/participants/{pid}/consent"),
        &join_token,
        None,
    )
    .await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(
        (c["recording"].as_bool(), c["streaming"].as_bool()),
        (Some(false), Some(false)),
        "{c}"
    );
    // A token that is not the printed one is refused: the checks above are real.
    let forged = format!("{join_token}x");
    let (s, _) = call(
        &http,
        reqwest::Method::GET,
        &format!("{base}/api/v1/meetings/{meeting}"),
        &forged,
        None,
    )
    .await;
    assert_eq!(s, 401);

    // A recording runs: the one printed, active.
    let rid = recording.expect("recording printed as running");
    let deadline = started + Duration::from_secs(60);
    loop {
        let (s, list) = call(&http, reqwest::Method::GET, &recordings_url, &token, None).await;
        assert_eq!(s, 200);
        let state = list
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == rid.as_str())
            .map(|r| r["state"].clone());
        if state == Some(json!("active")) {
            break;
        }
        assert!(Instant::now() < deadline, "recording {rid}: {list}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The livestream: the watch page goes live and the playlist fills with segments
    // within a minute of the start.
    livestream.expect("livestream printed as running");
    let media = loop {
        let (s, status) = get_text(&http, &format!("{base}/watch/{meeting}/status")).await;
        assert_eq!(s, 200);
        let status: Value = serde_json::from_str(&status).unwrap();
        if status["state"] == "live" {
            let hls = status["hls"].as_str().expect("a playlist while live");
            assert_eq!(hls, format!("/live/{meeting}/index.m3u8"));
            let (s, master) = get_text(&http, &format!("{base}{hls}")).await;
            // The first variant (a URI relative to the master playlist).
            let variant = master
                .lines()
                .skip_while(|l| !l.starts_with("#EXT-X-STREAM-INF"))
                .nth(1)
                .map(str::to_string);
            if let (200, Some(variant)) = (s, variant) {
                let (s, media) = get_text(&http, &format!("{base}/live/{meeting}/{variant}")).await;
                if s == 200 && media.contains("#EXTINF") {
                    break media;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no HLS segment within a minute: {status}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(media.starts_with("#EXTM3U"), "{media}");

    // SIGTERM (docker stop, systemd, Kubernetes); Ctrl-C takes the same path.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("demo stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    // It stopped its outputs first: the recording is finished, not left to recovery.
    let mut rest = Vec::new();
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_secs(5), lines.next_line()).await
    {
        rest.push(line);
    }
    assert!(
        rest.contains(&format!("recording {rid}: finished")),
        "{rest:#?}"
    );
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// `kill -9` of the server mid-recording: the next start finalizes the encrypted spool
/// it left and registers the recording, which then plays through the archive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_survives_kill_9_of_the_server() {
    use reqwest::Method;
    let data_dir =
        std::env::temp_dir().join(format!("gremium-crash-{}", uuid::Uuid::new_v4().simple()));
    let port = free_port();
    let mut server = start_server(&data_dir, port).await;
    let base = format!("http://127.0.0.1:{port}");
    let (_, token, _) = gremium(&["token", "--role", "moderator"], &data_dir);
    let moderator = token.trim().to_string();
    let (_, token, _) = gremium(&["token", "--role", "archivist"], &data_dir);
    let archivist = token.trim().to_string();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mid = create_meeting(&http, &base, &moderator, "Kreistag").await;
    let rid = start_recording(&http, &base, &moderator, &mid).await;
    let recording_since = std::time::Instant::now();
    let spool = data_dir.join("spool").join(format!("{rid}.spool"));
    // A second meeting's recording, whose spool will be unreadable after the crash.
    let other = create_meeting(&http, &base, &moderator, "Bauausschuss").await;
    let broken = start_recording(&http, &base, &moderator, &other).await;
    let broken_spool = data_dir.join("spool").join(format!("{broken}.spool"));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        std::fs::metadata(&spool).unwrap().len() > 10_000,
        "spool is being written"
    );
    server.child.kill().unwrap(); // SIGKILL
    let ran = recording_since.elapsed().as_secs_f64();
    server.child.wait().unwrap();
    drop(server);
    let len = std::fs::metadata(&broken_spool).unwrap().len() as usize;
    std::fs::write(&broken_spool, vec![0u8; len]).unwrap();

    let mut server = start_server(&data_dir, port).await;
    let view = wait_finished(&http, &base, &rid, &archivist).await;
    assert_eq!(view["media"]["probe"]["recovered"], true, "{view}");
    let recovered = view["media"]["duration_s"].as_f64().unwrap();
    // It ran `ran` seconds (four, plus starting the second recording: more on a
    // busy machine); at most the last fragment (1 s) and the start may be lost.
    assert!(
        (ran - 1.5..ran + 1.0).contains(&recovered),
        "{recovered} s recovered of {ran:.2} s: {view}"
    );
    assert!(!spool.exists());
    let codecs = probe_codecs(&base, &rid, &archivist);
    assert!(
        codecs.contains("h264") && codecs.contains("aac"),
        "{codecs}"
    );

    // The unreadable spool: the recording is marked failed and its spool stays
    // (encrypted) until the recording is deleted; then it goes too.
    let failed = wait_state(&http, &base, &broken, &archivist, "failed").await;
    assert!(
        failed["failure"]
            .as_str()
            .is_some_and(|f| f.contains("recovery")),
        "{failed}"
    );
    assert!(broken_spool.exists());
    let (s, r) = call(
        &http,
        Method::DELETE,
        &format!("{base}/api/v1/recordings/{broken}"),
        &archivist,
        None,
    )
    .await;
    assert_eq!(s, 204, "{r}");
    let left: Vec<_> = std::fs::read_dir(data_dir.join("spool"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&broken))
        .collect();
    assert!(
        left.is_empty(),
        "files of a deleted recording left behind: {left:?}"
    );
    // A spool of a deleted recording that a deletion missed (the process was down,
    // or removing failed) goes at the next start; files of unknown ids stay.
    let stray = data_dir.join("spool").join(format!("{broken}.spool"));
    let unknown = data_dir
        .join("spool")
        .join(format!("{}.spool", uuid::Uuid::new_v4()));
    std::fs::write(&stray, b"sealed bytes").unwrap();
    std::fs::write(&unknown, b"sealed bytes").unwrap();
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop(server);
    let _server = start_server(&data_dir, port).await;
    assert!(
        !stray.exists(),
        "the spool of a deleted recording survived a restart"
    );
    assert!(
        unknown.exists(),
        "a spool of an unknown recording was removed"
    );
    let (code, out, err) = gremium(&["audit", "verify"], &data_dir);
    assert_eq!(code, 0, "{out}{err}");
}

/// The server dies while a stopped recording waits for an unavailable S3 store: the
/// next start resumes it as a normal stop (not a crash: nothing was cut) and uploads it
/// once S3 is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_a_pending_upload() {
    use reqwest::Method;
    let mut s3 = common::S3Server::start().await;
    s3.store().ensure_bucket().await.unwrap();
    let data_dir =
        std::env::temp_dir().join(format!("gremium-upload-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&data_dir).unwrap();
    let config = data_dir.join("gremium.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\nkind = \"s3\"\n[storage.s3]\nendpoint = \"{}\"\nbucket = \"{}\"\n\
             access_key_id = \"AK\"\nsecret_access_key = \"SK\"\n",
            s3.endpoint(),
            common::S3Server::BUCKET
        ),
    )
    .unwrap();
    let port = free_port();
    let mut server = start_server_with(&data_dir, port, Some(&config)).await;
    let base = format!("http://127.0.0.1:{port}");
    let (_, token, _) = gremium(&["token", "--role", "moderator"], &data_dir);
    let moderator = token.trim().to_string();
    let (_, token, _) = gremium(&["token", "--role", "archivist"], &data_dir);
    let archivist = token.trim().to_string();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let mid = create_meeting(&http, &base, &moderator, "Jugendhilfeausschuss").await;
    let rid = start_recording(&http, &base, &moderator, &mid).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    s3.stop();
    let (s, r) = call(
        &http,
        Method::POST,
        &format!("{base}/api/v1/recordings/{rid}/stop"),
        &moderator,
        None,
    )
    .await;
    assert!(s == 202 || s == 200, "{s} {r}");
    // Stopped and waiting for the store: spool and completion mark on disk.
    let spool = data_dir.join("spool").join(format!("{rid}.spool"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !spool.with_extension("done").exists() {
        assert!(Instant::now() < deadline, "no completion mark");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    drop(server);

    s3.run().await;
    let _server = start_server_with(&data_dir, port, Some(&config)).await;
    let view = wait_finished(&http, &base, &rid, &archivist).await;
    assert_eq!(view["media"]["probe"]["recovered"], false, "{view}");
    assert!(
        view["media"]["probe"]["first_fragment_ms"].is_u64(),
        "{view}"
    );
    assert!(!spool.exists());
    let codecs = probe_codecs(&base, &rid, &archivist);
    assert!(
        codecs.contains("h264") && codecs.contains("aac"),
        "{codecs}"
    );
    let object = s3
        .dir
        .join("data")
        .join(common::S3Server::BUCKET)
        .join(format!("recordings/{rid}/media.mp4.sealed"));
    assert!(object.exists(), "the media is in the bucket");
}

/// A TCP connection to the server from the loopback address `from`.
async fn connect_from(from: Ipv4Addr, port: u16) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0)).unwrap();
    socket
        .connect(SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap()
}

/// Read until the server closes; the time that took, or `None` if it was still
/// open after `limit`. What was read is returned too.
async fn closed_within(
    s: &mut tokio::net::TcpStream,
    limit: Duration,
) -> (Option<Duration>, String) {
    use tokio::io::AsyncReadExt;
    let t0 = Instant::now();
    let mut got = Vec::new();
    let read_all = async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let closed = tokio::time::timeout(limit, read_all).await.is_ok();
    (
        closed.then(|| t0.elapsed()),
        String::from_utf8_lossy(&got).into_owned(),
    )
}

/// What a reverse proxy would enforce, against the real binary: slow-header and
/// silent clients are dropped after the header timeout, a stalled upload after the
/// idle timeout, the per-client cap answers 503 at once, a full server evicts an
/// idle connection so `/healthz` still answers, a quiet WebSocket outlives both
/// timeouts — and SIGTERM with idle connections and a WebSocket open ends the
/// process within the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_and_a_prompt_stop() {
    use tokio::io::AsyncWriteExt;
    let data_dir =
        std::env::temp_dir().join(format!("gremium-conn-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&data_dir).unwrap();
    let cfg = data_dir.join("gremium.toml");
    std::fs::write(
        &cfg,
        "[connections]\nheader_read_timeout_secs = 2\nidle_timeout_secs = 2\n\
         max_connections = 32\nmax_connections_per_client = 4\nshutdown_grace_secs = 2\n",
    )
    .unwrap();
    let port = free_port();
    let mut server = start_server_with(&data_dir, port, Some(&cfg)).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let healthz = format!("http://127.0.0.1:{port}/healthz");

    // A slow-header client and a silent one are dropped after the header timeout.
    let mut slow = connect_from(Ipv4Addr::new(127, 0, 0, 4), port).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: gremium\r\n")
        .await
        .unwrap();
    let mut silent = connect_from(Ipv4Addr::new(127, 0, 0, 4), port).await;
    let (slow_closed, _) = closed_within(&mut slow, Duration::from_secs(6)).await;
    let slow_closed = slow_closed.expect("a slow-header client is dropped");
    assert!(
        slow_closed >= Duration::from_millis(1500),
        "{slow_closed:?}"
    );
    let (silent_closed, _) = closed_within(&mut silent, Duration::from_secs(2)).await;
    assert!(silent_closed.is_some(), "a silent client is dropped");

    // The per-client cap: the fifth connection from one address gets a 503 at once.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect_from(Ipv4Addr::new(127, 0, 0, 5), port).await);
    }
    let mut fifth = connect_from(Ipv4Addr::new(127, 0, 0, 5), port).await;
    let (refused, text) = closed_within(&mut fifth, Duration::from_millis(1000)).await;
    assert!(refused.is_some(), "over the per-client cap: closed at once");
    assert!(
        text.starts_with("HTTP/1.1 503") && text.contains("too many open connections"),
        "{text:?}"
    );
    for mut s in held.drain(..) {
        assert!(closed_within(&mut s, Duration::from_secs(4))
            .await
            .0
            .is_some());
    }

    // A full server (32 idle connections from 8 addresses): /healthz still answers,
    // and the oldest idle connection made room for it.
    let mut idle = Vec::new();
    for i in 0..32u8 {
        idle.push(connect_from(Ipv4Addr::new(127, 0, 1, 1 + i / 4), port).await);
    }
    let t0 = Instant::now();
    let r = http.get(&healthz).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        t0.elapsed() < Duration::from_millis(1000),
        "{:?}",
        t0.elapsed()
    );
    let (evicted, _) = closed_within(&mut idle[0], Duration::from_millis(500)).await;
    assert!(evicted.is_some(), "the oldest idle connection was evicted");
    let (newest, _) = closed_within(&mut idle[31], Duration::from_millis(100)).await;
    assert!(newest.is_none(), "the newest idle connection stays");
    drop(http);
    drop(idle);

    // A WebSocket outlives the idle and header timeouts (a quiet meeting is no idle
    // connection); a stalled upload does not.
    let (code, token, err) = gremium(&["token", "--role", "moderator"], &data_dir);
    assert_eq!(code, 0, "{err}");
    let moderator = token.trim().to_string();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let mid = create_meeting(&http, &base, &moderator, "Bauausschuss").await;
    let stream = connect_from(Ipv4Addr::new(127, 0, 0, 6), port).await;
    let (mut ws, _) = tokio_tungstenite::client_async(
        format!("ws://127.0.0.1:{port}/api/v1/meetings/{mid}/events?access_token={moderator}"),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
    )
    .await
    .unwrap();
    assert_eq!(next_event(&mut ws).await["type"], "snapshot");
    let mut upload = connect_from(Ipv4Addr::new(127, 0, 0, 7), port).await;
    upload
        .write_all(
            format!(
                "POST /api/v1/meetings HTTP/1.1\r\nHost: gremium\r\nAuthorization: Bearer {moderator}\r\n\
                 Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"title\""
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let (stalled, _) = closed_within(&mut upload, Duration::from_secs(6)).await;
    let stalled = stalled.expect("a stalled upload is closed");
    assert!(stalled >= Duration::from_millis(1500), "{stalled:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    {
        use futures_util::{SinkExt, StreamExt};
        ws.send(tokio_tungstenite::tungstenite::Message::Ping(
            b"still there".to_vec().into(),
        ))
        .await
        .unwrap();
        let pong = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(m) = ws.next().await {
                if let tokio_tungstenite::tungstenite::Message::Pong(p) = m.unwrap() {
                    return p;
                }
            }
            panic!("the WebSocket closed");
        })
        .await
        .expect("the WebSocket is alive after the timeouts");
        assert_eq!(&pong[..], b"still there");
    }

    // SIGTERM with the WebSocket, a kept-alive client and a silent one open.
    let _keep_alive = http.get(&healthz).send().await.unwrap();
    let _silent = connect_from(Ipv4Addr::new(127, 0, 0, 8), port).await;
    let t0 = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(8),
            "still running 8 s after SIGTERM: {}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}: {}", server.logs());
    let logs = server.logs();
    assert!(logs.contains("shutting down"), "{logs}");
    let _ = std::fs::remove_dir_all(&data_dir);
}
