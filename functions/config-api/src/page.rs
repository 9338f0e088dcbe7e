//! The Stream Settings page: the configuration API in a browser, served by the same function
//! and on the same origin as the API, so the page needs no CORS and no other host.
//!
//! Three files, embedded in the binary at build time (no Node toolchain, no framework), each
//! answered with an `ETag` (the SHA-256 of its bytes) and `Cache-Control: no-cache`, so a
//! browser revalidates and gets `304 Not Modified` until a deploy changes the file. Every
//! answer of the function carries the headers of [`security_headers`].

use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// No inline script or style, nothing from another origin, never in a frame.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'none'; \
    base-uri 'none'; frame-ancestors 'none'";

struct Asset {
    bytes: &'static [u8],
    content_type: &'static str,
    etag: OnceLock<String>,
}

static INDEX: Asset = Asset::new(
    include_bytes!("../assets/index.html"),
    "text/html; charset=utf-8",
);
static SCRIPT: Asset = Asset::new(
    include_bytes!("../assets/app.js"),
    "text/javascript; charset=utf-8",
);
static STYLE: Asset = Asset::new(
    include_bytes!("../assets/style.css"),
    "text/css; charset=utf-8",
);

impl Asset {
    const fn new(bytes: &'static [u8], content_type: &'static str) -> Self {
        Self {
            bytes,
            content_type,
            etag: OnceLock::new(),
        }
    }

    /// A strong validator: the start of the SHA-256 of the bytes, quoted.
    fn etag(&self) -> &str {
        self.etag.get_or_init(|| {
            let digest = Sha256::digest(self.bytes);
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            format!("\"{hex}\"")
        })
    }
}

/// `GET /` and the page's assets.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/",
            get(|headers: HeaderMap| async move { serve(&INDEX, &headers) }),
        )
        .route(
            "/assets/app.js",
            get(|headers: HeaderMap| async move { serve(&SCRIPT, &headers) }),
        )
        .route(
            "/assets/style.css",
            get(|headers: HeaderMap| async move { serve(&STYLE, &headers) }),
        )
}

fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let tag = asset.etag();
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|candidates| {
            candidates
                .split(',')
                .any(|c| c.trim().trim_start_matches("W/") == tag || c.trim() == "*")
        });
    let status = if fresh {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    let body = if fresh {
        Body::empty()
    } else {
        Body::from(asset.bytes)
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::ETAG,
        HeaderValue::from_str(tag).expect("an ETag is ASCII"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if !fresh {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
    }
    response
}

/// Headers for every answer, page and API alike.
pub async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}
