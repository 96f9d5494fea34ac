//! The real `gremium serve` binary as a child process on a loopback port, with a data
//! directory and a config of its own (ICE on 127.0.0.1 only): killed with SIGKILL and
//! started again on the same port and data as a crash and restart would; `gremium
//! token` against that data.
//!
//! Owns: starting, killing and restarting that process. Must not: assert on what it
//! serves.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_gremium");

pub struct ServeProcess {
    /// Holds `data/`, `gremium.toml` and `server.log` (every run appends to it).
    pub dir: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl ServeProcess {
    /// Start on a fresh data directory and a free port; returns once `/healthz` is 200.
    pub async fn start() -> ServeProcess {
        let dir = std::env::temp_dir().join(format!("gremium-serve-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(
            dir.join("gremium.toml"),
            "[ice]\nallowed_local_addresses = [\"127.0.0.1\"]\n",
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = ServeProcess {
            dir,
            port,
            child: None,
        };
        server.run().await;
        server
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn common_args(&self, cmd: &mut Command) {
        cmd.arg("--data-dir")
            .arg(self.dir.join("data"))
            .arg("--config")
            .arg(self.dir.join("gremium.toml"))
            .env_remove("GREMIUM_CONFIG")
            .env_remove("GREMIUM_DATABASE_URL");
    }

    /// (Re)start on the same port and data; returns once `/healthz` answers 200.
    pub async fn run(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)]);
        self.common_args(&mut cmd);
        let child = cmd
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/healthz", self.base())).await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "gremium serve did not come up:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL, as a crash: nothing is cleaned up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A bearer token for `role`, made by `gremium token` from this server's data.
    pub fn token(&self, role: &str) -> String {
        let mut cmd = Command::new(BIN);
        cmd.args(["token", "--role", role]);
        self.common_args(&mut cmd);
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "gremium token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        self.kill9();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
