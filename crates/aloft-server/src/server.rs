//! Starting the server: data folder, store, blobs, keys, TLS, background jobs, graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::auth::Keys;
use crate::blobs::Blobs;
use crate::config::ServerConfig;
use crate::conn::{ConnLimits, Guard};
use crate::http::{AppState, Settings};
use crate::store::SqliteStore;
use crate::store::Store;

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
    /// The database: `sqlite://PATH` or `postgres://…`; `None`: `aloft.db` in the data folder.
    pub database_url: Option<String>,
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
    /// Ends the background tasks (feed follower, jobs, blob cleanup).
    stop: tokio_util::sync::CancellationToken,
    background: Vec<tokio::task::JoinHandle<()>>,
    /// Writes the devices' contact times; flushes once more at shutdown.
    check_ins: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets requests in flight finish (10 s at most), and waits.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.events.close();
        self.handle.graceful_shutdown(Some(Duration::from_secs(10)));
        self.task.await.context("server task")?.context("server")?;
        // After the last request: the check-in writer flushes what is left, then ends.
        self.stop.cancel();
        let mut writer = self.check_ins;
        if tokio::time::timeout(Duration::from_secs(3), &mut writer)
            .await
            .is_err()
        {
            writer.abort();
        }
        for task in self.background {
            task.abort();
            let _ = task.await;
        }
        Ok(())
    }
}

/// Opens the data folder's store and applies migrations.
pub async fn open_store(data_dir: &std::path::Path) -> anyhow::Result<SqliteStore> {
    open_store_url(data_dir, None).await
}

/// Opens the store at `database_url` (`sqlite://PATH` or `postgres://…`; `None`: `aloft.db`
/// in the data folder) and applies migrations.
pub async fn open_store_url(
    data_dir: &std::path::Path,
    database_url: Option<&str>,
) -> anyhow::Result<SqliteStore> {
    create_private_dir(data_dir)?;
    let store = match database_url {
        Some(url) => SqliteStore::connect(url)
            .await
            .context("opening the database")?,
        None => SqliteStore::open(&data_dir.join("aloft.db"))
            .await
            .with_context(|| format!("opening the database in {}", data_dir.display()))?,
    };
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

/// Starts serving a data folder as a single server does (local files, keys in the folder;
/// `opts.database_url` may name another database); returns once the socket is bound.
pub async fn start(opts: ServeOptions, settings: Settings) -> anyhow::Result<Running> {
    start_limited(opts, settings, ConnLimits::default()).await
}

/// [`start`] with the given connection limits.
pub async fn start_limited(
    opts: ServeOptions,
    settings: Settings,
    limits: ConnLimits,
) -> anyhow::Result<Running> {
    let mut cfg = ServerConfig::for_data_dir(&opts.data_dir, opts.listen, settings);
    cfg.settings.public_url = opts.public_url;
    cfg.tls = opts.tls_cert.zip(opts.tls_key);
    if let Some(url) = opts.database_url {
        cfg.database_url = url;
    }
    start_config_limited(cfg, limits).await
}

/// Starts serving a configuration; returns once the socket is bound.
pub async fn start_config(cfg: ServerConfig) -> anyhow::Result<Running> {
    start_config_limited(cfg, ConnLimits::default()).await
}

/// [`start_config`] with the given connection limits.
pub async fn start_config_limited(
    cfg: ServerConfig,
    limits: ConnLimits,
) -> anyhow::Result<Running> {
    let store = open_store_url(&cfg.data_dir, Some(&cfg.database_url)).await?;
    let blobs = Blobs::open(&cfg.blobs)?;
    let keys = cfg.keys()?;
    let (tls_cert, tls_key) = cfg.tls.clone().unzip();
    let tls = crate::tls::ensure(
        &cfg.data_dir,
        tls_cert.as_deref(),
        tls_key.as_deref(),
        cfg.settings.public_url.as_deref(),
    )?;
    let config = tls_config(&tls.cert, &tls.key)?;
    let events = crate::events::Events::default();
    let replicated = store.dialect() == crate::store::dialect::Dialect::Postgres;
    let store: Arc<dyn Store> = Arc::new(store);
    let caches: Arc<crate::cache::Caches> = Arc::default();
    let clock = Arc::new(if cfg.settings.movable_clock {
        tracing::warn!("the rollout clock is movable (a test server)");
        crate::time::Clock::movable()
    } else {
        crate::time::Clock::default()
    });
    let shared = crate::service::Shared {
        caches: caches.clone(),
        events: events.clone(),
        clock: clock.clone(),
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let background = start_background(
        &store,
        &shared,
        &keys,
        (&blobs, cfg.cleanup),
        replicated.then(|| cfg.database_url.clone()),
        &stop,
    )
    .await?;

    tracing::info!(blobs = blobs.backend(), "artifact storage");
    let listen = cfg.listen;
    let (writer_store, writer_caches) = (store.clone(), caches.clone());
    let state = AppState {
        store,
        blobs,
        keys: Arc::new(keys),
        settings: Arc::new(cfg.settings),
        caches,
        metrics: metrics_handle(),
        events: events.clone(),
        throttles: Arc::default(),
        tickets: Arc::default(),
        clock,
    };
    let app = crate::http::app(state);
    let handle = axum_server::Handle::new();
    let rustls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config));
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(rustls)
        .handshake_timeout(limits.handshake_timeout)
        .acceptor(Guard::new(&limits));
    let mut server = axum_server::bind(listen)
        .acceptor(acceptor)
        .handle(handle.clone());
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let task = tokio::spawn(async move {
        server
            .serve(app.into_make_service_with_connect_info::<SocketAddr>())
            .await
    });
    let addr = handle
        .listening()
        .await
        .with_context(|| format!("could not listen on {listen}"))?;
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
        check_ins: write_check_ins(writer_store, writer_caches, stop.clone()),
        stop,
        background,
    })
}

