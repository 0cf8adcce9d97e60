//! Joining NATS: the two connections and the JetStream stream and buckets, created (or found)
//! in the background, retried until NATS answers, so that a node starts even when NATS is down.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::{
    Assets, ClusterError, Inner, NODE_TTL, NODES_BUCKET, RETAINED_BUCKET, STREAM, WILLS_BUCKET,
};
use crate::config::ClusterConfig;

/// The main connection (`echo` false: this node does not receive what it publishes), or the
/// shared groups' one (`echo` true). `connected` is bumped at every (re)connection.
pub(super) async fn connect(
    config: &ClusterConfig,
    echo: bool,
    connected: watch::Sender<u64>,
) -> Result<async_nats::Client, ClusterError> {
    let mut options = async_nats::ConnectOptions::new()
        .name(format!(
            "hermod {}{}",
            config.node,
            if echo { " shared" } else { "" }
        ))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5));
    if !echo {
        options = options.no_echo();
    }
    if let (Some(u), Some(p)) = (&config.user, &config.password) {
        options = options.user_and_password(u.clone(), p.clone());
    }
    if let Some(t) = &config.token {
        options = options.token(t.clone());
    }
    if let Some(ca) = &config.cafile {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(c), Some(k)) = (&config.certfile, &config.keyfile) {
        options = options.add_client_certificate(c.clone(), k.clone());
    }
    let node = config.node.clone();
    options = options.event_callback(move |event| {
        let echo = echo;
        let node = node.clone();
        if matches!(event, async_nats::Event::Connected) {
            connected.send_modify(|n| *n += 1);
        }
        async move {
            match event {
                async_nats::Event::Connected if !echo => info!(%node, "cluster: connected to NATS"),
                async_nats::Event::Disconnected if !echo => {
                    warn!(%node, "cluster: disconnected from NATS; local clients are still served, QoS 1/2 publishes are refused until it is back");
                }
                other => debug!(%node, event = %other, "cluster: NATS event"),
            }
        }
    });
    let urls = config.nats.join(",");
    options
        .connect(config.nats.as_slice())
        .await
        .map_err(|e| ClusterError::Connect {
            urls,
            detail: e.to_string(),
        })
}

/// Creates (or finds) the stream and buckets, retrying until NATS answers.
pub(super) async fn setup(inner: Arc<Inner>, assets: watch::Sender<Option<Assets>>) {
    let mut delay = Duration::from_millis(100);
    let mut logged = false;
    // Connecting and creating the assets take a moment at every start: said only if it lasts.
    let started = Instant::now();
    loop {
        match create_assets(&inner).await {
            Ok(a) => {
                info!(node = %inner.config.node, replicas = a.replicas, "cluster: JetStream ready");
                inner.ready.store(true, Ordering::SeqCst);
                let _ = assets.send(Some(a));
                return;
            }
            Err(e) => {
                if logged || started.elapsed() < Duration::from_secs(5) {
                    debug!(error = %e, "cluster: JetStream not ready yet");
                } else {
                    let hint = if e.contains("10047") {
                        " (JetStream has no room for the stream: lower [cluster] max_bytes or raise the NATS servers' max_file_store)"
                    } else {
                        ""
                    };
                    warn!(error = %e, "cluster: JetStream not ready yet (retrying){hint}; QoS 1/2 publishes are refused meanwhile");
                    logged = true;
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

async fn create_assets(inner: &Inner) -> Result<Assets, String> {
    if !matches!(
        inner.client.connection_state(),
        async_nats::connection::State::Connected
    ) {
        return Err("not connected to NATS".into());
    }
    // Auto: 3 copies on a NATS cluster, 1 on a single server (which cannot replicate).
    let replicas = inner.config.replicas.unwrap_or_else(|| {
        if inner.client.server_info().cluster.is_some() {
            3
        } else {
            1
        }
    });
    try_create(inner, replicas).await
}

async fn try_create(inner: &Inner, replicas: usize) -> Result<Assets, String> {
    let c = &inner.config;
    // Requests of their own, 5 s: when nodes start together, the node that loses the race to
    // create an asset can wait for an answer that never comes (seen: 30 s with a 30 s
    // timeout); the retry then finds the asset.
    let mut js = jetstream::new(inner.client.clone());
    js.set_timeout(Duration::from_secs(5));
    let js = &js;
    js.get_or_create_stream(jetstream::stream::Config {
        name: STREAM.into(),
        subjects: vec!["mqs.>".into()],
        num_replicas: replicas,
        max_age: c.max_age,
        max_bytes: i64::try_from(c.max_bytes).unwrap_or(i64::MAX),
        storage: jetstream::stream::StorageType::File,
        discard: jetstream::stream::DiscardPolicy::Old,
        duplicate_window: Duration::from_secs(120),
        allow_direct: true,
        ..Default::default()
    })
    .await
    .map_err(|e| format!("stream {STREAM}: {e}"))?;
    let retained = ensure_kv(
        js,
        jetstream::kv::Config {
            bucket: RETAINED_BUCKET.into(),
            history: 1,
            num_replicas: replicas,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        },
    )
    .await?;
    let nodes = ensure_kv(
        js,
        jetstream::kv::Config {
            bucket: NODES_BUCKET.into(),
            history: 1,
            max_age: NODE_TTL,
            num_replicas: replicas,
            storage: jetstream::stream::StorageType::Memory,
            ..Default::default()
        },
    )
    .await?;
    let wills = ensure_kv(
        js,
        jetstream::kv::Config {
            bucket: WILLS_BUCKET.into(),
            history: 1,
            num_replicas: replicas,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        },
    )
    .await?;
    let sessions = ensure_kv(
        js,
        jetstream::kv::Config {
            bucket: crate::sessions::SESSIONS_BUCKET.into(),
            history: 1,
            num_replicas: replicas,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        },
    )
    .await?;
    Ok(Assets {
        retained,
        nodes,
        wills,
        sessions,
        replicas,
    })
}

/// The bucket if it exists, else created. Every node does this at start, often at the same
/// moment: looking first keeps them from queueing behind each other's creation (seen: 30 s).
async fn ensure_kv(
    js: &jetstream::Context,
    config: jetstream::kv::Config,
) -> Result<jetstream::kv::Store, String> {
    let bucket = config.bucket.clone();
    if let Ok(kv) = js.get_key_value(&bucket).await {
        return Ok(kv);
    }
    match js.create_key_value(config).await {
        Ok(kv) => Ok(kv),
        // Created by another node in between.
        Err(e) => js
            .get_key_value(&bucket)
            .await
            .map_err(|_| format!("bucket {bucket}: {e}")),
    }
}
