//! Media uploaded as it arrives (`multipart/form-data` sends): an [`Upload`]
//! appends each chunk to the blob of a message id chosen up front, so a
//! request never holds the whole file. The blob is written under its final
//! key but with a short life (`UPLOAD_TTL`, renewed by every chunk) until
//! intake seals it with its message's lifetime; an upload that is dropped
//! before that (bad body, refused message, client gone) deletes it, and one
//! cut short by a crash expires. Made by `MessagesHandle::begin_upload`,
//! filled by the HTTP layer, handed to `MessagesHandle::submit` in a
//! [`DraftMedia::Uploaded`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{MessageLog, OutboundMessage, QueueError};

/// How long a blob being uploaded lives after its last chunk: long enough
/// for a slow client between two chunks, short enough that an upload cut
/// by a crash is gone soon.
pub const UPLOAD_TTL: Duration = Duration::from_secs(300);

/// The media of a [`super::handle::Draft`].
#[derive(Debug)]
pub enum DraftMedia {
    /// Bytes in memory (`base64` or `url`), stored by intake.
    Inline(Bytes),
    /// Already in the blob store, under the upload's message id.
    Uploaded(Upload),
}

impl From<Bytes> for DraftMedia {
    fn from(bytes: Bytes) -> Self {
        DraftMedia::Inline(bytes)
    }
}

/// A blob being written chunk by chunk for a message that does not exist
/// yet. Dropping it unsealed deletes what was written.
pub struct Upload {
    /// The id the message will have: its blob's key.
    message_id: String,
    /// Where the chunks go.
    log: Arc<dyn MessageLog>,
    /// Bytes written so far.
    written: u64,
    /// Intake took the blob over (sealed and enqueued): dropping must not
    /// delete it any more.
    kept: bool,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("message_id", &self.message_id)
            .field("written", &self.written)
            .finish()
    }
}

impl Upload {
    pub(super) fn new(log: Arc<dyn MessageLog>) -> Self {
        Self {
            message_id: OutboundMessage::new_id(),
            log,
            written: 0,
            kept: false,
        }
    }

    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends `chunk`; returns once the store has it.
    pub async fn append(&mut self, chunk: Bytes) -> Result<(), QueueError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let n = chunk.len() as u64;
        self.log.append_blob(&self.message_id, chunk).await?;
        self.written += n;
        Ok(())
    }

    /// Gives the blob its message's lifetime (intake, before enqueueing).
    pub(super) async fn seal(&self) -> Result<(), QueueError> {
        self.log.seal_blob(&self.message_id).await
    }

    /// The message is enqueued: the blob is its own now.
    pub(super) fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        // Drop cannot wait: the deletion runs on its own, and without a
        // runtime (shutdown) `UPLOAD_TTL` removes the blob.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let log = self.log.clone();
        let id = std::mem::take(&mut self.message_id);
        rt.spawn(async move {
            if let Err(e) = log.drop_blob(&id).await {
                tracing::warn!(message_id = %id, error = %crate::error_chain::Chain(&e), "cannot drop an abandoned upload; it expires on its own");
            }
        });
    }
}
