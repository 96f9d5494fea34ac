//! Headless Chromium (Debian's package) driven over the DevTools protocol: one page,
//! `Runtime.evaluate` and `Page.captureScreenshot`. Killed on drop.

#![allow(dead_code)] // each test binary uses a part

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Flags for pages that use the camera and microphone: Chromium's synthetic devices,
/// permission granted without a prompt, and WebRTC over loopback (the test namespace
/// has nothing else).
pub const FAKE_MEDIA: &[&str] = &[
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
];

pub struct Chromium {
    child: Child,
    profile: PathBuf,
    page: Ws,
    next_id: u64,
}

impl Chromium {
    /// Start Chromium, attach to its page and open `url` in it.
    pub async fn launch(url: &str) -> Chromium {
        Chromium::launch_with(url, &[]).await
    }

    /// As [`Chromium::launch`], with extra command-line flags (e.g. [`FAKE_MEDIA`]).
    pub async fn launch_with(url: &str, extra_args: &[&str]) -> Chromium {
        let profile =
            std::env::temp_dir().join(format!("gremium-chromium-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&profile).unwrap();
        let log = std::fs::File::create(profile.join("chrome.log")).unwrap();
        let child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--autoplay-policy=no-user-gesture-required",
                "--window-size=1024,768",
                "--remote-debugging-port=0",
            ])
            .args(extra_args)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            // Its own process group, so that drop ends the renderers and helpers too.
            .process_group(0)
            .spawn()
            .expect("chromium runs");
        let mut chromium = ChromiumStarting {
            child: Some(child),
            profile: profile.clone(),
        };
        // Chromium writes the port it chose into the profile.
        let deadline = Instant::now() + Duration::from_secs(30);
        let port = loop {
            let text =
                std::fs::read_to_string(profile.join("DevToolsActivePort")).unwrap_or_default();
            if let Some(port) = text
                .lines()
                .next()
                .and_then(|l| l.trim().parse::<u16>().ok())
            {
                break port;
            }
            assert!(
                Instant::now() < deadline,
                "chromium did not open its DevTools port:\n{}",
                chromium.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let ws_url = loop {
            let targets: Value = match http
                .get(format!("http://127.0.0.1:{port}/json/list"))
                .send()
                .await
            {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(_) => Value::Null,
            };
            let page = targets.as_array().and_then(|t| {
                t.iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str())
                    .map(str::to_string)
            });
            if let Some(url) = page {
                break url;
            }
            assert!(
                Instant::now() < deadline,
                "no page target: {targets}\n{}",
                chromium.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let (page, _) = tokio_tungstenite::connect_async(ws_url)
            .await
            .expect("DevTools WebSocket");
        let mut chromium = Chromium {
            child: chromium.child.take().unwrap(),
            profile,
            page,
            next_id: 0,
        };
        // Navigating here rather than on the command line: Page.navigate answers once
        // the document is committed, so no evaluation can land in a dying context.
        chromium.call("Page.navigate", json!({ "url": url })).await;
        chromium
    }

    /// Chromium's own log (stderr), for diagnostics.
    pub fn log(&self) -> String {
        read_log(&self.profile)
    }

    /// Call a DevTools method and return its `result` (panics on a protocol error).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        match self.try_call(method, params).await {
            Ok(result) => result,
            Err(error) => panic!("{method}: {error}"),
        }
    }

    /// As [`Chromium::call`], but a protocol error is returned rather than a panic (an
    /// evaluation racing a navigation fails with "Execution context was destroyed").
    pub async fn try_call(&mut self, method: &str, params: Value) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.page.send(Message::Text(msg.into())).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let msg = tokio::time::timeout_at(deadline, self.page.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method} within 30 s"))
                .expect("DevTools socket open")
                .expect("no DevTools socket error");
            let Message::Text(text) = msg else { continue };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["id"] == id {
                if !v["error"].is_null() {
                    return Err(v["error"].clone());
                }
                return Ok(v["result"].clone());
            }
        }
    }

    /// The value of a JavaScript expression in the page (promises awaited); panics
    /// when it throws.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        assert!(
            r["exceptionDetails"].is_null(),
            "{expression}: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    /// Audit the page with axe-core (WCAG 2.0/2.1 A and AA rules) and panic with each
    /// violation when there is any; `what` names the page state in the message. axe is
    /// injected through `Runtime.evaluate`, which the page's CSP does not govern, from
    /// the build-time install in `web/node_modules` (`scripts/web.sh`).
    pub async fn assert_accessible(&mut self, what: &str) {
        if self.eval("typeof axe").await != "object" {
            let path =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("web/node_modules/axe-core/axe.min.js");
            let source = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!(
                    "{}: {e} (run scripts/web.sh's gremium_install_web)",
                    path.display()
                )
            });
            let r = self
                .call(
                    "Runtime.evaluate",
                    json!({"expression": source, "returnByValue": true}),
                )
                .await;
            assert!(
                r["exceptionDetails"].is_null(),
                "axe: {}",
                r["exceptionDetails"]
            );
        }
        let violations = self
            .eval(
                "axe.run(document, {runOnly: {type: 'tag', \
                 values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}}) \
                 .then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help, \
                 nodes: v.nodes.length, target: v.nodes[0] && v.nodes[0].target, \
                 html: v.nodes[0] && v.nodes[0].html, \
                 summary: v.nodes[0] && v.nodes[0].failureSummary})))",
            )
            .await;
        let violations = violations.as_array().expect("axe violations");
        if !violations.is_empty() {
            let mut report = String::new();
            for v in violations {
                report += &format!(
                    "\n- {} ({}, {} node(s)): {}\n  at {} {}\n  {}",
                    v["id"].as_str().unwrap_or("?"),
                    v["impact"].as_str().unwrap_or("?"),
                    v["nodes"],
                    v["help"].as_str().unwrap_or(""),
                    v["target"],
                    v["html"].as_str().unwrap_or(""),
                    v["summary"].as_str().unwrap_or("").replace('\n', "\n  "),
                );
            }
            panic!(
                "{what}: {} accessibility violation(s):{report}",
                violations.len()
            );
        }
    }

    /// Evaluate `expression` until it is `true`, or panic after `within` with
    /// `describe`'s value. While the page navigates (no context to evaluate in) it
    /// keeps waiting; an exception in the expression still fails at once.
    pub async fn wait_for(&mut self, expression: &str, within: Duration, describe: &str) {
        let deadline = Instant::now() + within;
        loop {
            let r = self
                .try_call(
                    "Runtime.evaluate",
                    json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
                )
                .await;
            if let Ok(r) = r {
                assert!(
                    r["exceptionDetails"].is_null(),
                    "{expression}: {}",
                    r["exceptionDetails"]
                );
                if r["result"]["value"] == Value::Bool(true) {
                    return;
                }
            }
            if Instant::now() > deadline {
                let state = self.eval(describe).await;
                panic!(
                    "not within {within:?}: {expression}\npage: {state}\nchromium:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Press and release a key (`key` as in DOM `KeyboardEvent.key`, with its Windows
    /// virtual key code; `text` for keys that type, e.g. `"\r"` for Enter).
    pub async fn press(&mut self, key: &str, code: u32, text: Option<&str>) {
        let mut down = json!({"type": "keyDown", "key": key, "code": key,
            "windowsVirtualKeyCode": code});
        if let Some(t) = text {
            down["text"] = json!(t);
        }
        self.call("Input.dispatchKeyEvent", down).await;
        self.call(
            "Input.dispatchKeyEvent",
            json!({"type": "keyUp", "key": key, "code": key, "windowsVirtualKeyCode": code}),
        )
        .await;
    }

    /// Save a PNG of the viewport.
    pub async fn screenshot(&mut self, path: &Path) {
        let r = self
            .call("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("screenshot data"))
            .unwrap();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        kill_group(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Kill Chromium's process group (the browser and every helper it started).
fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// Chromium before the DevTools connection: killed when launching fails half way.
struct ChromiumStarting {
    child: Option<Child>,
    profile: PathBuf,
}

impl ChromiumStarting {
    fn log(&self) -> String {
        read_log(&self.profile)
    }
}

impl Drop for ChromiumStarting {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_group(&mut c);
            let _ = std::fs::remove_dir_all(&self.profile);
        }
    }
}

fn read_log(profile: &Path) -> String {
    let log = std::fs::read_to_string(profile.join("chrome.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(40).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}
