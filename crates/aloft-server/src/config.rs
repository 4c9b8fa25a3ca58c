//! The server's configuration: a TOML file (`aloft-server serve --config FILE`), environment
//! variables and command-line flags, merged into one [`ServerConfig`].
//!
//! Precedence, highest first: a command-line flag, its environment variable, the file, the
//! default. Every key is documented in `docs/server-config.md`. Unknown keys are refused.
//! Resolving is pure (the environment is passed in), so the rules are table-tested; reading the
//! key files happens in [`ServerConfig::keys`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::http::Settings;

/// An error in the configuration, with the key or file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (unknown key, wrong type).
    #[error("invalid configuration file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// A value is not acceptable.
    #[error("invalid value for {key}: {message}")]
    Value {
        /// The key (file key or environment variable).
        key: String,
        /// Why.
        message: String,
    },
    /// A required value is missing.
    #[error("{0}")]
    Missing(String),
    /// A key file could not be read or parsed.
    #[error("{what} {path}: {message}")]
    KeyFile {
        /// Which key.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// The file's schema: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    public_url: Option<String>,
    database_url: Option<String>,
    log_json: Option<bool>,
    #[serde(default)]
    tls: FileTls,
    #[serde(default)]
    blobs: FileBlobs,
    #[serde(default)]
    keys: FileKeys,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    deltas: FileDeltas,
    #[serde(default)]
    tokens: FileTokens,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTls {
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBlobs {
    url: Option<String>,
    endpoint: Option<String>,
    public_endpoint: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    secret_access_key_file: Option<PathBuf>,
    allow_http: Option<bool>,
    cleanup_interval_secs: Option<u64>,
    orphan_age_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKeys {
    signing_key_file: Option<PathBuf>,
    url_secret_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_artifact_bytes: Option<u64>,
    max_json_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDeltas {
    sources: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(clippy::struct_field_names)] // the keys operators write
struct FileTokens {
    device_token_secs: Option<i64>,
    session_token_secs: Option<i64>,
    download_link_secs: Option<i64>,
}

impl FileConfig {
    /// Reads and parses a file; relative paths in it are made relative to its folder.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut cfg = Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })?;
        cfg.relative_to(path.parent().unwrap_or_else(|| Path::new(".")));
        Ok(cfg)
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim().to_owned())
    }

    fn relative_to(&mut self, base: &Path) {
        for p in [
            &mut self.data_dir,
            &mut self.tls.cert,
            &mut self.tls.key,
            &mut self.blobs.secret_access_key_file,
            &mut self.keys.signing_key_file,
            &mut self.keys.url_secret_file,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
}

/// What the command line gave (each already merged with its environment variable by clap).
#[derive(Debug, Default, Clone)]
pub struct CliOverrides {
    /// `--data-dir` / `ALOFT_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--listen` / `ALOFT_LISTEN`.
    pub listen: Option<SocketAddr>,
    /// `--public-url` / `ALOFT_PUBLIC_URL`.
    pub public_url: Option<String>,
    /// `--tls-cert`.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`.
    pub tls_key: Option<PathBuf>,
    /// `--log-json`.
    pub log_json: Option<bool>,
    /// `--database-url` / `ALOFT_DATABASE_URL`.
    pub database_url: Option<String>,
}

/// A secret value; never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Where a key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The data folder (made on first start), as a single server does.
    DataDir,
    /// A file (shared by every replica).
    File(PathBuf),
    /// The value of an environment variable.
    Value(Secret),
}

/// S3 connection settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// The bucket.
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/`), may be empty.
    pub prefix: String,
    /// The endpoint the server talks to; AWS when absent.
    pub endpoint: Option<String>,
    /// The endpoint devices reach, for which download URLs are signed; `endpoint` when absent.
    pub public_endpoint: Option<String>,
    /// The region.
    pub region: String,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<Secret>,
    /// Allow `http://` endpoints.
    pub allow_http: bool,
}

/// Where artifact files are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobLocation {
    /// A local folder.
    Local(PathBuf),
    /// An S3-compatible bucket.
    S3(S3Config),
}

/// Background cleaning of files no artifact refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cleanup {
    /// Seconds between runs.
    pub interval_secs: u64,
    /// Only files older than this are orphans (an upload in progress is younger).
    pub orphan_age_secs: u64,
}

