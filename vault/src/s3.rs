//! Object storage on S3 or an S3-compatible server: [`S3Store`] implements
//! [`ObjectStore`] with aws-sdk-s3, configured only from [`S3Settings`].
//!
//! Owns: the S3 client (static credentials, region, endpoint, path style, retries and
//! timeouts), single-request and multipart uploads, ranged reads, and the mapping of
//! S3's answers onto [`ObjectError`].
//!
//! Must not: read the environment, profiles or any ambient credential chain (no IMDS,
//! no region lookup: a store with missing keys is refused), talk to any host but the
//! configured endpoint (or the region's AWS endpoint when none is set), print the
//! secret key, or decide what is stored or for how long (objects arrive already
//! encrypted; retention is the archive's job).

use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

use crate::objects::{check_key, ObjectError, ObjectStore};

/// Files up to this size go up in one PutObject; larger ones in parts.
const SINGLE_PUT_MAX: u64 = 16 * 1024 * 1024;
/// Size of each part of a multipart upload (all but the last).
const PART_SIZE: u64 = 8 * 1024 * 1024;
/// S3's limit on the number of parts; very large files get larger parts.
const MAX_PARTS: u64 = 10_000;
/// S3's limit on a key's length in bytes.
const MAX_KEY_LEN: usize = 1024;
const DEFAULT_REGION: &str = "us-east-1";
/// Attempts per request, the first included; connection failures and 5xx are retried.
const MAX_ATTEMPTS: u32 = 3;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on one whole request, retries included (an upload part of [`PART_SIZE`] or a
/// single PutObject of up to [`SINGLE_PUT_MAX`]).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);

/// Where and how to reach the bucket, as the operator configured it.
#[derive(Clone)]
pub struct S3Settings {
    /// Base URL of an S3-compatible server (`http://127.0.0.1:9000`); AWS's regional
    /// endpoint when `None`.
    pub endpoint: Option<String>,
    /// The bucket objects live in.
    pub bucket: String,
    /// Signing region; `us-east-1` when `None`.
    pub region: Option<String>,
    /// Access key id; required.
    pub access_key_id: Option<String>,
    /// Secret access key; required, never printed.
    pub secret_access_key: Option<String>,
    /// Address buckets as `endpoint/bucket` rather than `bucket.endpoint` (what most
    /// self-hosted servers need).
    pub path_style: bool,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("path_style", &self.path_style)
            .finish()
    }
}

/// Why [`S3Settings`] cannot make a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum S3SettingsError {
    /// The access key id or the secret access key is missing or empty; the store never
    /// falls back to ambient credentials.
    #[error("S3 needs both an access key id and a secret access key")]
    MissingCredentials,
    /// The bucket name is empty or has characters no S3 server accepts.
    #[error("invalid S3 bucket name {0:?}")]
    InvalidBucket(String),
    /// The endpoint is not an `http://` or `https://` URL.
    #[error("invalid S3 endpoint {0:?}: expected an http:// or https:// URL")]
    InvalidEndpoint(String),
}

/// Objects in one S3 bucket.
#[derive(Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    endpoint: Option<String>,
    region: String,
    path_style: bool,
}

