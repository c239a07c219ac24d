//! Where the WhatsApp Web client runs: a dedicated multi-thread tokio runtime
//! shared by all sessions, so protocol work (Noise, Signal, SQLite) never
//! competes with the HTTP workers or the actix arbiters. [`DedicatedRuntime`]
//! is the client's `Runtime` on that runtime's handle; [`WatchedTransport`]
//! wraps its transport factory so a failed or timed-out connect becomes a
//! `disconnected` event (the client itself only logs it and retries). Used
//! by the driver.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use whatsapp_rust::async_channel;
use whatsapp_rust::transport::{Transport, TransportEvent, TransportFactory};
use whatsapp_rust::wacore::runtime::AbortHandle;

/// The client's `Runtime` on the gateway's WhatsApp runtime.
#[derive(Clone)]
pub struct DedicatedRuntime(pub Handle);

#[async_trait]
impl whatsapp_rust::Runtime for DedicatedRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send + 'static>>) -> AbortHandle {
        let task = self.0.spawn(future);
        AbortHandle::new(move || task.abort())
    }

    fn spawn_detached(&self, future: Pin<Box<dyn Future<Output = ()> + Send + 'static>>) {
        self.0.spawn(future);
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        Box::pin(tokio::time::sleep(duration))
    }

    fn spawn_blocking(
        &self,
        f: Box<dyn FnOnce() + Send + 'static>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let task = self.0.spawn_blocking(f);
        Box::pin(async move {
            let _ = task.await;
        })
    }

    fn yield_now(&self) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
        // Multi-thread runtime: other tasks run on the other workers.
        None
    }
}

/// A connect attempt that failed before any WhatsApp traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectFailed(pub String);

/// What `TransportFactory::create_transport` returns.
type Created = Result<
    (Arc<dyn Transport>, async_channel::Receiver<TransportEvent>),
    whatsapp_rust::anyhow::Error,
>;

/// Wraps the real transport factory and reports each failed connect.
pub struct WatchedTransport {
    pub inner: Arc<dyn TransportFactory>,
    pub failures: mpsc::UnboundedSender<ConnectFailed>,
}

#[async_trait]
impl TransportFactory for WatchedTransport {
    async fn create_transport(&self) -> Created {
        // The client wraps this call in its connect timeout and drops it when
        // time is up, logging only: the guard reports that drop.
        let mut pending = Pending {
            failures: Some(&self.failures),
        };
        let created = self.inner.create_transport().await;
        pending.failures = None;
        if let Err(e) = &created {
            // `{:#}` keeps the cause chain on one line ("…: connection refused").
            let _ = self.failures.send(ConnectFailed(format!("{e:#}")));
        }
        created
    }
}

/// Reports a connect attempt abandoned before it finished (a timeout).
struct Pending<'a> {
    failures: Option<&'a mpsc::UnboundedSender<ConnectFailed>>,
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(failures) = self.failures.take() {
            let _ = failures.send(ConnectFailed("the connection timed out".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A network where connects never complete.
    struct Silent;

    #[async_trait]
    impl TransportFactory for Silent {
        async fn create_transport(&self) -> Created {
            std::future::pending().await
        }
    }

    #[tokio::test]
    async fn a_connect_abandoned_by_the_clients_timeout_is_reported() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let watched = WatchedTransport {
            inner: Arc::new(Silent),
            failures: tx,
        };
        let attempt =
            tokio::time::timeout(Duration::from_millis(10), watched.create_transport()).await;
        assert!(attempt.is_err(), "the silent network never answers");
        assert_eq!(
            rx.try_recv(),
            Ok(ConnectFailed("the connection timed out".into()))
        );
    }
}
