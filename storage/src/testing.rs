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

/// `both_backends!(scenario)`: a module `scenario` with a `sqlite` and a `postgres`
/// test, each calling `async fn scenario(db: Db)` on a fresh, migrated database.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let (db, _dir) = $crate::testing::fresh_sqlite().await.expect("sqlite");
                super::$name(db).await;
            }
            #[tokio::test]
            async fn postgres() {
                let db = $crate::testing::fresh_postgres()
                    .await
                    .expect("postgres at GREMIUM_TEST_POSTGRES_URL");
                super::$name(db).await;
            }
        }
    };
}

/// A new meeting (public, "Sitzung", created at 1000 ms) with its ledger entry, for
/// tests of tables that refer to meetings.
pub async fn new_meeting(db: &Db) -> Result<Uuid> {
    let id = Uuid::new_v4();
    let m = crate::NewMeeting {
        id,
        title: "Sitzung".into(),
        is_public: true,
        retention_days: 30,
        created_by: "mod".into(),
        created_at: 1000,
    };
    let ledger = crate::LedgerRecord {
        chain_id: id.to_string(),
        at: 1000,
        kind: "meeting_created".into(),
        actor: "tester".into(),
        subject: id.to_string(),
        data: serde_json::json!({}),
    };
    db.insert_meeting(&m, &ledger).await?;
    Ok(id)
}

/// The small disk lives in the vault crate, next to the spool it tests; the
/// end-to-end tests take it from here.
pub use gremium_vault::testing::SmallDisk;
