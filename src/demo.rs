//! `gremium demo`: the service on embedded defaults with a meeting and three
//! synthetic participants publishing over WHIP, plus what to try next.

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
    let base = format!("http://{listen}");
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
        ("Anna Schmidt", "e53935", 440.0, true, true),
        ("Ben Yılmaz", "1e88e5", 660.0, true, false),
        ("Carla Nowak", "43a047", 880.0, false, false),
    ];
    let mut publishers = Vec::new();
    for (name, color, tone, recording, streaming) in people {
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
    println!("moderator token (12 h):\n  export T={moderator}");
    println!("try:");
    println!("  curl -s -H \"Authorization: Bearer $T\" {base}/api/v1/meetings/{mid}/participants");
    println!("  curl -s -H \"Authorization: Bearer $T\" {base}/api/v1/meetings/{mid}/ledger");
    println!("  websocat \"ws://{listen}/api/v1/meetings/{mid}/events?access_token=$T\"");
    println!("  gremium audit verify --data-dir {}", data_dir.display());
    println!("  {base}/api/v1/openapi.json");
    println!("Ctrl-C (or SIGTERM) stops the demo.");
    // Ctrl-C or SIGTERM; the publishers hear the same signal and leave (WHIP DELETE).
    crate::wiring::shutdown_signal().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), futures_join_all(publishers)).await;
    let _ = stop_server.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
    Ok(ExitCode::SUCCESS)
}
