use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

use crate::{Result, StorageError};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// Which SQL database is behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded default: one file under the data directory.
    Sqlite,
    /// Production: a shared PostgreSQL server.
    Postgres,
}

/// Pool settings, validated by the caller's config.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Maximum pool size for PostgreSQL. SQLite always uses one connection: it has a
    /// single writer anyway, and one connection avoids busy-lock upgrade stalls.
    pub max_connections: u32,
    /// How long to wait for a free connection.
    pub acquire_timeout: Duration,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Handle on the database: a connection pool plus the backend it talks to.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    max_connections: u32,
}

impl Db {
    /// Connect to `url` (`sqlite://PATH` or `postgres://…`). SQLite files are created
    /// if missing and run in WAL mode.
    pub async fn connect(url: &str, options: &DbOptions) -> Result<Db> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StorageError::UnsupportedUrl);
        };
        let mut connect = AnyConnectOptions::from_str(url)?;
        connect = sqlx::ConnectOptions::disable_statement_logging(connect);
        let pool = match backend {
            Backend::Sqlite => {
                let pool = AnyPoolOptions::new()
                    .max_connections(1)
                    .min_connections(1)
                    .test_before_acquire(false)
                    .acquire_timeout(options.acquire_timeout)
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            // Checkpoints run on their own connection (see
                            // `checkpoint_wal`), so writers never wait for one.
                            conn.execute(
                                "pragma journal_mode = wal; pragma synchronous = normal; \
                                 pragma foreign_keys = on; pragma busy_timeout = 5000; \
                                 pragma wal_autocheckpoint = 0;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect_with(connect)
                    .await?;
                let checkpoint = sqlx::sqlite::SqliteConnectOptions::from_str(url)?;
                tokio::spawn(checkpoint_wal(checkpoint, pool.clone()));
                pool
            }
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(options.max_connections)
                    .acquire_timeout(options.acquire_timeout)
                    .connect_with(connect)
                    .await?
            }
        };
        let max_connections = if backend == Backend::Sqlite {
            1
        } else {
            options.max_connections
        };
        Ok(Db {
            pool,
            backend,
            max_connections,
        })
    }

    /// Apply the embedded migrations for this backend.
    pub async fn migrate(&self) -> Result<()> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    /// The backend behind this handle.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Size of the connection pool.
    pub fn max_connections(&self) -> u32 {
        self.max_connections
    }

    /// The raw pool, for health checks and tests that tamper with rows.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Cheap liveness probe.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("select 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Close the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Copy the SQLite WAL into the database file in the background, on a connection of
/// its own. A passive checkpoint never blocks the writer; with the writer's automatic
/// checkpoints off, no request pays for the copy and its fsync.
async fn checkpoint_wal(options: sqlx::sqlite::SqliteConnectOptions, pool: AnyPool) {
    use sqlx::ConnectOptions;
    let mut conn = match options.disable_statement_logging().connect().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the WAL checkpoint connection");
            return;
        }
    };
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if pool.is_closed() {
            let _ = sqlx::query("pragma wal_checkpoint(truncate)")
                .execute(&mut conn)
                .await;
            break;
        }
        if let Err(e) = sqlx::query("pragma wal_checkpoint(passive)")
            .execute(&mut conn)
            .await
        {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}
