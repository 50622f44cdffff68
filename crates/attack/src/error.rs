//! Why a probe could not run to its end. A refusal by the server is no error: it is what the
//! probes measure, and it goes into their reports.

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The options make no sense (zero sockets, more than a bound allows).
    #[error("bad options: {0}")]
    Options(String),
    /// The server process could not be started or stopped.
    #[error("the server process: {0}")]
    Server(String),
    /// A socket or file failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The WebSocket failed.
    #[error("WebSocket: {0}")]
    WebSocket(Box<tokio_tungstenite::tungstenite::Error>),
    /// The Noise channel failed.
    #[error("Noise channel: {0}")]
    Channel(#[from] sotto_channel::ChannelError),
    /// A server frame could not be read.
    #[error("server frame: {0}")]
    Frame(#[from] sotto_api::FrameError),
    /// The honest client failed where the probe needs it to work (setting up).
    #[error("client: {0}")]
    Client(Box<sotto_client::ClientError>),
    /// The server closed a connection the probe needed.
    #[error("the server closed the connection")]
    Closed,
    /// Something the probe waited for did not come within a generous time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The server answered a request the probe needs with something else.
    #[error("unexpected answer to {request}: {answer}")]
    Unexpected {
        /// The request.
        request: &'static str,
        /// What came back, for people.
        answer: String,
    },
}

impl From<tokio_tungstenite::tungstenite::Error> for ProbeError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        Self::WebSocket(Box::new(e))
    }
}

impl From<sotto_client::ClientError> for ProbeError {
    fn from(e: sotto_client::ClientError) -> Self {
        Self::Client(Box::new(e))
    }
}
