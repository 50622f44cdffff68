//! TLS terminated by the server itself (rustls, `ring` provider), for `https://` and
//! `wss://` on the one listener.
//!
//! The certificate and key are read once, when the server opens ([`acceptor`]), so a bad file
//! stops the start with an error naming it. The handshake is not done in the accept loop,
//! where one slow client would hold up every other: [`TlsListener`] hands the accepted socket
//! on at once, wrapped in a [`MaybeTls`] that does the handshake on the connection's own task,
//! when hyper first reads or writes it. The handshake therefore reads through the same
//! accepted stream as a plain connection would (its permit, its read deadlines), and counts
//! against them from accept.
//!
//! Only HTTP/1.1 is offered (ALPN `http/1.1`): the server speaks nothing else, and a WebSocket
//! upgrade needs it.

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::pki_types::pem::{self, PemObject as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsAcceptor;

use crate::peer_limit::Upgraded;
use crate::server::{LimitedListener, LimitedStream};
use crate::{ServerError, TlsConfig};

/// The only application protocol offered in the handshake.
const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// Reads the certificate chain and key of `config` and makes the acceptor every connection
/// shares.
pub(crate) fn acceptor(config: &TlsConfig) -> Result<TlsAcceptor, ServerError> {
    let cert_error = |reason: String| ServerError::Tls {
        what: "certificate",
        path: config.cert_path.clone(),
        reason,
    };
    let key_error = |reason: String| ServerError::Tls {
        what: "key",
        path: config.key_path.clone(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(&config.cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| cert_error(pem_reason(&e, "certificate")))?;
    if certs.is_empty() {
        return Err(cert_error("no certificate in the file".into()));
    }
    let key = read_key(&config.key_path).map_err(key_error)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| cert_error(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                key_error("the key does not belong to the certificate".into())
            }
            // rustls names only what it could not use, never key bytes.
            other => key_error(other.to_string()),
        })?;
    server.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    Ok(TlsAcceptor::from(Arc::new(server)))
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_reason(&e, "private key"))
}

/// Why a PEM file was refused, without any of its contents (it may be the private key).
fn pem_reason(error: &pem::Error, item: &str) -> String {
    match error {
        pem::Error::Io(e) => e.to_string(),
        pem::Error::NoItemsFound => format!("no {item} in the file"),
        _ => format!("not a PEM file holding a {item}"),
    }
}

/// The limited listener with TLS on its sockets if `acceptor` is set, plain otherwise.
pub(crate) struct TlsListener {
    inner: LimitedListener,
    acceptor: Option<TlsAcceptor>,
}

impl TlsListener {
    pub(crate) fn new(inner: LimitedListener, acceptor: Option<TlsAcceptor>) -> Self {
        Self { inner, acceptor }
    }
}

/// An accepted connection: its stream, and the handle that lifts its request deadline once
/// its WebSocket upgrade is done (taken before TLS wraps the stream).
pub(crate) struct Accepted {
    io: MaybeTls<LimitedStream>,
    upgraded: Upgraded,
}

impl Accepted {
    /// The handle that lifts the connection's request deadline.
    pub(crate) fn upgraded(&self) -> Upgraded {
        self.upgraded.clone()
    }
}

impl AsyncRead for Accepted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Accepted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = Accepted;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.inner.accept().await;
        let upgraded = io.upgraded();
        let io = match &self.acceptor {
            // `accept` only sets the handshake up; it runs when the connection is polled.
            Some(acceptor) => MaybeTls::Handshaking(Box::new(acceptor.accept(io))),
            None => MaybeTls::Plain(io),
        };
        (Accepted { io, upgraded }, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// An accepted socket, plain or TLS; with TLS, the handshake is finished on first use.
pub(crate) enum MaybeTls<S> {
    /// No TLS.
    Plain(S),
    /// The TLS handshake is in progress.
    Handshaking(Box<tokio_rustls::Accept<S>>),
    /// The handshake is done.
    Tls(Box<tokio_rustls::server::TlsStream<S>>),
    /// The handshake failed; every use fails.
    Failed,
}

impl<S> MaybeTls<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Drives the handshake, if one is in progress, to its end.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Handshaking(accept) => match ready!(Pin::new(accept.as_mut()).poll(cx)) {
                Ok(stream) => {
                    *self = Self::Tls(Box::new(stream));
                    Poll::Ready(Ok(()))
                }
                Err(e) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    *self = Self::Failed;
                    Poll::Ready(Err(e))
                }
            },
            Self::Failed => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the TLS handshake failed",
            ))),
            Self::Plain(_) | Self::Tls(_) => Poll::Ready(Ok(())),
        }
    }
}

impl<S> AsyncRead for MaybeTls<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_handshake(cx))?;
        match this {
            Self::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
            Self::Handshaking(_) | Self::Failed => {
                Poll::Ready(Err(io::ErrorKind::NotConnected.into()))
            }
        }
    }
}

impl<S> AsyncWrite for MaybeTls<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_handshake(cx))?;
        match this {
            Self::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
            Self::Handshaking(_) | Self::Failed => {
                Poll::Ready(Err(io::ErrorKind::NotConnected.into()))
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_handshake(cx))?;
        match this {
            Self::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
            Self::Handshaking(_) | Self::Failed => {
                Poll::Ready(Err(io::ErrorKind::NotConnected.into()))
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(stream) => stream.is_write_vectored(),
            Self::Tls(stream) => stream.is_write_vectored(),
            Self::Handshaking(_) | Self::Failed => false,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_handshake(cx))?;
        match this {
            Self::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
            Self::Handshaking(_) | Self::Failed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut *self {
            Self::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
            // Nothing was said yet; dropping the socket closes it.
            Self::Handshaking(_) | Self::Failed => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_malformed_files_name_the_file_and_not_the_contents() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsConfig {
            cert_path: dir.path().join("nope.pem"),
            key_path: dir.path().join("nope.key"),
        };
        let Err(ServerError::Tls { what, path, .. }) = acceptor(&missing) else {
            panic!("a missing certificate file was accepted");
        };
        assert_eq!((what, path), ("certificate", missing.cert_path.clone()));

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let Err(error) = acceptor(&TlsConfig {
            cert_path: empty.clone(),
            key_path: empty,
        }) else {
            panic!("a file without a certificate was accepted");
        };
        assert!(error.to_string().contains("no certificate"), "{error}");

        let secret =
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0IGtleSBieXRlcw==!!\n-----END PRIVATE KEY-----\n";
        let key = dir.path().join("bad.key");
        std::fs::write(&key, secret).unwrap();
        let reason = read_key(&key).unwrap_err();
        assert!(!reason.contains("c2Vj"), "{reason}");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        use sotto_test_support::tls::TestCa;
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (one, two) = (TestCa::generate(a.path()), TestCa::generate(b.path()));
        assert!(acceptor(&TlsConfig {
            cert_path: one.server_cert.clone(),
            key_path: one.server_key.clone(),
        })
        .is_ok());
        let Err(error) = acceptor(&TlsConfig {
            cert_path: one.server_cert.clone(),
            key_path: two.server_key.clone(),
        }) else {
            panic!("a key of another certificate was accepted");
        };
        assert!(
            matches!(error, ServerError::Tls { what: "key", .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("does not belong"), "{error}");
    }
}
