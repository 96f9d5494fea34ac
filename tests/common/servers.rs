//! Real servers the tests run next to Gremium on loopback: an S3-compatible store
//! (s3s-fs) and nginx-rtmp, each stopped on drop; and what a player of an RTMP platform
//! would see.
//!
//! Owns: starting and stopping those processes. Must not: know about Gremium.

use std::time::Duration;

/// A real S3-compatible server (s3s-fs, installed by `scripts/s3s.sh`, found through
/// `GREMIUM_S3S_FS`) on a loopback port with a data directory of its own; stopped and
/// restarted on the same port and data to simulate an outage.
pub struct S3Server {
    binary: std::path::PathBuf,
    pub dir: std::path::PathBuf,
    port: u16,
    child: Option<std::process::Child>,
}

impl S3Server {
    pub const BUCKET: &'static str = "gremium";

    pub async fn start() -> S3Server {
        let binary = std::env::var_os("GREMIUM_S3S_FS")
            .map(std::path::PathBuf::from)
            .expect("GREMIUM_S3S_FS is not set: `source scripts/s3s.sh && gremium_install_s3s`");
        let dir = std::env::temp_dir().join(format!("gremium-s3-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut server = S3Server {
            binary,
            dir,
            port,
            child: None,
        };
        server.run().await;
        server
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn store(&self) -> gremium_storage::S3Store {
        gremium_storage::S3Store::new(gremium_storage::S3Settings {
            endpoint: Some(self.endpoint()),
            bucket: Self::BUCKET.into(),
            region: None,
            access_key_id: Some("AK".into()),
            secret_access_key: Some("SK".into()),
            path_style: true,
        })
        .unwrap()
    }

    /// (Re)start on the same port and data; returns once it listens.
    pub async fn run(&mut self) {
        let log = std::fs::File::create(self.dir.join("server.log")).unwrap();
        self.child = Some(
            std::process::Command::new(&self.binary)
                .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
                .args(["--access-key", "AK", "--secret-key", "SK"])
                .arg(self.dir.join("data"))
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(std::time::Instant::now() < deadline, "s3s-fs did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A viewer of a platform pulls `url` (`rtmp://…`) with ffprobe and sees H.264 + AAC;
/// a few tries, since right after a publish starts nginx may not have the stream's
/// headers yet. Panics with ffprobe's complaint otherwise.
pub fn assert_rtmp_plays(url: &str) {
    let mut last = String::new();
    for _ in 0..5 {
        let out = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-rw_timeout", "10000000"])
            .args(["-show_entries", "stream=codec_name", "-of", "csv=p=0"])
            .arg(url)
            .output()
            .unwrap();
        let codecs = String::from_utf8_lossy(&out.stdout).to_string();
        if codecs.contains("h264") && codecs.contains("aac") {
            return;
        }
        last = format!("{codecs} {}", String::from_utf8_lossy(&out.stderr));
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("no H.264 + AAC from {url}: {last}");
}

/// nginx with the RTMP module (Debian `nginx-light` + `libnginx-mod-rtmp`) on a free
/// loopback port: application `live`.
pub struct NginxRtmp {
    child: std::process::Child,
    pub port: u16,
}

impl NginxRtmp {
    const MODULE: &'static str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

    pub fn start(dir: &std::path::Path) -> NginxRtmp {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self::start_on(dir, port)
    }

    /// Start on a given port (a restart after a kill: the same address as before).
    pub fn start_on(dir: &std::path::Path, port: u16) -> NginxRtmp {
        assert!(
            std::path::Path::new(Self::MODULE).exists(),
            "{} missing: install nginx-light libnginx-mod-rtmp (scripts/deps.sh)",
            Self::MODULE
        );
        std::fs::create_dir_all(dir).unwrap();
        let d = dir.display();
        let conf = format!(
            "load_module {};\ndaemon off;\nmaster_process off;\nworker_processes 1;\n\
             error_log {d}/error.log info;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 64; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:{port}; \
             application live {{ live on; record off; }} }} }}\n",
            Self::MODULE
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = std::process::Command::new("nginx")
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("nginx runs");
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < until,
                "nginx did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        NginxRtmp { child, port }
    }
}

impl Drop for NginxRtmp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
