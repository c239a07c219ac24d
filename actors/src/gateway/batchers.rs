//! [`Batchers`]: the handle on the three batchers (QR, status, inbound)
//! that HTTP and shutdown use; callers never see their addresses or a
//! `MailboxError`. Built by [`super::Gateway::start`].

use tokio::sync::oneshot;

use crate::batch::inbound::InboundBatcher;
use crate::batch::qr::{DescribeQrPending, QrBatcher, QrPending};
use crate::batch::status::{DescribeStatusPending, StatusBatcher, StatusPending};
use crate::batch::Drain;
use crate::mailbox::MeteredAddr;

/// A batcher no longer answers (the actor system is stopping).
#[derive(Debug, thiserror::Error)]
#[error("the {batcher} batcher is not running")]
pub struct BatcherGone {
    pub batcher: &'static str,
    #[source]
    pub source: actix::MailboxError,
}

/// What waits in the QR and status batchers (counts and ages only).
#[derive(Debug, Clone)]
pub struct PendingBatches {
    pub qr: QrPending,
    pub status: StatusPending,
}

/// The batchers' addresses, behind methods.
#[derive(Clone)]
pub struct Batchers {
    pub(super) qr: MeteredAddr<QrBatcher>,
    pub(super) status: MeteredAddr<StatusBatcher>,
    pub(super) inbound: MeteredAddr<InboundBatcher>,
}

impl Batchers {
    /// What the QR and status batchers hold now (`/metrics/batch`).
    pub async fn pending(&self) -> Result<PendingBatches, BatcherGone> {
        let gone = |batcher| move |source| BatcherGone { batcher, source };
        let qr = self.qr.send(DescribeQrPending).await.map_err(gone("QR"))?;
        let status = self
            .status
            .send(DescribeStatusPending)
            .await
            .map_err(gone("status"))?;
        Ok(PendingBatches { qr, status })
    }

    /// Flushes all three and returns once each is idle (its requests
    /// answered or held in the outbox), or gone.
    pub async fn drain(&self) {
        let (qr_tx, qr_rx) = oneshot::channel();
        let (st_tx, st_rx) = oneshot::channel();
        let (in_tx, in_rx) = oneshot::channel();
        self.qr.do_send(Drain { done: qr_tx });
        self.status.do_send(Drain { done: st_tx });
        self.inbound.do_send(Drain { done: in_tx });
        let _ = futures_util::join!(qr_rx, st_rx, in_rx);
    }
}
