//! Runs a test's body in a network namespace that has only `lo`, so nothing the test
//! starts (a browser, WebRTC peers, the server) can reach any address but loopback.
//!
//! The `#[test]` calls [`run_isolated`] with its own name. Outside a namespace that
//! creates one, runs this same test binary inside it for exactly that test, forwards
//! the output and asserts the test ran and passed; inside, it brings `lo` up and runs
//! the body. Needs root for `ip netns` (CI runs as root).

use std::process::Command;
use std::time::Duration;

/// Set (to the namespace's name) in the re-executed test binary.
pub const INSIDE: &str = "GREMIUM_TEST_NETNS";

/// A network namespace, deleted on drop.
pub struct Netns(pub String);

impl Netns {
    /// Create `name` (asserts success).
    pub fn create(name: &str) -> Netns {
        let status = Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .expect("ip runs (iproute2)");
        assert!(status.success(), "ip netns add {name} failed");
        Netns(name.to_string())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.0])
            .status();
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Whether this process is the child [`run_isolated`] started inside a namespace.
pub fn inside() -> bool {
    std::env::var_os(INSIDE).is_some()
}

/// [`run_isolated`] for an async body: it runs on a 2-worker tokio runtime.
pub fn run_isolated_async<F: std::future::Future<Output = ()>>(
    test: &str,
    timeout: Duration,
    body: impl FnOnce() -> F,
) {
    run_isolated(test, timeout, || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(body())
    });
}

/// Run `body` in a fresh loopback-only namespace. `test` must be the test's full name
/// as the harness knows it (`--exact`); the child gets at most `timeout`.
pub fn run_isolated(test: &str, timeout: Duration, body: impl FnOnce()) {
    if inside() {
        let up = Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .expect("ip runs (iproute2)");
        assert!(up.success(), "ip link set lo up failed");
        body();
        return;
    }
    assert!(
        is_root(),
        "this test needs root for `ip netns` (CI runs as root)"
    );
    let short: String = test
        .rsplit("::")
        .next()
        .unwrap_or(test)
        .chars()
        .take(24)
        .collect();
    let ns = Netns::create(&format!("gremium-{short}-{}", std::process::id()));
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new("timeout")
        .args(["--kill-after=10", &timeout.as_secs().to_string()])
        .args(["ip", "netns", "exec", &ns.0])
        .arg(exe)
        .args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .env(INSIDE, &ns.0)
        .output()
        .expect("timeout and ip run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("--- {test} in namespace {} ---\n{stdout}", ns.0);
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "{test} failed inside the namespace ({}); output above",
        out.status
    );
    // An empty filter match would also exit 0.
    assert!(
        stdout.contains("1 passed"),
        "{test} did not run inside the namespace; output above"
    );
}