impl fmt::Debug for S3Store {
    // By hand: the client's configuration holds the credentials.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .finish_non_exhaustive()
    }
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl S3Store {
    /// A store for `settings`. Makes no request; see [`S3Store::ensure_bucket`].
    pub fn new(settings: S3Settings) -> Result<S3Store, S3SettingsError> {
        let (Some(key_id), Some(secret)) = (
            non_empty(&settings.access_key_id),
            non_empty(&settings.secret_access_key),
        ) else {
            return Err(S3SettingsError::MissingCredentials);
        };
        let bucket = settings.bucket.trim();
        let bucket_ok = !bucket.is_empty()
            && bucket.len() <= 255
            && bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !bucket_ok {
            return Err(S3SettingsError::InvalidBucket(settings.bucket.clone()));
        }
        let endpoint = match non_empty(&settings.endpoint) {
            Some(e) => {
                let rest = e
                    .strip_prefix("http://")
                    .or_else(|| e.strip_prefix("https://"));
                if !rest.is_some_and(|r| !r.is_empty() && !r.contains(char::is_whitespace)) {
                    return Err(S3SettingsError::InvalidEndpoint(e.into()));
                }
                Some(e.to_owned())
            }
            None => None,
        };
        let region = non_empty(&settings.region)
            .unwrap_or(DEFAULT_REGION)
            .to_owned();

        // Built without aws-config on purpose: nothing here consults the environment,
        // profile files or instance metadata.
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build_https();
        let mut config = aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .http_client(http)
            .region(Region::new(region.clone()))
            .credentials_provider(Credentials::new(
                key_id,
                secret,
                None,
                None,
                "gremium-settings",
            ))
            .force_path_style(settings.path_style)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(MAX_ATTEMPTS)
                    .with_initial_backoff(Duration::from_millis(500))
                    .with_max_backoff(Duration::from_secs(5)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_timeout(OPERATION_TIMEOUT)
                    .build(),
            );
        if let Some(e) = &endpoint {
            config = config.endpoint_url(e);
        }
        Ok(S3Store {
            client: Client::from_conf(config.build()),
            bucket: bucket.to_owned(),
            endpoint,
            region,
            path_style: settings.path_style,
        })
    }

    /// The bucket this store writes to.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Create the bucket unless it exists already.
    pub async fn ensure_bucket(&self) -> Result<(), ObjectError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => return Ok(()),
            Err(e) if not_found(&e) => {}
            Err(e) => return Err(unavailable(e)),
        }
        let mut create = self.client.create_bucket().bucket(&self.bucket);
        if self.region != DEFAULT_REGION {
            // Outside us-east-1, S3 wants the region repeated in the request.
            create = create.create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(self.region.as_str().into())
                    .build(),
            );
        }
        match create.send().await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("BucketAlreadyOwnedByYou") => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn put_single(&self, key: &str, path: &Path, len: u64) -> Result<(), ObjectError> {
        let body = ByteStream::read_from()
            .path(path)
            .length(Length::Exact(len))
            .build()
            .await
            .map_err(|e| ObjectError::Unavailable(format!("reading {}: {e}", path.display())))?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(content_length(len)?)
            .body(body)
            .send()
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn put_multipart(&self, key: &str, path: &Path, len: u64) -> Result<(), ObjectError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .send()
            .await
            .map_err(map_error)?;
        let Some(upload_id) = created.upload_id else {
            return Err(ObjectError::Unavailable(
                "CreateMultipartUpload returned no upload id".into(),
            ));
        };
        let result = self.upload_parts(key, path, len, &upload_id).await;
        if result.is_err() {
            // Parts of an unfinished upload are billed until aborted.
            let abort = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
            if let Err(e) = abort {
                tracing::warn!(
                    bucket = %self.bucket,
                    key,
                    error = %DisplayErrorContext(&e),
                    "could not abort a failed multipart upload"
                );
            }
        }
        result
    }

    async fn upload_parts(
        &self,
        key: &str,
        path: &Path,
        len: u64,
        upload_id: &str,
    ) -> Result<(), ObjectError> {
        let part_size = PART_SIZE.max(len.div_ceil(MAX_PARTS));
        let mut parts = Vec::new();
        let mut offset = 0;
        let mut number: i32 = 1;
        while offset < len {
            let size = part_size.min(len - offset);
            // Each part is streamed from its slice of the file, never held whole.
            let body = ByteStream::read_from()
                .path(path)
                .offset(offset)
                .length(Length::Exact(size))
                .build()
                .await
                .map_err(|e| {
                    ObjectError::Unavailable(format!("reading {}: {e}", path.display()))
                })?;
            let uploaded = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .content_length(content_length(size)?)
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .body(body)
                .send()
                .await
                .map_err(map_error)?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(uploaded.e_tag)
                    .set_checksum_crc32(uploaded.checksum_crc32)
                    .build(),
            );
            offset += size;
            number += 1;
        }
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(map_error)?;
        Ok(())
    }
}

/// `key` checked as [`check_key`] does, and also refused where S3 would see a
/// different key than the local store's path (empty or `.` segments) or a too long one.
fn object_key(key: &str) -> Result<&str, ObjectError> {
    check_key(key)?;
    let plain = key.len() <= MAX_KEY_LEN && key.split('/').all(|s| !s.is_empty() && s != ".");
    if plain {
        Ok(key)
    } else {
        Err(ObjectError::InvalidKey(key.into()))
    }
}

fn content_length(len: u64) -> Result<i64, ObjectError> {
    i64::try_from(len).map_err(|_| ObjectError::Unavailable(format!("{len} bytes is too large")))
}

/// Whether S3 answered that the object (or bucket, for bucket requests) is missing.
fn not_found<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code();
            matches!(code, Some("NoSuchKey" | "NotFound"))
                || (code.is_none() && ctx.raw().status().as_u16() == 404)
        }
        _ => false,
    }
}

fn unavailable<E>(err: SdkError<E, HttpResponse>) -> ObjectError
where
    E: std::error::Error + Send + Sync + 'static,
{
    ObjectError::Unavailable(DisplayErrorContext(&err).to_string())
}

/// A missing object is [`ObjectError::NotFound`]; anything else (refused or timed out
/// connections, 5xx after retries, denied access) is [`ObjectError::Unavailable`].
fn map_error<E>(err: SdkError<E, HttpResponse>) -> ObjectError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if not_found(&err) {
        ObjectError::NotFound
    } else {
        unavailable(err)
    }
}

/// The total from a `Content-Range: bytes a-b/total` header.
fn total_of(content_range: &str) -> Option<u64> {
    content_range.rsplit_once('/')?.1.trim().parse().ok()
}

