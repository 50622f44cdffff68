//! A real `sotto-server` process terminating TLS with a certificate from a test CA: clients
//! that trust the CA chat over `wss://` (the Noise channel inside), a client that does not is
//! refused with a clear error before anything is sent, plain `ws://` gets nowhere, and
//! `/health` answers over `https://`.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use sotto_client::{Client, ClientError, ConnectionError, ServerInfo, ServerKey};
use sotto_test_support::server_process::{ServerOptions, ServerProcess};
use sotto_test_support::tls::TestCa;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::*;

/// A TLS server in `dir`, and the CA that signed its certificate.
async fn start_tls_server(dir: &Path) -> (ServerProcess, TestCa) {
    let ca = TestCa::generate(dir);
    let data = dir.join("server-data");
    let log = dir.join("server.log");
    let options = ServerOptions {
        tls: Some((ca.server_cert.clone(), ca.server_key.clone())),
        ..ServerOptions::default()
    };
    let server = tokio::task::spawn_blocking(move || ServerProcess::start(&data, &log, &options))
        .await
        .unwrap();
    (server, ca)
}

fn info(server: &ServerProcess, ca: Option<&TestCa>) -> ServerInfo {
    ServerInfo {
        url: server.ws_url(),
        key: Some(ServerKey::from_hex(server.key_hex()).unwrap()),
        ca_cert: ca.map(|ca| ca.ca_cert.clone()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_trusting_the_ca_chat_over_wss() {
    let dir = tempfile::tempdir().unwrap();
    let (server, ca) = start_tls_server(dir.path()).await;
    assert!(server.ws_url().starts_with("wss://"), "{}", server.ws_url());
    let (alice_profile, bob_profile) = (Profile::new(), Profile::new());
    let alice = alice_profile
        .register(info(&server, Some(&ca)), "alice")
        .await;
    let bob = bob_profile.register(info(&server, Some(&ca)), "bob").await;

    alice.send_text("bob", "hello over TLS").await.unwrap();
    assert_eq!(next_message(&bob).await.text, "hello over TLS");
    bob.send_text("alice", "and back").await.unwrap();
    assert_eq!(next_message(&alice).await.text, "and back");
    alice.close().await;
    bob.close().await;

    // Opened again with the same server and CA, the profile connects and receives what came
    // while it was closed.
    let carol_profile = Profile::new();
    let carol = carol_profile
        .register(info(&server, Some(&ca)), "carol")
        .await;
    carol
        .send_text("alice", "while you were away")
        .await
        .unwrap();
    carol.close().await;
    let alice = Client::open(
        &alice_profile.dir,
        alice_profile.key(),
        Some(info(&server, Some(&ca))),
    )
    .await
    .unwrap();
    assert_eq!(next_message(&alice).await.text, "while you were away");
    alice.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_trust_the_ca_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let (server, ca) = start_tls_server(dir.path()).await;

    let profile = Profile::new();
    let refused =
        Client::register(&profile.dir, profile.key(), info(&server, None), "mallory").await;
    let Err(ClientError::Connection(ConnectionError::Tls(reason))) = &refused else {
        panic!("expected a TLS error, got {refused:?}");
    };
    assert!(reason.contains("not trusted"), "{reason}");
    assert!(!profile.dir.join("sotto.db").exists());

    // A CA file that holds no certificate is named in the error.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "no certificate here\n").unwrap();
    let refused = Client::register(
        &profile.dir,
        profile.key(),
        ServerInfo {
            ca_cert: Some(junk.clone()),
            ..info(&server, Some(&ca))
        },
        "mallory",
    )
    .await;
    assert!(
        matches!(&refused, Err(ClientError::Connection(ConnectionError::CaCert { path, .. })) if *path == junk),
        "{refused:?}"
    );

    // Plain ws:// to the TLS listener gets no WebSocket.
    let plain = ServerInfo {
        url: server.ws_url().replacen("wss://", "ws://", 1),
        ..info(&server, None)
    };
    let refused = Client::register(&profile.dir, profile.key(), plain, "mallory").await;
    assert!(
        matches!(refused, Err(ClientError::Connection(_))),
        "{refused:?}"
    );

    // The server still serves clients that trust it.
    let trusting = Profile::new();
    trusting
        .register(info(&server, Some(&ca)), "trudy")
        .await
        .close()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let (server, ca) = start_tls_server(dir.path()).await;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&ca.ca_cert).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(server.addr()).await.unwrap();
    let name = ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into());
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    // The answer is complete when the server closes the connection.
    let _ = tokio::time::timeout(PATIENCE, tls.read_to_end(&mut response))
        .await
        .expect("an answer in time");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok\n"), "{response}");
}
