//! Artifact files, through `object_store`: a local folder by default, memory in tests, S3 later.
//! Blobs are immutable and addressed by their SHA-256; an upload goes to a temporary key first
//! and is renamed into place only once the artifact library accepted it.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt as _;
use futures::stream::BoxStream;
use object_store::path::Path as StorePath;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore, WriteMultipart};

/// The blob store.
#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
}

/// An upload in progress under a temporary key.
pub struct Upload {
    writer: WriteMultipart,
    key: StorePath,
}

impl Blobs {
    /// Blobs in a local folder.
    pub fn local(dir: &std::path::Path) -> anyhow::Result<Self> {
        fs_err::create_dir_all(dir)?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)?;
        Ok(Self {
            store: Arc::new(store),
        })
    }

    /// Blobs in memory (tests).
    pub fn memory() -> Self {
        Self {
            store: Arc::new(object_store::memory::InMemory::new()),
        }
    }

    fn key(sha256: &str) -> StorePath {
        StorePath::from(format!("artifacts/{sha256}"))
    }

    /// Starts an upload under `uploads/<id>`.
    pub async fn start_upload(&self) -> object_store::Result<Upload> {
        let key = StorePath::from(format!("uploads/{}", uuid::Uuid::new_v4()));
        let upload = self.store.put_multipart(&key).await?;
        Ok(Upload {
            writer: WriteMultipart::new_with_chunk_size(upload, 8 << 20),
            key,
        })
    }

    /// Writes a chunk of an upload (waits while too many parts are in flight).
    pub async fn write(&self, upload: &mut Upload, chunk: &[u8]) -> object_store::Result<()> {
        upload.writer.wait_for_capacity(4).await?;
        upload.writer.write(chunk);
        Ok(())
    }

    /// Finishes an upload and moves it to its digest key.
    pub async fn commit(&self, upload: Upload, sha256: &str) -> object_store::Result<()> {
        upload.writer.finish().await?;
        self.store.rename(&upload.key, &Self::key(sha256)).await
    }

    /// Drops an upload and whatever it wrote.
    pub async fn abort(&self, upload: Upload) {
        let _ = upload.writer.abort().await;
        let _ = self.store.delete(&upload.key).await;
    }

    /// Deletes a blob.
    pub async fn delete(&self, sha256: &str) -> object_store::Result<()> {
        match self.store.delete(&Self::key(sha256)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Streams a byte range of a blob.
    pub async fn get(
        &self,
        sha256: &str,
        range: Option<Range<u64>>,
    ) -> object_store::Result<BoxStream<'static, object_store::Result<Bytes>>> {
        let opts = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let r = self.store.get_opts(&Self::key(sha256), opts).await?;
        let range = r.range.clone();
        match r.payload {
            // A local file: read it in large chunks (object_store's own stream reads 8 KiB at a
            // time, which caps a download far below what TLS on loopback can carry).
            GetResultPayload::File(file, path) => {
                use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
                let mut file = tokio::fs::File::from_std(file);
                file.seek(std::io::SeekFrom::Start(range.start))
                    .await
                    .map_err(|source| object_store::Error::Generic {
                        store: "local",
                        source: format!("seeking {}: {source}", path.display()).into(),
                    })?;
                let reader = file.take(range.end - range.start);
                Ok(tokio_util::io::ReaderStream::with_capacity(reader, 1 << 20)
                    .map(|r| {
                        r.map_err(|e| object_store::Error::Generic {
                            store: "local",
                            source: Box::new(e),
                        })
                    })
                    .boxed())
            }
            GetResultPayload::Stream(s) => Ok(s),
        }
    }
}
