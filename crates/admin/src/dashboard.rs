//! The web dashboard at `/` (placeholder: its own change replaces this file and adds
//! `crates/admin/assets/`).

pub(crate) fn routes() -> axum::Router {
    axum::Router::new()
}
