//! `POST /api/v5/reload` (Hermod's own; EMQX has no such path): the broker re-reads its
//! configuration file, password, ACL and auth files and TLS files, exactly as on SIGHUP. Either
//! everything new is in force (204), or nothing changed and the answer is 400 `RELOAD_FAILED`
//! with the file and what is wrong in it. `hermod ctl reload` calls it.

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

pub(crate) async fn reload(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<StatusCode, ApiError> {
    let handle = state.handle.clone();
    // File reads and certificate parsing: not on the async threads.
    let result = tokio::task::spawn_blocking(move || handle.reload())
        .await
        .map_err(ApiError::internal)?;
    match result {
        Ok(()) => {
            tracing::info!(by = %caller.name, "admin API: configuration reloaded");
            Ok(StatusCode::NO_CONTENT)
        }
        Err(e) => {
            tracing::error!(by = %caller.name, "reload failed, the previous configuration stays in force: {e}");
            Err(ApiError::new(StatusCode::BAD_REQUEST, "RELOAD_FAILED", e))
        }
    }
}
