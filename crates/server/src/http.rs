//! The HTTP routes: public, unauthenticated things only, and the WebSocket upgrade.
//! (`/metrics` is not one of them: see `metrics_endpoint`.)

use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::connection;
use crate::limits::{MAX_WS_MESSAGE_BYTES, WS_READ_BUFFER_BYTES, WS_WRITE_BUFFER_BYTES};
use crate::server::PeerAddr;
use crate::Shared;

/// What `/` says.
const ABOUT: &str = "sotto-server: an end-to-end encrypted messaging relay. Sotto clients \
                     connect to the WebSocket at /v1/ws.\n";

/// The routes of one serving instance.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(|| async { ABOUT }))
        .route("/health", get(health))
        .route("/v1/ws", get(websocket))
        .with_state(shared)
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    if *shared.shutdown.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    "ok\n".into_response()
}

async fn websocket(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<PeerAddr>,
    upgrade: WebSocketUpgrade,
) -> Response {
    if *shared.shutdown.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    upgrade
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .write_buffer_size(WS_WRITE_BUFFER_BYTES)
        .max_message_size(MAX_WS_MESSAGE_BYTES)
        .max_frame_size(MAX_WS_MESSAGE_BYTES)
        .on_upgrade(move |socket| {
            peer.upgraded();
            connection::serve_socket(shared, socket, peer.ip())
        })
}
