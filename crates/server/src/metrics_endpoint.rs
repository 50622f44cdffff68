//! Where `/metrics` is served, and to whom. The counters say nothing about users, but how busy
//! a server is and how its requests fail is the operator's business, so `/metrics` is not
//! public: it is served on a listener of its own ([`Config::metrics_listen`], meant for a
//! private network), or on the public listener only to requests carrying the bearer token
//! ([`Config::metrics_token`]), or, with neither set, nowhere. With both, the separate
//! listener asks for the token too.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::limits::{MAX_METRICS_TOKEN_BYTES, MIN_METRICS_TOKEN_BYTES};
use crate::metrics::{self, Metrics};
use crate::{Config, ServerError};

/// What the `/metrics` route needs: the counters, and the `Authorization` header value a
/// request must carry, if any.
#[derive(Clone)]
struct Access {
    metrics: Arc<Metrics>,
    /// `Bearer <token>`.
    authorization: Option<Arc<[u8]>>,
}

/// Checks the token's form: long enough to be unguessable, short and plain enough for a
/// header.
pub(crate) fn check(config: &Config) -> Result<(), ServerError> {
    if let Some(token) = &config.metrics_token {
        if !(MIN_METRICS_TOKEN_BYTES..=MAX_METRICS_TOKEN_BYTES).contains(&token.len()) {
            return Err(ServerError::Config(
                "metrics_token must have between 16 and 1024 characters",
            ));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ServerError::Config(
                "metrics_token must be printable ASCII without spaces",
            ));
        }
    }
    Ok(())
}

/// Binds the listener of [`Config::metrics_listen`], if set.
pub(crate) async fn bind(config: &Config) -> Result<Option<TcpListener>, ServerError> {
    let Some(addr) = config.metrics_listen else {
        return Ok(None);
    };
    TcpListener::bind(addr)
        .await
        .map(Some)
        .map_err(|source| ServerError::MetricsListen { addr, source })
}

/// The routes `/metrics` adds to the public listener: none, unless a token is set and there
/// is no listener of its own.
pub(crate) fn public_routes(config: &Config, metrics: &Arc<Metrics>) -> Router {
    match (&config.metrics_listen, &config.metrics_token) {
        (None, Some(token)) => route(Arc::clone(metrics), Some(token)),
        _ => Router::new(),
    }
}

/// Serves `/metrics` alone on `listener` until `shutdown` turns `true`.
pub(crate) async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    token: Option<String>,
    mut shutdown: watch::Receiver<bool>,
) {
    let router = route(metrics, token.as_deref());
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(async move { crate::shutdown_signalled(&mut shutdown).await })
        .await;
    if let Err(e) = served {
        tracing::warn!(error = %e, "the metrics listener failed");
    }
}

fn route(metrics: Arc<Metrics>, token: Option<&str>) -> Router {
    let access = Access {
        metrics,
        authorization: token.map(|token| format!("Bearer {token}").into_bytes().into()),
    };
    Router::new()
        .route("/metrics", get(render))
        .with_state(access)
}

async fn render(State(access): State<Access>, headers: HeaderMap) -> Response {
    if let Some(expected) = &access.authorization {
        let given = headers
            .get(header::AUTHORIZATION)
            .map_or(&[][..], |value| value.as_bytes());
        // Constant time in the bytes compared (a length that differs fails at once, which
        // tells only the token's length).
        if !bool::from(given.ct_eq(expected)) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "unauthorized\n",
            )
                .into_response();
        }
    }
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        access.metrics.render(),
    )
        .into_response()
}
