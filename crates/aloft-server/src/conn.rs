//! Connection limits: a cap on open connections and an idle timeout, applied to every accepted
//! TCP stream before TLS, so that slow or idle clients cannot hold the server's sockets.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Connection limits of one server process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Open connections at most; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// A connection that neither sends nor receives a byte for this long is closed.
    pub idle_timeout: Duration,
    /// An HTTP/1 request's headers must arrive within this time, counted from the end of the
    /// previous request on the connection (so it also bounds an idle kept-alive connection).
    /// Longer than common clients keep idle connections (15 s), so they never reuse one the
    /// server is closing.
    pub header_read_timeout: Duration,
    /// The TLS handshake must finish within this time.
    pub handshake_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            max_connections: 768,
            idle_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// The acceptor that applies [`ConnLimits`] before TLS (the inner acceptor of rustls').
#[derive(Debug, Clone)]
pub struct Guard {
    slots: Arc<Semaphore>,
    idle: Duration,
}

impl Guard {
    /// A guard allowing `limits.max_connections` connections at once.
    pub fn new(limits: &ConnLimits) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            idle: limits.idle_timeout,
        }
    }
}

impl<I, S> axum_server::accept::Accept<I, S> for Guard
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Send + 'static,
{
    type Stream = Guarded<I>;
    type Service = S;
    type Future = std::future::Ready<io::Result<(Self::Stream, Self::Service)>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        // Over the cap the stream is dropped here, which closes its socket at once.
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            metrics::counter!("aloft_connections_refused_total").increment(1);
            return std::future::ready(Err(io::Error::other("too many open connections")));
        };
        std::future::ready(Ok((Guarded::new(stream, permit, self.idle), service)))
    }
}

/// A stream that holds one connection slot and fails once it was idle too long.
#[derive(Debug)]
pub struct Guarded<I> {
    inner: I,
    _permit: OwnedSemaphorePermit,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<I> Guarded<I> {
    fn new(inner: I, permit: OwnedSemaphorePermit, idle: Duration) -> Self {
        Self {
            inner,
            _permit: permit,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn touch(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.idle);
    }

    /// After the inner stream said `Pending`: an error once the idle deadline has passed (the
    /// deadline's waker is registered either way).
    fn check_idle<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle for too long",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Guarded<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => this.check_idle(cx),
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Guarded<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                if matches!(r, Ok(n) if n > 0) {
                    this.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => this.check_idle(cx),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Pending => this.check_idle(cx),
            r @ Poll::Ready(_) => r,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum_server::accept::Accept as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn limits(max: usize, idle_ms: u64) -> ConnLimits {
        ConnLimits {
            max_connections: max,
            idle_timeout: Duration::from_millis(idle_ms),
            ..ConnLimits::default()
        }
    }

    #[tokio::test]
    async fn connections_over_the_cap_are_refused_until_one_closes() {
        let guard = Guard::new(&limits(2, 60_000));
        let (a, _a) = tokio::io::duplex(64);
        let (b, _b) = tokio::io::duplex(64);
        let (c, _c) = tokio::io::duplex(64);
        let first = guard.accept(a, ()).await.unwrap();
        let _second = guard.accept(b, ()).await.unwrap();
        assert!(
            guard.accept(c, ()).await.is_err(),
            "the third is over the cap"
        );
        drop(first);
        let (d, _d) = tokio::io::duplex(64);
        assert!(
            guard.accept(d, ()).await.is_ok(),
            "a closed one frees its slot"
        );
    }

    #[tokio::test]
    async fn an_idle_connection_fails_and_an_active_one_does_not() {
        let guard = Guard::new(&limits(4, 200));
        let (server, mut client) = tokio::io::duplex(64);
        let (mut server, ()) = guard.accept(server, ()).await.unwrap();
        // Traffic every 100 ms keeps it open past the 200 ms idle limit.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            client.write_all(b"x").await.unwrap();
            let mut one = [0u8; 1];
            server.read_exact(&mut one).await.unwrap();
        }
        let started = Instant::now();
        let mut buf = [0u8; 1];
        let err = server.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
