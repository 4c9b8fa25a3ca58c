//! Starting the server: data folder, store, blobs, keys, TLS, graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::auth::Keys;
use crate::blobs::Blobs;
use crate::http::{AppState, Settings};
use crate::store::Store;
use crate::store::sqlite::SqliteStore;

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where everything lives: `aloft.db`, `blobs/`, `tls/`, keys.
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// URL devices reach the server at.
    pub public_url: Option<String>,
    /// TLS certificate (PEM); generated when absent.
    pub tls_cert: Option<PathBuf>,
    /// TLS key (PEM).
    pub tls_key: Option<PathBuf>,
}

/// A running server.
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// The certificate served.
    pub cert: PathBuf,
    handle: axum_server::Handle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    events: crate::events::Events,
}

impl Running {
    /// Stops accepting, lets requests in flight finish (10 s at most), and waits.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.events.close();
        self.handle.graceful_shutdown(Some(Duration::from_secs(10)));
        self.task.await.context("server task")?.context("server")?;
        Ok(())
    }
}

/// Opens the data folder's store and applies migrations.
pub async fn open_store(data_dir: &std::path::Path) -> anyhow::Result<SqliteStore> {
    create_private_dir(data_dir)?;
    let store = SqliteStore::open(&data_dir.join("aloft.db"))
        .await
        .with_context(|| format!("opening the database in {}", data_dir.display()))?;
    store.migrate().await.context("migrating the database")?;
    Ok(store)
}

fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(())
}

fn metrics_handle() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    static HANDLE: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
                ])
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            Some(handle)
        })
        .clone()
}

fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificates in {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Starts serving; returns once the socket is bound.
pub async fn start(opts: ServeOptions, settings: Settings) -> anyhow::Result<Running> {
    let store = open_store(&opts.data_dir).await?;
    let blobs = Blobs::local(&opts.data_dir.join("blobs"))?;
    let keys = Keys::load_or_create(&opts.data_dir)?;
    let tls = crate::tls::ensure(
        &opts.data_dir,
        opts.tls_cert.as_deref(),
        opts.tls_key.as_deref(),
        opts.public_url.as_deref(),
    )?;
    let config = tls_config(&tls.cert, &tls.key)?;
    let mut settings = settings;
    settings.public_url = opts.public_url.clone();
    let events = crate::events::Events::default();
    let state = AppState {
        store: Arc::new(store),
        blobs,
        keys: Arc::new(keys),
        settings: Arc::new(settings),
        caches: Arc::default(),
        metrics: metrics_handle(),
        events: events.clone(),
    };
    let app = crate::http::app(state);
    let handle = axum_server::Handle::new();
    let rustls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config));
    let server = axum_server::bind_rustls(opts.listen, rustls).handle(handle.clone());
    let task = tokio::spawn(async move {
        server
            .serve(app.into_make_service_with_connect_info::<SocketAddr>())
            .await
    });
    let addr = handle
        .listening()
        .await
        .with_context(|| format!("could not listen on {}", opts.listen))?;
    tracing::info!(listen = %addr, tls.cert = %tls.cert.display(), "aloft-server listening");
    if tls.generated {
        let fp = crate::tls::fingerprint(&tls.cert)?;
        tracing::info!(tls.cert = %tls.cert.display(), tls.sha256 = %fp, "using the self-signed certificate made on first start");
    }
    Ok(Running {
        addr,
        cert: tls.cert,
        handle,
        task,
        events,
    })
}