/// The resolved configuration of `aloft-server serve`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Data folder (generated certificate, default database and blob folder, default keys).
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Database URL (`sqlite://PATH`).
    pub database_url: String,
    /// Artifact files.
    pub blobs: BlobLocation,
    /// Orphan cleaning.
    pub cleanup: Cleanup,
    /// Token signing key (Ed25519, PKCS#8 PEM).
    pub signing_key: KeySource,
    /// Download-URL secret.
    pub url_secret: KeySource,
    /// TLS certificate and key; generated in the data folder when absent.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Log as JSON lines.
    pub log_json: Option<bool>,
    /// What the handlers need (public URL, lifetimes, limits).
    pub settings: Settings,
}

/// The default listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8443";

fn value_err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Value {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// Parses a blob URL: a folder path, `file:///folder`, or `s3://bucket/prefix`.
pub fn parse_blob_url(url: &str) -> Result<BlobLocation, String> {
    if let Some(rest) = url.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid {
            return Err(format!(
                "{bucket:?} is not an S3 bucket name (3 to 63 of a-z, 0-9, '-', '.')"
            ));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == "." || p == "..") {
            return Err("the prefix may not contain . or .. parts".into());
        }
        return Ok(BlobLocation::S3(S3Config {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
            endpoint: None,
            public_endpoint: None,
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key: None,
            allow_http: false,
        }));
    }
    let path = url.strip_prefix("file://").unwrap_or(url);
    if path.is_empty() || url.contains("://") && !url.starts_with("file://") {
        return Err(format!(
            "{url:?}: expected a folder, file:///folder or s3://bucket/prefix"
        ));
    }
    Ok(BlobLocation::Local(PathBuf::from(path)))
}

fn positive(key: &str, v: i64) -> Result<i64, ConfigError> {
    if v > 0 {
        Ok(v)
    } else {
        Err(value_err(key, "must be a positive number of seconds"))
    }
}

fn env_parse<T: std::str::FromStr>(
    env: &BTreeMap<String, String>,
    key: &str,
) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    env.get(key)
        .map(|v| {
            v.trim()
                .parse::<T>()
                .map_err(|e| value_err(key, e.to_string()))
        })
        .transpose()
}

fn key_source(
    env: &BTreeMap<String, String>,
    value_var: &str,
    file_var: &str,
    file: Option<PathBuf>,
) -> KeySource {
    if let Some(v) = env.get(value_var) {
        KeySource::Value(Secret(v.clone()))
    } else if let Some(p) = env.get(file_var) {
        KeySource::File(PathBuf::from(p))
    } else if let Some(p) = file {
        KeySource::File(p)
    } else {
        KeySource::DataDir
    }
}

