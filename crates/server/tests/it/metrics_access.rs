//! Who may read `/metrics`: nobody by default, holders of the bearer token on the public
//! listener, anyone who reaches the metrics listener of its own (and holds the token, if one
//! is set).

use crate::support::*;

/// A token of the right form that is not the server's.
const WRONG_TOKEN: &str = "test-metrics-token-9876543210";

/// `/metrics` from `addr` with `authorization`, if any: the status, and whether the body is
/// the counters.
async fn metrics_at(addr: std::net::SocketAddr, authorization: Option<&str>) -> (u16, bool) {
    let headers: Vec<(&str, &str)> = authorization
        .map(|value| ("Authorization", value))
        .into_iter()
        .collect();
    let (status, body) = http_get(addr, "/metrics", &headers).await;
    (status, body.contains("sotto_connections_total"))
}

#[tokio::test]
async fn by_default_metrics_are_served_nowhere() {
    let server = TestServer::start_with(|config| config.metrics_token = None).await;
    assert_eq!(server.metrics_addr, None);
    let bearer = format!("Bearer {METRICS_TOKEN}");
    assert_eq!(metrics_at(server.addr, None).await, (404, false));
    assert_eq!(metrics_at(server.addr, Some(&bearer)).await, (404, false));
    assert_eq!(server.get("/health").await.0, 200);
}

#[tokio::test]
async fn on_the_public_listener_metrics_need_the_token() {
    let server = TestServer::start().await;
    let right = format!("Bearer {METRICS_TOKEN}");
    let wrong = format!("Bearer {WRONG_TOKEN}");
    let longer = format!("Bearer {METRICS_TOKEN}x");
    let basic = format!("Basic {METRICS_TOKEN}");
    for refused in [
        None,
        Some(&wrong),
        Some(&longer),
        Some(&basic),
        Some(&"Bearer ".to_owned()),
    ] {
        assert_eq!(
            metrics_at(server.addr, refused.map(String::as_str)).await,
            (401, false),
            "{refused:?}"
        );
    }
    assert_eq!(metrics_at(server.addr, Some(&right)).await, (200, true));
}

#[tokio::test]
async fn a_metrics_listener_of_its_own_takes_metrics_off_the_public_one() {
    let server = TestServer::start_with(|config| {
        config.metrics_token = None;
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let metrics = server.metrics_addr.expect("a metrics listener");
    assert_ne!(metrics, server.addr);
    assert_eq!(metrics_at(metrics, None).await, (200, true));
    assert_eq!(metrics_at(server.addr, None).await, (404, false));
    // The metrics listener serves nothing else.
    assert_eq!(http_get(metrics, "/health", &[]).await.0, 404);
    assert_eq!(http_get(metrics, "/v1/ws", &[]).await.0, 404);
    // Devices are counted there all the same.
    let _alice = Device::register(&server, "alice", 0).await;
    let (_, body) = http_get(metrics, "/metrics", &[]).await;
    assert!(
        body.contains("sotto_requests_total{kind=\"register\",outcome=\"ok\"} 1\n"),
        "{body}"
    );
}

#[tokio::test]
async fn a_metrics_listener_with_a_token_asks_for_it() {
    let server = TestServer::start_with(|config| {
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let metrics = server.metrics_addr.expect("a metrics listener");
    let right = format!("Bearer {METRICS_TOKEN}");
    let wrong = format!("Bearer {WRONG_TOKEN}");
    assert_eq!(metrics_at(metrics, None).await, (401, false));
    assert_eq!(metrics_at(metrics, Some(&wrong)).await, (401, false));
    assert_eq!(metrics_at(metrics, Some(&right)).await, (200, true));
    assert_eq!(metrics_at(server.addr, Some(&right)).await, (404, false));
}

#[tokio::test]
async fn tokens_too_short_or_with_spaces_are_refused() {
    for token in ["short", "a token with spaces in it", ""] {
        let config = sotto_server::Config {
            data_dir: tempfile::tempdir().unwrap().path().join("data"),
            metrics_token: Some(token.to_owned()),
            ..sotto_server::Config::default()
        };
        assert!(
            matches!(
                sotto_server::Server::open(config).await,
                Err(sotto_server::ServerError::Config(_))
            ),
            "{token:?}"
        );
    }
}