#[async_trait::async_trait]
impl ObjectStore for S3Store {
    async fn put_file(&self, key: &str, path: &Path) -> Result<(), ObjectError> {
        let key = object_key(key)?;
        let len = tokio::fs::metadata(path)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => ObjectError::NotFound,
                _ => ObjectError::Unavailable(format!("reading {}: {e}", path.display())),
            })?
            .len();
        if len <= SINGLE_PUT_MAX {
            self.put_single(key, path, len).await
        } else {
            self.put_multipart(key, path, len).await
        }
    }

    async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, ObjectError> {
        let key = object_key(key)?;
        if range.start == range.end {
            return Ok(Vec::new());
        }
        if range.start > range.end {
            let len = self.size(key).await?.ok_or(ObjectError::NotFound)?;
            return Err(ObjectError::Range(range, len));
        }
        let sent = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await;
        let out = match sent {
            Ok(out) => out,
            Err(e) if e.code() == Some("InvalidRange") => {
                let len = self.size(key).await?.ok_or(ObjectError::NotFound)?;
                return Err(ObjectError::Range(range, len));
            }
            Err(e) => return Err(map_error(e)),
        };
        // S3 shortens a range that runs past the end instead of refusing it.
        let total = out.content_range().and_then(total_of);
        if let Some(total) = total {
            if range.end > total {
                return Err(ObjectError::Range(range, total));
            }
        }
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| ObjectError::Unavailable(format!("reading {key}: {e}")))?
            .to_vec();
        if total.is_none() {
            // A server that ignored the Range header sent the whole object.
            let len = bytes.len() as u64;
            if range.end > len {
                return Err(ObjectError::Range(range, len));
            }
            return Ok(bytes[range.start as usize..range.end as usize].to_vec());
        }
        let want = range.end - range.start;
        if bytes.len() as u64 != want {
            return Err(ObjectError::Unavailable(format!(
                "asked for {want} bytes of {key}, got {}",
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    async fn size(&self, key: &str) -> Result<Option<u64>, ObjectError> {
        let key = object_key(key)?;
        let sent = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        match sent {
            Ok(out) => match out.content_length().map(u64::try_from) {
                Some(Ok(len)) => Ok(Some(len)),
                _ => Err(ObjectError::Unavailable(format!(
                    "no valid content length for {key}"
                ))),
            },
            Err(e) => match map_error(e) {
                ObjectError::NotFound => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn delete(&self, key: &str) -> Result<(), ObjectError> {
        let key = object_key(key)?;
        let sent = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        match sent.map_err(map_error) {
            Ok(_) | Err(ObjectError::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> S3Settings {
        S3Settings {
            endpoint: Some("http://127.0.0.1:1".into()),
            bucket: "recordings".into(),
            region: None,
            access_key_id: Some("AKID".into()),
            secret_access_key: Some("very-secret-key".into()),
            path_style: true,
        }
    }

    #[tokio::test]
    async fn debug_never_shows_the_secret() {
        let s = settings();
        assert!(!format!("{s:?}").contains("very-secret-key"));
        let store = S3Store::new(s).unwrap();
        let shown = format!("{store:?}");
        assert!(!shown.contains("very-secret-key"), "{shown}");
        assert!(shown.contains("recordings"), "{shown}");
    }

    #[test]
    fn refuses_incomplete_settings() {
        for (key_id, secret) in [(None, Some("s")), (Some("k"), None), (Some(" "), Some("s"))] {
            let s = S3Settings {
                access_key_id: key_id.map(Into::into),
                secret_access_key: secret.map(Into::into),
                ..settings()
            };
            assert!(matches!(
                S3Store::new(s),
                Err(S3SettingsError::MissingCredentials)
            ));
        }
        for bucket in ["", "a/b", "a b"] {
            let s = S3Settings {
                bucket: bucket.into(),
                ..settings()
            };
            assert!(
                matches!(S3Store::new(s), Err(S3SettingsError::InvalidBucket(_))),
                "{bucket}"
            );
        }
        for endpoint in ["127.0.0.1:9000", "ftp://x", "http://"] {
            let s = S3Settings {
                endpoint: Some(endpoint.into()),
                ..settings()
            };
            assert!(
                matches!(S3Store::new(s), Err(S3SettingsError::InvalidEndpoint(_))),
                "{endpoint}"
            );
        }
    }

    #[test]
    fn keys_must_be_plain_segments() {
        for good in ["recordings/a/media.mp4.sealed", "x", "a-b_c/d.e"] {
            assert!(object_key(good).is_ok(), "{good}");
        }
        let long = "k".repeat(MAX_KEY_LEN + 1);
        for bad in [
            "", "/abs", "../x", "a/../b", "a//b", "a/", "a/./b", "./a", "a/b.part", &long,
        ] {
            assert!(
                matches!(object_key(bad), Err(ObjectError::InvalidKey(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn reads_the_total_from_content_range() {
        assert_eq!(total_of("bytes 0-9/20"), Some(20));
        assert_eq!(total_of("bytes */20"), Some(20));
        assert_eq!(total_of("bytes 0-9/*"), None);
    }
}
