//! `GET /api-docs/swagger.json`: the OpenAPI 3 description of the admin API, a hand-written
//! JSON file compiled in (`openapi.json`). A test checks that every route of `router.rs` is in
//! it, with its methods.

use axum::http::header;
use axum::response::IntoResponse;

/// The document.
pub(crate) const DOCUMENT: &str = include_str!("openapi.json");

pub(crate) async fn swagger() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::DOCUMENT;
    use serde_json::Value;

    /// `(path, methods)` of every `.route("...", ...)` in router.rs, with `{*x}` written `{x}`.
    fn routes_in_router() -> Vec<(String, Vec<String>)> {
        let src = include_str!("router.rs");
        let mut out = Vec::new();
        for chunk in src.split(".route(\"").skip(1) {
            let Some((path, rest)) = chunk.split_once('"') else {
                continue;
            };
            // The handler list ends at the `.route(` or `.route_layer(` that follows.
            let rest = rest.split(".route").next().unwrap_or(rest);
            let methods: Vec<String> = ["get", "post", "put", "delete"]
                .iter()
                .filter(|m| {
                    rest.contains(&format!(" {m}(")) || rest.contains(&format!(".{m}("))
                })
                .map(|m| (*m).to_owned())
                .collect();
            out.push((path.replace("{*", "{"), methods));
        }
        out
    }

    #[test]
    fn every_route_is_described() {
        let doc: Value = serde_json::from_str(DOCUMENT).expect("openapi.json parses");
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
        let routes = routes_in_router();
        assert!(routes.len() > 20, "router.rs parsed: {routes:?}");
        for (path, methods) in routes {
            if path == "/api/v5/{rest}" {
                continue; // the JSON 404 for unknown paths
            }
            let item = &doc["paths"][&path];
            assert!(item.is_object(), "{path} missing from openapi.json");
            for m in methods {
                assert!(item[&m].is_object(), "{m} {path} missing from openapi.json");
            }
        }
    }
}
