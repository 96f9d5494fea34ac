//! Test helpers: a fresh, migrated database per test, on either backend.

use uuid::Uuid;

use crate::{Db, DbOptions, Result};

/// Server used for PostgreSQL tests (`GREMIUM_TEST_POSTGRES_URL`, default the local
/// trust-auth server's `test` database).
pub fn postgres_admin_url() -> String {
    std::env::var("GREMIUM_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A fresh, migrated SQLite database in a new temporary directory.
pub async fn fresh_sqlite() -> Result<(Db, std::path::PathBuf)> {
    let dir = std::env::temp_dir().join(format!("gremium-test-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).map_err(|e| crate::StorageError::Corrupt(e.to_string()))?;
    let url = format!("sqlite://{}?mode=rwc", dir.join("gremium.db").display());
    let db = Db::connect(&url, &DbOptions::default()).await?;
    db.migrate().await?;
    Ok((db, dir))
}

/// URL of a newly created, empty PostgreSQL database on the test server.
pub async fn fresh_postgres_url() -> Result<String> {
    let admin_url = postgres_admin_url();
    let admin = Db::connect(
        &admin_url,
        &DbOptions {
            max_connections: 1,
            ..Default::default()
        },
    )
    .await?;
    let name = format!("gremium_t_{}", Uuid::new_v4().simple());
    // The name is generated here, never user input.
    sqlx::query(&format!("create database {name}"))
        .execute(admin.pool())
        .await?;
    admin.close().await;
    let base = admin_url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .unwrap_or(&admin_url);
    Ok(format!("{base}/{name}"))
}

/// A fresh, migrated PostgreSQL database.
pub async fn fresh_postgres() -> Result<Db> {
    let url = fresh_postgres_url().await?;
    let db = Db::connect(&url, &DbOptions::default()).await?;
    db.migrate().await?;
    Ok(db)
}

/// A small tmpfs mounted on a new temporary directory, for tests of what happens
/// when a disk fills up; unmounted (and the directory removed) on drop. Needs the
/// right to mount (root, as the test command runs); panics with the reason if not.
pub struct SmallDisk {
    path: std::path::PathBuf,
}

impl SmallDisk {
    /// Mount a tmpfs of `bytes` bytes (rounded up to whole pages by the kernel).
    pub fn mount(bytes: u64) -> SmallDisk {
        let path = std::env::temp_dir().join(format!("gremium-disk-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("mount point");
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={bytes},mode=0700"),
                "tmpfs",
            ])
            .arg(&path)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "mounting a {bytes}-byte tmpfs on {} failed (the full-disk tests need to run as root): {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { path }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Take all free space but about `leave` bytes with a new file (allocated at
    /// once, never overshooting); returns it (remove it to free the space). A writer
    /// on the disk may take some of the space between reading it and allocating, so
    /// a refused allocation is tried again with what is free then.
    pub fn fill_leaving(&self, leave: u64) -> std::path::PathBuf {
        use fs4::fs_std::FileExt;
        let filler = self
            .path
            .join(format!("filler-{}", Uuid::new_v4().simple()));
        let f = std::fs::File::create(&filler).expect("filler");
        let mut last = None;
        for _ in 0..20 {
            let free = fs4::available_space(&self.path).expect("free space");
            match f.allocate(free.saturating_sub(leave)) {
                Ok(()) => return filler,
                // Less is free now than a moment ago.
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => last = Some(e),
                Err(e) => panic!("allocating the filler: {e}"),
            }
        }
        panic!("allocating the filler: {last:?}");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
        let _ = std::fs::remove_dir(&self.path);
    }
}