/// Merges flags, environment and file into the configuration (pure: `env` is the process's
/// environment, or a table in tests).
pub fn resolve(
    cli: CliOverrides,
    env: &BTreeMap<String, String>,
    file: FileConfig,
) -> Result<ServerConfig, ConfigError> {
    let data_dir = cli.data_dir.or(file.data_dir).ok_or_else(|| {
        ConfigError::Missing(
            "no data folder: give --data-dir, ALOFT_DATA_DIR or data_dir in the configuration file"
                .into(),
        )
    })?;
    let listen = match cli.listen.or(file.listen) {
        Some(l) => l,
        None => DEFAULT_LISTEN
            .parse()
            .map_err(|_| value_err("listen", "default"))?,
    };
    let public_url = cli.public_url.or(file.public_url);
    if let Some(u) = &public_url
        && !(u.starts_with("https://") || u.starts_with("http://"))
    {
        return Err(value_err(
            "public_url",
            format!("{u:?} is not an http(s) URL"),
        ));
    }
    let database_url = cli
        .database_url
        .or_else(|| env.get("ALOFT_DATABASE_URL").cloned())
        .or(file.database_url)
        .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("aloft.db").display()));
    let fb = file.blobs;
    let blob_url = env.get("ALOFT_BLOB_URL").cloned().or(fb.url);
    let blobs = match blob_url {
        None => BlobLocation::Local(data_dir.join("blobs")),
        Some(url) => match parse_blob_url(&url).map_err(|m| value_err("blobs.url", m))? {
            BlobLocation::S3(mut s3) => {
                let pick = |var: &str, aws: &str, file: Option<String>| {
                    env.get(var).or_else(|| env.get(aws)).cloned().or(file)
                };
                s3.endpoint = pick("ALOFT_S3_ENDPOINT", "AWS_ENDPOINT_URL", fb.endpoint);
                s3.public_endpoint = env
                    .get("ALOFT_S3_PUBLIC_ENDPOINT")
                    .cloned()
                    .or(fb.public_endpoint);
                if let Some(r) = pick("ALOFT_S3_REGION", "AWS_REGION", fb.region) {
                    s3.region = r;
                }
                s3.access_key_id = pick(
                    "ALOFT_S3_ACCESS_KEY_ID",
                    "AWS_ACCESS_KEY_ID",
                    fb.access_key_id,
                );
                s3.secret_access_key = match env
                    .get("ALOFT_S3_SECRET_ACCESS_KEY")
                    .or_else(|| env.get("AWS_SECRET_ACCESS_KEY"))
                {
                    Some(v) => Some(Secret(v.clone())),
                    None => fb
                        .secret_access_key_file
                        .map(|p| read_secret_file("S3 secret access key file", &p))
                        .transpose()?,
                };
                s3.allow_http = env_parse(env, "ALOFT_S3_ALLOW_HTTP")?
                    .or(fb.allow_http)
                    .unwrap_or(false);
                for (key, e) in [
                    ("blobs.endpoint", &s3.endpoint),
                    ("blobs.public_endpoint", &s3.public_endpoint),
                ] {
                    if let Some(e) = e {
                        check_endpoint(key, e, s3.allow_http)?;
                    }
                }
                BlobLocation::S3(s3)
            }
            local @ BlobLocation::Local(_) => local,
        },
    };
    let cleanup = Cleanup {
        interval_secs: fb.cleanup_interval_secs.unwrap_or(3600).max(1),
        orphan_age_secs: fb.orphan_age_secs.unwrap_or(3600),
    };
    let signing_key = key_source(
        env,
        "ALOFT_SIGNING_KEY",
        "ALOFT_SIGNING_KEY_FILE",
        file.keys.signing_key_file,
    );
    let url_secret = key_source(
        env,
        "ALOFT_URL_SECRET",
        "ALOFT_URL_SECRET_FILE",
        file.keys.url_secret_file,
    );
    let tls = match (cli.tls_cert.or(file.tls.cert), cli.tls_key.or(file.tls.key)) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(ConfigError::Missing(
                "a TLS certificate needs its key and a key its certificate".into(),
            ));
        }
    };
    let d = Settings::default();
    let t = file.tokens;
    let l = file.limits;
    let settings = Settings {
        public_url,
        device_token_secs: positive(
            "tokens.device_token_secs",
            t.device_token_secs.unwrap_or(d.device_token_secs),
        )?,
        session_token_secs: positive(
            "tokens.session_token_secs",
            t.session_token_secs.unwrap_or(d.session_token_secs),
        )?,
        download_link_secs: positive(
            "tokens.download_link_secs",
            t.download_link_secs.unwrap_or(d.download_link_secs),
        )?,
        max_artifact_bytes: l.max_artifact_bytes.unwrap_or(d.max_artifact_bytes),
        max_json_bytes: l.max_json_bytes.unwrap_or(d.max_json_bytes),
        delta_sources: file.deltas.sources.unwrap_or(d.delta_sources),
        movable_clock: false,
    };
    // S3 takes at most 10,000 parts per upload, and uploads go in parts of this size.
    let s3_max = 10_000 * crate::blobs::PART_BYTES as u64;
    if matches!(blobs, BlobLocation::S3(_)) && settings.max_artifact_bytes > s3_max {
        return Err(value_err(
            "limits.max_artifact_bytes",
            format!("S3 uploads go in at most 10000 parts of 8 MiB: at most {s3_max} bytes"),
        ));
    }
    if matches!(blobs, BlobLocation::S3(_)) && settings.download_link_secs > 7 * 24 * 3600 {
        return Err(value_err(
            "tokens.download_link_secs",
            "S3 presigned URLs last at most 7 days (604800 seconds)",
        ));
    }
    Ok(ServerConfig {
        data_dir,
        listen,
        database_url,
        blobs,
        cleanup,
        signing_key,
        url_secret,
        tls,
        log_json: cli.log_json.or(file.log_json),
        settings,
    })
}

