//! Serving the client runtime, `client/portcullis.js`, and the framework's
//! stylesheet, `client/portcullis.css` (the honeypot's off-screen class and
//! the error pages' styles: files, so the CSP needs no inline styles; see
//! [`crate::headers`]).
//!
//! Why a content-hashed URL: the script changes with the framework, and a
//! browser holding last week's copy would speak last week's envelope. With
//! the hash in the path (`/_portcullis/portcullis.<hash>.js`) the response
//! can be cached for a year (`immutable`) and a new build is simply a new
//! URL; any other name under `/_portcullis/` is a 404, so an old page never
//! gets a new script under an old name either.
//!
//! Why embedded (`include_str!`) and hand-written: there is no build step to
//! forget, the binary is the whole deployment, and what is reviewed is what
//! runs. The size budget (8 KB gzipped) is pinned by a test below.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};
use sha2::{Digest, Sha256};

use crate::wire::ASSET_PREFIX;

/// The script's source, as shipped.
pub const SCRIPT: &str = include_str!("../client/portcullis.js");

static FILE_NAME: LazyLock<String> = LazyLock::new(|| {
    let digest = Sha256::digest(SCRIPT.as_bytes());
    let hash: String = crate::hex(&digest[..8]);
    format!("portcullis.{hash}.js")
});

static SCRIPT_PATH: LazyLock<String> = LazyLock::new(|| format!("{ASSET_PREFIX}{}", *FILE_NAME));

/// The stylesheet's source, as shipped.
pub const STYLE: &str = include_str!("../client/portcullis.css");

static STYLE_NAME: LazyLock<String> = LazyLock::new(|| {
    let digest = Sha256::digest(STYLE.as_bytes());
    format!("portcullis.{}.css", crate::hex(&digest[..8]))
});

static STYLE_PATH: LazyLock<String> = LazyLock::new(|| format!("{ASSET_PREFIX}{}", *STYLE_NAME));

/// The stylesheet's URL path, with its content hash:
/// `link rel="stylesheet" href=(portcullis::client::style_path())`.
pub fn style_path() -> &'static str {
    STYLE_PATH.as_str()
}

/// The script's URL path, with its content hash:
/// `<script type="module" src=(portcullis::client::script_path())>`.
pub fn script_path() -> &'static str {
    SCRIPT_PATH.as_str()
}

/// `GET /_portcullis/{file}`: the script under its hashed name, else 404.
pub(crate) fn router() -> Router {
    Router::new().route(&format!("{ASSET_PREFIX}{{file}}"), get(serve))
}

async fn serve(Path(file): Path<String>) -> Response {
    let (content_type, body) = if file == *FILE_NAME {
        ("text/javascript; charset=utf-8", SCRIPT)
    } else if file == *STYLE_NAME {
        ("text/css; charset=utf-8", STYLE)
    } else {
        return StatusCode::NOT_FOUND.into_response();
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Gzipped size of the script after stripping comments and indentation
    /// (a stand-in for minification: it never makes the result larger).
    fn shipped_size() -> (usize, usize) {
        let stripped: String = SCRIPT
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let gz = |s: &str| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            e.write_all(s.as_bytes()).unwrap();
            e.finish().unwrap().len()
        };
        (gz(&stripped), gz(SCRIPT))
    }

    #[test]
    fn script_stays_within_its_size_budget() {
        let (stripped, raw) = shipped_size();
        eprintln!("portcullis.js: {stripped} bytes gzipped (stripped), {raw} raw+gzip");
        assert!(stripped <= 8 * 1024, "{stripped} bytes gzipped");
        assert!(raw <= 8 * 1024, "even unminified it fits: {raw}");
    }

    #[test]
    fn path_carries_the_content_hash() {
        let p = script_path();
        assert!(
            p.starts_with(&format!("{ASSET_PREFIX}portcullis.")) && p.ends_with(".js"),
            "{p}"
        );
        assert_eq!(p.len(), format!("{ASSET_PREFIX}portcullis..js").len() + 16);
    }

    #[tokio::test]
    async fn served_immutable_under_its_hash_only() {
        use tower::ServiceExt;
        let app = router();
        let get = |path: &str| {
            http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        let r = app.clone().oneshot(get(script_path())).await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()[header::CACHE_CONTROL],
            "public, max-age=31536000, immutable"
        );
        assert!(
            r.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/javascript")
        );
        let r = app
            .oneshot(get("/_portcullis/portcullis.0000000000000000.js"))
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
}
