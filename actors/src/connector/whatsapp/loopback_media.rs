//! TEST BUILDS ONLY (cargo feature `danger-loopback-media`, enabled through
//! the gateway's dev-dependencies): the client's media HTTP goes over plain
//! HTTP when the media host WhatsApp named is on `127.0.0.1`, so the fake
//! WhatsApp's media host (`testkit`'s `fake_whatsapp::media`) can take
//! uploads and serve downloads without a certificate the client trusts.
//! Every other URL is left alone. `.ci/release-switches` fails a binary that
//! carries [`MARKER`]. Used by [`super::driver`] in place of the plain
//! `UreqHttpClient`.

use async_trait::async_trait;
use whatsapp_rust::http::{HttpClient, HttpRequest, HttpResponse, UreqHttpClient};
use whatsapp_rust::wacore::net::{StreamingHttpResponse, UploadBody};

/// Logged once per client; its presence in a binary is what the release
/// check looks for.
pub const MARKER: &str = "TEST BUILD: media to 127.0.0.1 over plain HTTP";

const LOOPBACK_TLS: &str = "https://127.0.0.1:";

/// `UreqHttpClient`, with `https://127.0.0.1:` rewritten to `http://`.
#[derive(Debug, Clone)]
pub struct LoopbackMedia(UreqHttpClient);

impl LoopbackMedia {
    pub fn new() -> Self {
        tracing::warn!("{MARKER}");
        Self(UreqHttpClient::new())
    }
}

fn plain(mut request: HttpRequest) -> HttpRequest {
    if let Some(rest) = request.url.strip_prefix(LOOPBACK_TLS) {
        request.url = format!("http://127.0.0.1:{rest}");
    }
    request
}

#[async_trait]
impl HttpClient for LoopbackMedia {
    async fn execute(&self, request: HttpRequest) -> anyhow::Result<HttpResponse> {
        self.0.execute(plain(request)).await
    }

    fn supports_streaming(&self) -> bool {
        self.0.supports_streaming()
    }

    fn execute_streaming(&self, request: HttpRequest) -> anyhow::Result<StreamingHttpResponse> {
        self.0.execute_streaming(plain(request))
    }

    fn supports_upload_streaming(&self) -> bool {
        self.0.supports_upload_streaming()
    }

    fn execute_upload(
        &self,
        request: HttpRequest,
        body: UploadBody,
        content_length: u64,
    ) -> anyhow::Result<HttpResponse> {
        self.0.execute_upload(plain(request), body, content_length)
    }

    fn resource_report(&self) -> Option<whatsapp_rust::wacore::stats::HttpResourceReport> {
        self.0.resource_report()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_media_loses_tls() {
        let url = |u: &str| plain(HttpRequest::get(u)).url;
        assert_eq!(
            url("https://127.0.0.1:4321/mms/image/abc?auth=a&token=abc"),
            "http://127.0.0.1:4321/mms/image/abc?auth=a&token=abc"
        );
        assert_eq!(
            url("https://mmg.whatsapp.net/v/t62/abc"),
            "https://mmg.whatsapp.net/v/t62/abc"
        );
        assert_eq!(
            url("https://127.0.0.1.example.com:443/x"),
            "https://127.0.0.1.example.com:443/x"
        );
    }
}
