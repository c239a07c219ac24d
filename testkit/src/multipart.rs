//! [`Form`]: a `multipart/form-data` request body for the tests and the
//! benchmark's media sends (`POST /sessions/{id}/messages` with a `file`
//! part). Written here because awc has no multipart encoder; the format is
//! RFC 7578's, small enough to state in full.

use bytes::{Bytes, BytesMut};

/// A form of text fields and files, in order.
#[derive(Debug, Clone)]
pub struct Form {
    boundary: String,
    /// Part headers and fields already encoded, with the files between
    /// them kept as they are (so a big file is never copied).
    pieces: Vec<Bytes>,
}

impl Default for Form {
    fn default() -> Self {
        Self::new()
    }
}

impl Form {
    pub fn new() -> Self {
        Self {
            boundary: format!("wagate-test-{:016x}", rand_u64()),
            pieces: Vec::new(),
        }
    }

    /// Adds a text field.
    pub fn field(mut self, name: &str, value: &str) -> Self {
        self.pieces.push(Bytes::from(format!(
            "--{}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n",
            self.boundary
        )));
        self
    }

    /// Adds a file part.
    pub fn file(mut self, name: &str, file_name: &str, content_type: &str, bytes: Bytes) -> Self {
        self.pieces.push(Bytes::from(format!(
            "--{}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\nContent-Type: {content_type}\r\n\r\n",
            self.boundary
        )));
        self.pieces.push(bytes);
        self.pieces.push(Bytes::from_static(b"\r\n"));
        self
    }

    /// The request's `Content-Type`.
    pub fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }

    /// The body in pieces, files uncopied (for a streamed request).
    pub fn pieces(&self) -> Vec<Bytes> {
        let mut all = self.pieces.clone();
        all.push(Bytes::from(format!("--{}--\r\n", self.boundary)));
        all
    }

    /// [`Form::pieces`] cut to at most `max` bytes each (slices, not
    /// copies), as a client streaming the body sends them.
    pub fn chunks(&self, max: usize) -> Vec<Bytes> {
        let mut out = Vec::new();
        for mut piece in self.pieces() {
            while piece.len() > max {
                out.push(piece.split_to(max));
            }
            out.push(piece);
        }
        out
    }

    /// The whole body in one buffer.
    pub fn body(&self) -> Bytes {
        let pieces = self.pieces();
        let mut body = BytesMut::with_capacity(pieces.iter().map(Bytes::len).sum());
        for p in pieces {
            body.extend_from_slice(&p);
        }
        body.freeze()
    }
}

/// A boundary that no test payload contains by chance.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}
