//! The web dashboard: static assets embedded in the binary and served at `/` by the admin
//! listener. Plain HTML + CSS + hand-written JS modules (no build step); uPlot vendored under
//! `assets/vendor/uplot/`. The page talks to `/api/v5` with a bearer token (docs/admin-api.md).
//!
//! Every answer carries a strict Content-Security-Policy (scripts, styles, fetches from this
//! origin only; no inline script or style element), `nosniff`, no framing. Caching: each asset
//! has a strong ETag (a hash of its bytes, computed once) and `Cache-Control: no-cache`, so a
//! browser revalidates and gets `304 Not Modified` until the binary changes.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Scripts, styles, images and fetches from this origin only; `data:` images for uPlot's
/// canvas exports are not needed, so none. `style-src 'self'` still lets scripts set
/// `element.style` (CSSOM), which uPlot does; it blocks `style=` attributes in markup.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; font-src 'self'; manifest-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

struct Asset {
    /// Path under `/assets/` (and `index.html` for `/`).
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $ct:expr) => {
        Asset {
            path: $path,
            content_type: $ct,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("js/main.js", JS),
    asset!("js/api.js", JS),
    asset!("js/ui.js", JS),
    asset!("js/chart.js", JS),
    asset!("js/list.js", JS),
    asset!("js/pages/login.js", JS),
    asset!("js/pages/overview.js", JS),
    asset!("js/pages/clients.js", JS),
    asset!("js/pages/client.js", JS),
    asset!("js/pages/subscriptions.js", JS),
    asset!("js/pages/topics.js", JS),
    asset!("js/pages/retained.js", JS),
    asset!("js/pages/banned.js", JS),
    asset!("js/pages/rules.js", JS),
    asset!("js/pages/users.js", JS),
    asset!("vendor/uplot/uPlot.iife.min.js", JS),
    asset!("vendor/uplot/uPlot.min.css", "text/css; charset=utf-8"),
    asset!("vendor/uplot/LICENSE", "text/plain; charset=utf-8"),
];

/// One strong ETag per asset (FNV-1a 64 of the bytes), in `ASSETS` order.
static ETAGS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for &b in a.body {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            HeaderValue::from_str(&format!("\"{h:016x}-{:x}\"", a.body.len()))
                .unwrap_or(HeaderValue::from_static("\"0\""))
        })
        .collect()
});

/// `/` (the page) and `/assets/*` (its files).
pub(crate) fn routes() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/favicon.ico", get(favicon))
        .route("/assets/{*path}", get(asset))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn favicon(headers: HeaderMap) -> Response {
    serve("favicon.svg", &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    if path == "index.html" {
        return not_found();
    }
    serve(&path, &headers)
}

fn serve(path: &str, req: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.path == path) else {
        return not_found();
    };
    let a = &ASSETS[i];
    let etag = &ETAGS[i];
    let fresh = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == etag.to_str().unwrap_or("") || t.trim() == "*")
        });
    let mut res = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = a.body.into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(a.content_type),
        );
        r
    };
    let h = res.headers_mut();
    h.insert(header::ETAG, etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    security_headers(h);
    res
}

fn security_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
}

fn not_found() -> Response {
    let mut res = (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "not found\n",
    )
        .into_response();
    security_headers(res.headers_mut());
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, inm: Option<&str>) -> Response {
        let mut h = HeaderMap::new();
        if let Some(t) = inm {
            h.insert(
                header::IF_NONE_MATCH,
                HeaderValue::from_str(t).expect("ascii"),
            );
        }
        serve(path, &h)
    }

    #[test]
    fn index_is_html_with_csp_and_etag() {
        let res = get("index.html", None);
        assert_eq!(res.status(), StatusCode::OK);
        let h = res.headers();
        assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP);
        assert_eq!(h[header::CACHE_CONTROL], "no-cache");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        let etag = h[header::ETAG].to_str().expect("ascii").to_owned();
        let again = get("index.html", Some(&etag));
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(again.headers()[header::ETAG], etag.as_str());
        assert_eq!(
            get("index.html", Some("\"other\"")).status(),
            StatusCode::OK
        );
    }

    #[test]
    fn every_asset_is_served_with_its_type() {
        for a in ASSETS {
            let res = get(a.path, None);
            assert_eq!(res.status(), StatusCode::OK, "{}", a.path);
            assert_eq!(
                res.headers()[header::CONTENT_TYPE],
                a.content_type,
                "{}",
                a.path
            );
        }
        assert_eq!(get("nope.js", None).status(), StatusCode::NOT_FOUND);
        assert_eq!(get("../Cargo.toml", None).status(), StatusCode::NOT_FOUND);
    }

    /// The CSP forbids inline script and inline style: the page must not rely on them.
    #[test]
    fn index_has_no_inline_script_or_style() {
        let html = std::str::from_utf8(ASSETS[0].body).expect("utf-8");
        assert!(!html.contains("<style"), "inline <style> in index.html");
        assert!(!html.contains(" style="), "style attribute in index.html");
        for part in html.split("<script").skip(1) {
            let tag = part.split('>').next().unwrap_or("");
            assert!(tag.contains("src="), "inline <script> in index.html");
        }
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no CDN"
        );
    }

    /// Every module the page imports is embedded (a missing entry would 404 in the browser).
    #[test]
    fn every_js_import_is_embedded() {
        for a in ASSETS
            .iter()
            .filter(|a| a.path.ends_with(".js") && !a.path.starts_with("vendor/"))
        {
            let src = std::str::from_utf8(a.body).expect("utf-8");
            let dir = a.path.rsplit_once('/').map_or("", |(d, _)| d);
            for line in src.lines().filter(|l| l.starts_with("import ")) {
                let Some(spec) = line.split(['\'', '"']).nth(1) else {
                    continue;
                };
                let mut parts: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
                for seg in spec.split('/') {
                    match seg {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        s => parts.push(s),
                    }
                }
                let target = parts.join("/");
                assert!(
                    ASSETS.iter().any(|b| b.path == target),
                    "{} imports {spec} ({target}), not embedded",
                    a.path
                );
            }
        }
    }
}