fn check_endpoint(key: &str, e: &str, allow_http: bool) -> Result<(), ConfigError> {
    if e.starts_with("https://") || (allow_http && e.starts_with("http://")) {
        Ok(())
    } else if e.starts_with("http://") {
        Err(value_err(
            key,
            format!("{e:?} is plain HTTP: set blobs.allow_http = true to allow it"),
        ))
    } else {
        Err(value_err(key, format!("{e:?} is not an http(s) URL")))
    }
}

fn read_secret_file(what: &'static str, path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::KeyFile {
        what,
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    Ok(Secret(text.trim().to_owned()))
}

/// Loads a configuration the way `serve` does: the file (if any), then the process environment,
/// then the flags.
pub fn load(config_file: Option<&Path>, cli: CliOverrides) -> Result<ServerConfig, ConfigError> {
    let file = match config_file {
        Some(p) => FileConfig::read(p)?,
        None => FileConfig::default(),
    };
    let env: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("ALOFT_") || k.starts_with("AWS_"))
        .collect();
    resolve(cli, &env, file)
}

impl ServerConfig {
    /// The configuration of a single server on a data folder, as `serve --data-dir` had.
    pub fn for_data_dir(data_dir: &Path, listen: SocketAddr, settings: Settings) -> Self {
        Self {
            data_dir: data_dir.to_owned(),
            listen,
            database_url: format!("sqlite://{}", data_dir.join("aloft.db").display()),
            blobs: BlobLocation::Local(data_dir.join("blobs")),
            cleanup: Cleanup {
                interval_secs: 3600,
                orphan_age_secs: 3600,
            },
            signing_key: KeySource::DataDir,
            url_secret: KeySource::DataDir,
            tls: None,
            log_json: None,
            settings,
        }
    }

