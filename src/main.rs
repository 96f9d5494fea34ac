//! `gremium`: the binary. Parses the command line, loads and validates the
//! configuration, and wires the crates together. It holds no business logic.

mod admission;
mod cluster;
mod config;
mod demo;
mod listener;
mod publish;
mod wiring;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "gremium",
    version,
    about = "Media service for public-sector meetings"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Common {
    /// TOML configuration file.
    #[arg(long, env = "GREMIUM_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Data directory (SQLite file, local object store, local signing key).
    #[arg(long, env = "GREMIUM_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Database URL (overrides the config file): sqlite://… or postgres://…
    #[arg(
        long,
        env = "GREMIUM_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// NATS URL of the cluster (overrides `[cluster] nats_url`).
    #[arg(long, env = "GREMIUM_NATS_URL", global = true, hide_env_values = true)]
    nats_url: Option<String>,
    /// This node's id in the cluster (overrides `[cluster] node_id`).
    #[arg(long, env = "GREMIUM_NODE_ID", global = true)]
    node_id: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service.
    Serve {
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long, env = "GREMIUM_LISTEN")]
        listen: Option<String>,
        /// `all`: the single process (default). `control`: API, pages, WHIP, WebSocket,
        /// archive; meetings' media on media nodes. `media`: meetings' pipelines only.
        /// `control` and `media` need `[cluster] nats_url`.
        #[arg(long, env = "GREMIUM_ROLE", default_value = "all")]
        role: cluster::Role,
        #[command(flatten)]
        common: Common,
    },
    /// Run the service with a demo meeting: three synthetic participants, a recording
    /// and a livestream running, and the links to open (console, watch, join).
    Demo {
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long, env = "GREMIUM_LISTEN")]
        listen: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[command(flatten)]
        common: Common,
    },
    /// Print a locally signed staff token.
    Token {
        /// Role: admin, moderator, viewer or archivist.
        #[arg(long)]
        role: Vec<String>,
        /// Subject recorded as the actor in the ledger.
        #[arg(long, default_value = "local-admin")]
        subject: String,
        /// Lifetime in hours.
        #[arg(long, default_value_t = 12)]
        ttl_hours: u64,
        #[command(flatten)]
        common: Common,
    },
    /// Cluster tools (NATS from `[cluster] nats_url`).
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Audit-ledger tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Publish a synthetic camera and microphone into a meeting over WHIP.
    Publish(publish::PublishArgs),
    /// Check the GStreamer installation and the plugins Gremium needs.
    Doctor,
    /// Print the OpenAPI document.
    Openapi,
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Print the media nodes: load, capacity, meetings, draining.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Stop placing new meetings on a media node (its running meetings end where they
    /// are), e.g. before maintenance.
    Drain {
        /// The node id (`gremium cluster status` lists them).
        node: String,
        /// Take new meetings again.
        #[arg(long)]
        undo: bool,
        /// Wait until the node runs no meeting (or has left the cluster).
        #[arg(long, conflicts_with = "undo")]
        wait: bool,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verify every hash chain; exit 1 if any is broken.
    Verify {
        #[command(flatten)]
        common: Common,
    },
}

/// Flags and environment; an empty value (e.g. `GREMIUM_DATABASE_URL=`) counts as unset.
fn overrides(common: &Common, listen: Option<String>) -> config::Overrides {
    let set = |s: &Option<String>| s.clone().filter(|v| !v.is_empty());
    let set_path = |p: &Option<PathBuf>| p.clone().filter(|v| !v.as_os_str().is_empty());
    config::Overrides {
        config: set_path(&common.config),
        listen: set(&listen),
        data_dir: set_path(&common.data_dir),
        database_url: set(&common.database_url),
        nats_url: set(&common.nats_url),
        node_id: set(&common.node_id),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve {
                listen,
                role,
                common,
            } => wiring::serve(config::load(&overrides(&common, listen))?, role).await,
            Command::Cluster {
                command: ClusterCommand::Status { json, common },
            } => cluster::status(config::load(&overrides(&common, None))?, json).await,
            Command::Cluster {
                command:
                    ClusterCommand::Drain {
                        node,
                        undo,
                        wait,
                        common,
                    },
            } => cluster::drain(config::load(&overrides(&common, None))?, node, undo, wait).await,
            Command::Demo { listen, common } => {
                demo::demo(config::load(&overrides(&common, listen))?).await
            }
            Command::Migrate { common } => {
                wiring::migrate(config::load(&overrides(&common, None))?).await
            }
            Command::Token {
                role,
                subject,
                ttl_hours,
                common,
            } => wiring::token(
                config::load(&overrides(&common, None))?,
                &role,
                &subject,
                ttl_hours,
            ),
            Command::Audit {
                command: AuditCommand::Verify { common },
            } => wiring::audit_verify(config::load(&overrides(&common, None))?).await,
            Command::Publish(args) => publish::publish(args).await,
            Command::Doctor => wiring::doctor(),
            Command::Openapi => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&gremium_signaling::openapi::document())?
                );
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    // Dropping the runtime would wait for every blocking task without end (a stuck
    // GStreamer call, a blocked read); a stop must stay prompt.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