/// How often the devices' contact times noted by polls are written (one transaction).
const CHECK_IN_FLUSH: Duration = Duration::from_secs(1);

/// Writes the contact times polls noted, every [`CHECK_IN_FLUSH`] and once more at `stop`.
fn write_check_ins(
    store: Arc<dyn Store>,
    caches: Arc<crate::cache::Caches>,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let stopping = tokio::select! {
                () = tokio::time::sleep(CHECK_IN_FLUSH) => false,
                () = stop.cancelled() => true,
            };
            let seen = caches.take_check_ins();
            if let Err(e) = store.check_in_many(&seen).await {
                tracing::warn!(error = %e, devices = seen.len(), "cannot write contact times; retrying");
                for (device, at) in &seen {
                    caches.note_check_in(device, *at);
                }
            }
            if stopping {
                return;
            }
        }
    })
}

/// The background tasks: feed pruning on one replica at a time; on `PostgreSQL` (several
/// replicas: `shared_url`) also the keys check, the feed follower and event forwarding.
async fn start_background(
    store: &Arc<dyn Store>,
    shared: &crate::service::Shared,
    keys: &Keys,
    (blobs, cleanup): (&Blobs, crate::config::Cleanup),
    shared_url: Option<String>,
    stop: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    use crate::cluster;
    let me = uuid::Uuid::new_v4().to_string();
    let blobs = blobs.clone();
    let orphan_age = Duration::from_secs(cleanup.orphan_age_secs);
    let mut tasks = vec![
        cluster::every(
            store.clone(),
            "prune-feed",
            me.clone(),
            Duration::from_secs(60),
            stop.clone(),
            cluster::prune_feed,
        ),
        // The orphan cleanup, by one replica per interval (it is idempotent anyway).
        cluster::every(
            store.clone(),
            "blob-cleanup",
            me.clone(),
            Duration::from_secs(cleanup.interval_secs),
            stop.clone(),
            move |store| {
                let blobs = blobs.clone();
                async move {
                    let cleaned = blobs.clean_orphans(&*store, orphan_age).await?;
                    if cleaned.deleted > 0 {
                        tracing::info!(deleted = cleaned.deleted, "orphan cleanup done");
                    }
                    Ok(())
                }
            },
        ),
    ];
    // Rollouts: start times and soaks end by the clock (reports evaluate them at once).
    tasks.push(cluster::every(
        store.clone(),
        "rollouts",
        me.clone(),
        crate::service::rollouts::TICK,
        stop.clone(),
        {
            let shared = shared.clone();
            move |store| {
                let shared = shared.clone();
                async move { Ok(crate::service::rollouts::tick(shared.ctx(&*store)).await?) }
            }
        },
    ));
    // Dynamic deployments: devices join at once after a change; the sweep bounds a miss.
    tasks.push(cluster::every(
        store.clone(),
        "dynamic-sweep",
        me.clone(),
        crate::service::dynamic::SWEEP,
        stop.clone(),
        {
            let shared = shared.clone();
            move |store| {
                let shared = shared.clone();
                async move { Ok(crate::service::dynamic::sweep(shared.ctx(&*store)).await?) }
            }
        },
    ));
    let Some(url) = shared_url else {
        return Ok(tasks);
    };
    cluster::check_keys(store.as_ref(), keys.fingerprint()).await?;
    let (heartbeat_store, fingerprint, heartbeat_stop) =
        (store.clone(), keys.fingerprint().to_owned(), stop.clone());
    tasks.push(tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(cluster::KEYS_REFRESH) => {}
                () = heartbeat_stop.cancelled() => return,
            }
            if let Err(e) = cluster::check_keys(heartbeat_store.as_ref(), &fingerprint).await {
                tracing::error!(error = %format!("{e:#}"), "replicas disagree on keys");
            }
        }
    }));
    tasks.push(cluster::follow(
        store.clone(),
        shared.caches.clone(),
        shared.events.clone(),
        me.clone(),
        Some(url),
        stop.clone(),
    ));
    tasks.push(cluster::forward_events(store.clone(), &shared.events, me));
    Ok(tasks)
}
