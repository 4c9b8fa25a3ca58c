//! The S3-compatible backend (`s3://bucket/prefix`).
//!
//! Two clients share the credentials: one talks to `endpoint` (the server's way to S3), the
//! other only signs download URLs for `public_endpoint` (the devices' way to it), because a
//! presigned URL is valid only for the host it was signed for. Requests fail fast when S3 is
//! unreachable (5 s to connect, two retries within 15 s), so an upload is answered 503 instead
//! of hanging.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::{ClientOptions, RetryConfig};

use super::Blobs;
use crate::config::S3Config;

fn builder(cfg: &S3Config, endpoint: Option<&str>) -> AmazonS3Builder {
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(&cfg.bucket)
        .with_region(&cfg.region)
        .with_allow_http(cfg.allow_http)
        .with_client_options(
            ClientOptions::new()
                .with_allow_http(cfg.allow_http)
                .with_connect_timeout(Duration::from_secs(5))
                // A download through the server may take long; stalls are cut by the client.
                .with_timeout_disabled(),
        )
        .with_retry(RetryConfig {
            max_retries: 2,
            retry_timeout: Duration::from_secs(15),
            ..RetryConfig::default()
        });
    if let Some(e) = endpoint {
        // A custom endpoint (not AWS) is addressed by path: `endpoint/bucket/key`.
        b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
    }
    if let Some(id) = &cfg.access_key_id {
        b = b.with_access_key_id(id);
    }
    if let Some(secret) = &cfg.secret_access_key {
        b = b.with_secret_access_key(&secret.0);
    }
    b
}

fn build(cfg: &S3Config, endpoint: Option<&str>) -> anyhow::Result<AmazonS3> {
    builder(cfg, endpoint)
        .build()
        .with_context(|| format!("configuring S3 bucket {}", cfg.bucket))
}

/// Blobs in an S3 bucket.
pub fn open(cfg: &S3Config) -> anyhow::Result<Blobs> {
    let store = build(cfg, cfg.endpoint.as_deref())?;
    let public = cfg.public_endpoint.as_deref().or(cfg.endpoint.as_deref());
    let signer = build(cfg, public)?;
    let mut blobs = Blobs::new(Arc::new(store), "s3", &cfg.prefix);
    blobs.signer = Some(Arc::new(signer));
    blobs.typed = true;
    Ok(blobs)
}