    /// Loads the token and URL keys: from the data folder (made on first start) unless given.
    pub fn keys(&self) -> anyhow::Result<crate::auth::Keys> {
        use anyhow::Context as _;
        use ed25519_dalek::pkcs8::DecodePrivateKey as _;
        if self.signing_key == KeySource::DataDir && self.url_secret == KeySource::DataDir {
            return crate::auth::Keys::load_or_create(&self.data_dir);
        }
        if self.signing_key == KeySource::DataDir || self.url_secret == KeySource::DataDir {
            // Makes the data folder's missing keys, as a single server does.
            crate::auth::Keys::load_or_create(&self.data_dir)?;
        }
        let signing_pem = match &self.signing_key {
            KeySource::Value(s) => s.0.clone(),
            KeySource::File(p) => read_secret_file("signing key file", p)?.0,
            KeySource::DataDir => std::fs::read_to_string(self.data_dir.join("jwt-ed25519.pem"))
                .context("reading the data folder's signing key")?,
        };
        let signing = ed25519_dalek::SigningKey::from_pkcs8_pem(&signing_pem).map_err(|e| {
            anyhow::anyhow!("the signing key is not an Ed25519 PKCS#8 PEM key: {e}")
        })?;
        let url_secret = match &self.url_secret {
            KeySource::Value(s) => s.0.as_bytes().to_vec(),
            KeySource::File(p) => std::fs::read(p)
                .with_context(|| format!("reading the URL secret file {}", p.display()))?,
            KeySource::DataDir => std::fs::read(self.data_dir.join("url-secret"))
                .context("reading the data folder's URL secret")?,
        };
        if url_secret.len() < 32 {
            anyhow::bail!(
                "the URL secret has {} bytes: at least 32 are needed",
                url_secret.len()
            );
        }
        crate::auth::Keys::from_signing_key(&signing, url_secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn cli(dir: &str) -> CliOverrides {
        CliOverrides {
            data_dir: Some(dir.into()),
            ..CliOverrides::default()
        }
    }

    #[test]
    fn data_dir_alone_gives_todays_server() {
        let c = resolve(cli("/d"), &env(&[]), FileConfig::default()).unwrap();
        assert_eq!(c.database_url, "sqlite:///d/aloft.db");
        assert_eq!(c.blobs, BlobLocation::Local("/d/blobs".into()));
        assert_eq!(c.signing_key, KeySource::DataDir);
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(
            c.settings.max_artifact_bytes,
            Settings::default().max_artifact_bytes
        );
    }

    #[test]
    fn file_then_env_then_flags() {
        let file = FileConfig::parse(
            r#"
            data_dir = "/file"
            listen = "127.0.0.1:1000"
            public_url = "https://file.example"
            database_url = "sqlite:///file/db"
            [blobs]
            url = "s3://bucket/some/prefix/"
            endpoint = "http://127.0.0.1:9000"
            allow_http = true
            access_key_id = "from-file"
            [limits]
            max_artifact_bytes = 1000
            [tokens]
            device_token_secs = 60
            download_link_secs = 600
            [keys]
            signing_key_file = "/keys/jwt.pem"
            "#,
        )
        .unwrap();
        let e = env(&[
            ("ALOFT_DATABASE_URL", "postgres://db/aloft"),
            ("AWS_ACCESS_KEY_ID", "from-env"),
            ("AWS_SECRET_ACCESS_KEY", "s3cret"),
            ("ALOFT_URL_SECRET", "x"),
        ]);
        let flags = CliOverrides {
            listen: Some("127.0.0.1:2000".parse().unwrap()),
            ..CliOverrides::default()
        };
        let c = resolve(flags, &e, file).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/file"));
        assert_eq!(c.listen.port(), 2000);
        assert_eq!(
            c.settings.public_url.as_deref(),
            Some("https://file.example")
        );
        assert_eq!(c.database_url, "postgres://db/aloft");
        let BlobLocation::S3(s3) = &c.blobs else {
            panic!("not S3: {:?}", c.blobs)
        };
        assert_eq!(
            (s3.bucket.as_str(), s3.prefix.as_str()),
            ("bucket", "some/prefix")
        );
        assert_eq!(s3.access_key_id.as_deref(), Some("from-env"));
        assert_eq!(s3.secret_access_key, Some(Secret("s3cret".into())));
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(c.settings.max_artifact_bytes, 1000);
        assert_eq!(c.settings.device_token_secs, 60);
        assert_eq!(c.settings.download_link_secs, 600);
        assert_eq!(c.signing_key, KeySource::File("/keys/jwt.pem".into()));
        assert_eq!(c.url_secret, KeySource::Value(Secret("x".into())));
        assert!(!format!("{c:?}").contains("s3cret"), "a secret in Debug");
    }

    #[test]
    fn refused() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (
                "data_dir = \"/d\"\nlisten_addr = \"x\"",
                &[],
                "unknown field `listen_addr`",
            ),
            (
                "[limits]\nmax_artifact = 5",
                &[],
                "unknown field `max_artifact`",
            ),
            ("[tokens]\ndevice_token_secs = \"a\"", &[], "invalid type"),
            ("", &[], "no data folder"),
            (
                "data_dir = \"/d\"\n[blobs]\nurl = \"s3://B\"",
                &[],
                "not an S3 bucket",
            ),
            (
                "data_dir = \"/d\"\n[blobs]\nurl = \"ftp://x\"",
                &[],
                "expected a folder",
            ),
            (
                "data_dir = \"/d\"\n[blobs]\nurl = \"s3://bkt\"\nendpoint = \"http://h\"",
                &[],
                "allow_http",
            ),
            (
                "data_dir = \"/d\"\n[tokens]\ndevice_token_secs = 0",
                &[],
                "positive",
            ),
            (
                "data_dir = \"/d\"\n[blobs]\nurl = \"s3://bkt\"\n[tokens]\ndownload_link_secs = 700000",
                &[],
                "7 days",
            ),
            (
                "data_dir = \"/d\"\npublic_url = \"example.com\"",
                &[],
                "not an http(s) URL",
            ),
            (
                "data_dir = \"/d\"\n[blobs]\nurl = \"s3://bkt\"\n[limits]\nmax_artifact_bytes = 90000000000",
                &[],
                "10000 parts",
            ),
            ("data_dir = \"/d\"", &[("ALOFT_S3_ALLOW_HTTP", "maybe")], ""),
            (
                "data_dir = \"/d\"\n[tls]\ncert = \"c\"",
                &[],
                "needs its key",
            ),
        ];
        for (text, vars, want) in cases {
            let got = FileConfig::parse(text).and_then(|f| {
                resolve(CliOverrides::default(), &env(vars), f)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
            match got {
                Err(msg) => assert!(msg.contains(want), "{text:?}: {msg}"),
                // ALOFT_S3_ALLOW_HTTP is only read for S3: a local store ignores it.
                Ok(()) => assert!(want.is_empty(), "{text:?} was accepted"),
            }
        }
    }

    #[test]
    fn blob_urls() {
        assert_eq!(
            parse_blob_url("/srv/blobs").unwrap(),
            BlobLocation::Local("/srv/blobs".into())
        );
        assert_eq!(
            parse_blob_url("file:///srv/blobs").unwrap(),
            BlobLocation::Local("/srv/blobs".into())
        );
        let BlobLocation::S3(s) = parse_blob_url("s3://my-bucket").unwrap() else {
            panic!()
        };
        assert_eq!((s.bucket.as_str(), s.prefix.as_str()), ("my-bucket", ""));
        assert!(parse_blob_url("s3://b/../x").is_err());
        assert!(parse_blob_url("").is_err());
    }

    #[test]
    fn relative_paths_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.toml");
        std::fs::write(
            &path,
            "data_dir = \"data\"\n[keys]\nurl_secret_file = \"/abs\"\n",
        )
        .unwrap();
        let f = FileConfig::read(&path).unwrap();
        let c = resolve(CliOverrides::default(), &env(&[]), f).unwrap();
        assert_eq!(c.data_dir, dir.path().join("data"));
        assert_eq!(c.url_secret, KeySource::File("/abs".into()));
    }

    #[test]
    fn shared_keys_from_files() {
        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        let dir = tempfile::tempdir().unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let pem = key
            .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .unwrap();
        std::fs::write(dir.path().join("jwt.pem"), pem.as_bytes()).unwrap();
        std::fs::write(dir.path().join("secret"), [9u8; 32]).unwrap();
        let mut c = ServerConfig::for_data_dir(
            &dir.path().join("a"),
            "127.0.0.1:0".parse().unwrap(),
            Settings::default(),
        );
        c.signing_key = KeySource::File(dir.path().join("jwt.pem"));
        c.url_secret = KeySource::File(dir.path().join("secret"));
        let a = c.keys().unwrap();
        c.data_dir = dir.path().join("b");
        let b = c.keys().unwrap();
        // Two replicas with different data folders sign alike.
        assert_eq!(a.url_signature("x", 5), b.url_signature("x", 5));
        c.url_secret = KeySource::Value(Secret("short".into()));
        assert!(c.keys().err().unwrap().to_string().contains("at least 32"));
        c.signing_key = KeySource::Value(Secret("not pem".into()));
        assert!(c.keys().err().unwrap().to_string().contains("Ed25519"));
    }
}
