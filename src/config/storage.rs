//! `[storage]` and `[retention]`: where recordings go (local disk or S3), the master
//! key that wraps their data keys, the spool, and how long recordings are kept.
//!
//! Owns: validating those keys (the S3 settings by building a store, the master key by
//! parsing it) and the paths they default to under the data directory. Must not: create
//! directories, read or generate key files, or contact S3 (wiring does that at start).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;

use super::schema::{RetentionConfig, StorageConfig};

/// Where recordings go and how they are protected.
#[derive(Debug, Clone)]
pub struct StorageSettings {
    /// Master key in hex, from the environment or the config file.
    pub master_key: Option<String>,
    /// File with the master key (generated when it is the default and missing).
    pub master_key_file: PathBuf,
    /// True when `master_key_file` is the default (then it may be generated).
    pub master_key_file_default: bool,
    pub spool_dir: PathBuf,
    /// Bytes that must be free on the spool disk for a recording to start.
    pub spool_min_free: u64,
    pub local_dir: PathBuf,
    /// The S3 store, when `storage.kind = "s3"`.
    pub s3: Option<gremium_storage::S3Settings>,
}

/// The S3 store of `[storage.s3]` when `storage.kind = "s3"`; credentials from the
/// environment win over the file.
pub(super) fn s3_settings(
    c: &StorageConfig,
) -> anyhow::Result<Option<gremium_storage::S3Settings>> {
    let s3 = match c.kind.as_deref().unwrap_or("local") {
        "local" => None,
        "s3" => match &c.s3 {
            None => bail!("storage.s3: required when storage.kind = \"s3\""),
            Some(s3) => {
                let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
                let settings = gremium_storage::S3Settings {
                    endpoint: s3.endpoint.clone(),
                    bucket: s3.bucket.clone(),
                    region: s3.region.clone(),
                    access_key_id: env("GREMIUM_S3_ACCESS_KEY_ID")
                        .or_else(|| s3.access_key_id.clone()),
                    secret_access_key: env("GREMIUM_S3_SECRET_ACCESS_KEY")
                        .or_else(|| s3.secret_access_key.clone()),
                    path_style: s3.path_style.unwrap_or(true),
                };
                // Validated here so a bad setting stops the start with the key named.
                if let Err(e) = gremium_storage::S3Store::new(settings.clone()) {
                    bail!("storage.s3: {e}");
                }
                Some(settings)
            }
        },
        other => bail!("storage.kind: {other:?} is not one of \"local\", \"s3\""),
    };
    Ok(s3)
}

/// The validated `[retention]` section.
#[derive(Debug, Clone, Copy)]
pub(super) struct Retention {
    pub default_days: u32,
    pub max_days: u32,
    pub sweep: Duration,
}

pub(super) fn retention(c: &RetentionConfig) -> anyhow::Result<Retention> {
    let default_days = c.default_days.unwrap_or(30);
    let max_days = c.max_days.unwrap_or(3650);
    if default_days > max_days {
        bail!("retention.default_days: must not exceed retention.max_days ({max_days})");
    }
    let sweep = c.sweep_interval_secs.unwrap_or(3600);
    if !(1..=7 * 24 * 3600).contains(&sweep) {
        bail!("retention.sweep_interval_secs: must be between 1 and 604800");
    }
    Ok(Retention {
        default_days,
        max_days,
        sweep: Duration::from_secs(sweep),
    })
}

/// The validated rest of `[storage]`; `GREMIUM_MASTER_KEY` wins over
/// `storage.master_key`.
pub(super) fn storage_settings(
    c: &StorageConfig,
    s3: Option<gremium_storage::S3Settings>,
    data_dir: &Path,
) -> anyhow::Result<StorageSettings> {
    let master_key = std::env::var("GREMIUM_MASTER_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty())
        .or(c.master_key.clone());
    if let Some(k) = &master_key {
        gremium_storage::crypto::MasterKey::from_hex(k)
            .map_err(|_| anyhow::anyhow!("storage.master_key: expected 64 hex digits"))?;
    }
    Ok(StorageSettings {
        s3,
        master_key,
        master_key_file_default: c.master_key_file.is_none(),
        master_key_file: c
            .master_key_file
            .clone()
            .unwrap_or_else(|| data_dir.join("keys").join("master.key")),
        spool_dir: c
            .spool_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("spool")),
        spool_min_free: c
            .spool_min_free_mb
            .unwrap_or(256)
            .checked_mul(1024 * 1024)
            .ok_or_else(|| anyhow::anyhow!("storage.spool_min_free_mb: too large"))?,
        local_dir: c
            .local_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("objects")),
    })
}
