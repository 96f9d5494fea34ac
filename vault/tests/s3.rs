//! `S3Store` against a real S3-compatible server: s3s-fs (installed by
//! `scripts/s3s.sh`, found through `GREMIUM_S3S_FS`), started on a loopback port by
//! each test and killed when the test ends.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::ops::Range;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gremium_vault::{ObjectError, ObjectStore, S3Settings, S3Store};

const ACCESS_KEY: &str = "AK";
const SECRET_KEY: &str = "SK";
const BUCKET: &str = "recordings";
const MIB: u64 = 1024 * 1024;

/// A running s3s-fs over a data directory of its own.
struct S3Server {
    binary: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl S3Server {
    /// Starts a server; fails when the binary is not configured.
    async fn start() -> S3Server {
        let binary = std::env::var_os("GREMIUM_S3S_FS")
            .map(PathBuf::from)
            .expect(
                "GREMIUM_S3S_FS is not set: run `source scripts/s3s.sh && gremium_install_s3s` \
             (installs s3s-fs and exports its path) before these tests",
            );
        assert!(
            binary.is_file(),
            "GREMIUM_S3S_FS={} is not a file: run `source scripts/s3s.sh && gremium_install_s3s`",
            binary.display()
        );
        let dir = std::env::temp_dir().join(format!("gremium-s3-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
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

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn store(&self) -> S3Store {
        S3Store::new(S3Settings {
            endpoint: Some(self.endpoint()),
            bucket: BUCKET.into(),
            region: None,
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(SECRET_KEY.into()),
            path_style: true,
        })
        .unwrap()
    }

    /// (Re)starts the server on the same port and data and waits until it listens.
    async fn run(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::File::create(self.dir.join("server.log")).unwrap();
        let child = Command::new(&self.binary)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(self.dir.join("data"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.binary.display()));
        self.child = Some(child);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("s3s-fs exited with {status}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "s3s-fs did not listen on {addr} within 15 s: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reproducible bytes that differ at every offset of interest.
fn pattern(len: u64) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn ready_store(server: &S3Server) -> S3Store {
    let store = server.store();
    store.ensure_bucket().await.unwrap();
    // A second call finds the bucket and is fine.
    store.ensure_bucket().await.unwrap();
    store
}

#[tokio::test]
async fn small_objects_round_trip_and_missing_ones_are_reported() {
    let server = S3Server::start().await;
    let store = ready_store(&server).await;
    let src = server.file("small", b"0123456789");
    store.put_file("recordings/a/media", &src).await.unwrap();
    assert_eq!(store.size("recordings/a/media").await.unwrap(), Some(10));
    assert_eq!(
        store.get_range("recordings/a/media", 2..5).await.unwrap(),
        b"234"
    );
    assert_eq!(
        store.get_range("recordings/a/media", 0..10).await.unwrap(),
        b"0123456789"
    );
    assert!(store
        .get_range("recordings/a/media", 4..4)
        .await
        .unwrap()
        .is_empty());
    // The last one is reversed on purpose.
    for past_end in [5..11, 10..12, Range { start: 7, end: 3 }] {
        assert!(
            matches!(
                store
                    .get_range("recordings/a/media", past_end.clone())
                    .await,
                Err(ObjectError::Range(_, 10))
            ),
            "{past_end:?}"
        );
    }

    // Replacing an object.
    let other = server.file("other", b"abc");
    store.put_file("recordings/a/media", &other).await.unwrap();
    assert_eq!(store.size("recordings/a/media").await.unwrap(), Some(3));

    // An empty object.
    let empty = server.file("empty", b"");
    store.put_file("recordings/a/empty", &empty).await.unwrap();
    assert_eq!(store.size("recordings/a/empty").await.unwrap(), Some(0));

    assert_eq!(store.size("recordings/missing").await.unwrap(), None);
    assert!(matches!(
        store.get_range("recordings/missing", 0..1).await,
        Err(ObjectError::NotFound)
    ));

    store.delete("recordings/a/media").await.unwrap();
    store.delete("recordings/a/media").await.unwrap();
    assert_eq!(store.size("recordings/a/media").await.unwrap(), None);
    store.delete("recordings/never-there").await.unwrap();

    // A source file that does not exist.
    assert!(matches!(
        store
            .put_file("recordings/b", &server.dir.join("no-such-file"))
            .await,
        Err(ObjectError::NotFound)
    ));
}

#[tokio::test]
async fn large_files_go_up_in_parts_and_read_back_exactly() {
    let server = S3Server::start().await;
    let store = ready_store(&server).await;
    let len = 20 * MIB + 12_345;
    let data = pattern(len);
    let src = server.file("large", &data);
    store.put_file("recordings/big/media", &src).await.unwrap();
    assert_eq!(store.size("recordings/big/media").await.unwrap(), Some(len));

    let part = 8 * MIB;
    for range in [
        0..1,
        part - 1..part + 1,
        part..part + 17,
        2 * part - 3..2 * part + 3,
        len - 5..len,
        1234..3 * MIB,
        0..len,
    ] {
        let got = store
            .get_range("recordings/big/media", range.clone())
            .await
            .unwrap();
        assert!(
            got == data[range.start as usize..range.end as usize],
            "bytes {range:?} differ"
        );
    }
    assert!(matches!(
        store.get_range("recordings/big/media", len - 1..len + 1).await,
        Err(ObjectError::Range(_, l)) if l == len
    ));
    assert!(matches!(
        store.get_range("recordings/big/media", len..len + 1).await,
        Err(ObjectError::Range(_, l)) if l == len
    ));
    // Completing the upload left none of its parts behind.
    assert_eq!(unfinished_uploads(&server), Vec::<String>::new());
    store.delete("recordings/big/media").await.unwrap();
    assert_eq!(store.size("recordings/big/media").await.unwrap(), None);
}

/// Files s3s-fs keeps for multipart uploads not yet completed or aborted
/// (`.upload-{id}.json`, `.upload_id-{id}.part-{n}` in its root; it has no
/// ListMultipartUploads).
fn unfinished_uploads(server: &S3Server) -> Vec<String> {
    std::fs::read_dir(server.dir.join("data"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".upload"))
        .collect()
}

#[tokio::test]
async fn invalid_keys_are_refused_without_a_request() {
    let server = S3Server::start().await;
    let store = ready_store(&server).await;
    let src = server.file("small", b"x");
    for bad in [
        "",
        "../x",
        "/etc/passwd",
        "a/../../b",
        "a/b.part",
        "a//b",
        "a/",
    ] {
        assert!(
            matches!(store.size(bad).await, Err(ObjectError::InvalidKey(_))),
            "{bad}"
        );
        assert!(
            matches!(
                store.put_file(bad, &src).await,
                Err(ObjectError::InvalidKey(_))
            ),
            "{bad}"
        );
        assert!(
            matches!(
                store.get_range(bad, 0..1).await,
                Err(ObjectError::InvalidKey(_))
            ),
            "{bad}"
        );
        assert!(
            matches!(store.delete(bad).await, Err(ObjectError::InvalidKey(_))),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn an_outage_is_reported_as_unavailable_and_recovers() {
    let mut server = S3Server::start().await;
    let store = ready_store(&server).await;
    let src = server.file("small", b"before the outage");
    store.put_file("recordings/o/1", &src).await.unwrap();

    server.stop();
    let started = Instant::now();
    let put = store.put_file("recordings/o/2", &src).await;
    let took = started.elapsed();
    assert!(matches!(put, Err(ObjectError::Unavailable(_))), "{put:?}");
    assert!(took < Duration::from_secs(30), "took {took:?}");
    assert!(matches!(
        store.size("recordings/o/1").await,
        Err(ObjectError::Unavailable(_))
    ));

    server.run().await;
    store.put_file("recordings/o/2", &src).await.unwrap();
    assert_eq!(
        store.get_range("recordings/o/1", 0..6).await.unwrap(),
        b"before"
    );
    assert_eq!(store.size("recordings/o/2").await.unwrap(), Some(17));
}
