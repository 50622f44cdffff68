//! The client: an open profile with a live connection.

mod acks;
mod keys;
mod maintenance;
mod receive;
mod send;
mod trust;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, Weak};

use sotto_api::{request, response, validate_username, Push, Register};
use sotto_channel::{PublicKey, StaticKeypair};
use sotto_protocol::{
    Fingerprint, IdentityKeyPair, FINGERPRINT_ITERATIONS, MAX_VALID_DEVICE_ID,
    VALID_REGISTRATION_ID_MASK,
};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

use crate::consts::{
    ACK_FLUSH_TIMEOUT, DEFERRED_SYNC_DELAY, GROUP_COMMIT_MAX_WRITES, PREKEY_BATCH,
    SAFETY_NUMBER_VERSION,
};
use crate::error::{ClientError, ConnectionError};
use crate::store::{AccountRecord, GroupWrite, QueuedWrite, Store, StoreKey, Tx};
use crate::transport::{Target, Transport};
use crate::types::{Contact, Event, HistoryEntry, SafetyNumber, ServerInfo};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A handle to an open profile with a live connection. Cheap to clone (an `Arc` inside); all
/// methods take `&self`, so that a UI can send while another task waits for events.
///
/// ```no_run
/// # async fn run() -> Result<(), sotto_client::ClientError> {
/// use sotto_client::{Client, Event, ServerInfo, StoreKey};
///
/// let server = ServerInfo { url: "ws://127.0.0.1:8080/v1/ws".into(), key: None, ca_cert: None };
/// let key = StoreKey::KeyFile("alice/key".into());
/// let alice = Client::register("alice".as_ref(), key, server, "alice").await?;
/// alice.send_text("bob", "hello Bob").await?;
/// while let Some(event) = alice.next_event().await {
///     if let Event::Message(message) = event {
///         println!("{}: {}", message.from, message.text);
///     }
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("username", &self.inner.username)
            .field("device_id", &self.inner.device_id)
            .finish_non_exhaustive()
    }
}

/// What events are made of.
struct Inbox {
    /// Pushes from the server, in order.
    pushes: mpsc::Receiver<Push>,
    /// Events raised while sending (identity changes).
    side: mpsc::UnboundedReceiver<Event>,
    /// Events ready to hand out.
    ready: VecDeque<Event>,
    /// The batch being processed. Kept here so that a caller dropping `next_event` half-way
    /// loses nothing: the next call waits for the same batch.
    in_flight: Option<JoinHandle<Result<Vec<Event>, ClientError>>>,
}

pub(crate) struct Inner {
    username: String,
    device_id: u32,
    registration_id: u32,
    identity: IdentityKeyPair,
    store: Store,
    transport: Transport,
    inbox: tokio::sync::Mutex<Inbox>,
    side_events: mpsc::UnboundedSender<Event>,
    /// One maintenance run at a time.
    maintenance: tokio::sync::Mutex<()>,
    /// One send at a time fetches bundles and starts sessions, so that concurrent sends to
    /// a new contact start one session (and spend one one-time prekey) rather than one each.
    session_setup: tokio::sync::Mutex<()>,
    /// Asks the maintenance task for a run (after session-starting messages used prekeys).
    maintenance_wanted: Arc<Notify>,
    /// To the acknowledgement task: ids of envelopes committed locally.
    acks: mpsc::UnboundedSender<acks::AckCommand>,
    /// Writes waiting for [`Inner::drain_writes`].
    writes: std::sync::Mutex<WriteQueue>,
    /// A sync of commits that did not wait for the disk is due (see
    /// [`Inner::schedule_deferred_sync`]).
    sync_scheduled: std::sync::atomic::AtomicBool,
}

/// See [`Inner::write`].
#[derive(Default)]
struct WriteQueue {
    writes: VecDeque<Box<dyn GroupWrite>>,
    /// Whether a thread is draining the queue.
    draining: bool,
}

impl Inner {
    /// Waits (at most [`ACK_FLUSH_TIMEOUT`]) until the acknowledgements queued so far have
    /// been tried.
    async fn flush_acks(&self) {
        let (done, wait) = oneshot::channel();
        if self.acks.send(acks::AckCommand::Flush(done)).is_ok() {
            let _ = tokio::time::timeout(ACK_FLUSH_TIMEOUT, wait).await;
        }
    }

    /// Runs `f` in a write transaction of the store, off the async threads (it may wait for a
    /// disk sync, and does the cryptography around it); `Ok` once its changes are durable
    /// (or, if `f` said [`Tx::sync_later`], committed).
    /// Writes queue up: one blocking thread at a time drains the queue, a batch of writes per
    /// transaction and commit.
    async fn write<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Inner, &mut Tx<'_>) -> Result<T, ClientError> + Send + 'static,
    ) -> Result<T, ClientError> {
        let inner = Arc::downgrade(self);
        let (write, answer) = QueuedWrite::queue(move |tx: &mut Tx<'_>| match inner.upgrade() {
            Some(inner) => f(&inner, tx),
            None => Err(ConnectionError::Closed.into()),
        });
        let start = {
            let mut queue = self.writes.lock().unwrap_or_else(PoisonError::into_inner);
            queue.writes.push_back(write);
            !std::mem::replace(&mut queue.draining, true)
        };
        if start {
            let drainer = Drainer {
                inner: Arc::clone(self),
                finished: false,
            };
            tokio::task::spawn_blocking(move || drainer.run());
        }
        match answer.await {
            Ok(Ok(result)) => result,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => Err(ConnectionError::Closed.into()),
        }
    }
}

impl Inner {
    /// Syncs the commits that did not wait for the disk within [`DEFERRED_SYNC_DELAY`]
    /// (unless a later commit has synced them by then).
    fn schedule_deferred_sync(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.sync_scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(DEFERRED_SYNC_DELAY).await;
            let Some(inner) = inner.upgrade() else {
                return;
            };
            inner.sync_scheduled.store(false, Ordering::Release);
            let _ = tokio::task::spawn_blocking(move || inner.store.sync_deferred()).await;
        });
    }
}

/// Runs the queued writes (see [`Inner::write`]). Should it stop before the queue is empty
/// (it panicked, or the runtime dropped it unstarted), its drop ends the queue's writes with
/// "closed" answers and lets the next write start a new drainer: no write is left waiting.
struct Drainer {
    inner: Arc<Inner>,
    /// Set once it has seen the queue empty and stopped draining.
    finished: bool,
}

impl Drainer {
    /// Runs the queued writes, [`GROUP_COMMIT_MAX_WRITES`] at most per transaction, until
    /// the queue is empty.
    fn run(mut self) {
        loop {
            let batch: Vec<_> = {
                let mut queue = self
                    .inner
                    .writes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                if queue.writes.is_empty() {
                    queue.draining = false;
                    self.finished = true;
                    return;
                }
                let n = queue.writes.len().min(GROUP_COMMIT_MAX_WRITES);
                queue.writes.drain(..n).collect()
            };
            if self.inner.store.write_group(batch) {
                self.inner.schedule_deferred_sync();
            }
        }
    }
}

impl Drop for Drainer {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let abandoned = {
            let mut queue = self
                .inner
                .writes
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            queue.draining = false;
            std::mem::take(&mut queue.writes)
        };
        // Dropped outside the lock: their callers are answered "closed".
        drop(abandoned);
    }
}

/// Runs `f` on a blocking thread, for work before there is an `Inner`.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ClientError> + Send + 'static,
) -> Result<T, ClientError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(ConnectionError::Closed.into()),
    }
}

fn copy_keypair(key: &StaticKeypair) -> StaticKeypair {
    StaticKeypair::from_private_bytes(key.private_bytes())
        .unwrap_or_else(|_| unreachable!("a key pair's own private key has 32 bytes"))
}

fn create_profile_dir(dir: &Path) -> Result<(), ClientError> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    Ok(())
}

/// The keys of a device being registered.
struct NewDevice {
    identity: IdentityKeyPair,
    registration_id: u32,
    noise: StaticKeypair,
    state: crate::store::PrekeyState,
    signed: sotto_protocol::SignedPreKeyRecord,
    last_resort: sotto_protocol::KyberPreKeyRecord,
    one_time: Vec<sotto_protocol::PreKeyRecord>,
    one_time_kyber: Vec<sotto_protocol::KyberPreKeyRecord>,
}

impl NewDevice {
    fn generate(now_ms: u64) -> Self {
        use rand::Rng as _;
        let mut rng = rand::rng();
        let identity = IdentityKeyPair::generate(&mut rng);
        let registration_id = rng.random_range(1..=VALID_REGISTRATION_ID_MASK);
        let mut state = keys::initial_state();
        let signed = keys::signed(&mut state, &identity, now_ms, &mut rng);
        let last_resort = keys::last_resort(&mut state, &identity, now_ms, &mut rng);
        state.current_signed_id = signed.id().into();
        state.current_last_resort_id = last_resort.id().into();
        let one_time = keys::one_time(&mut state, PREKEY_BATCH, &mut rng);
        let one_time_kyber =
            keys::one_time_kyber(&mut state, &identity, PREKEY_BATCH, now_ms, &mut rng);
        Self {
            identity,
            registration_id,
            noise: StaticKeypair::generate(),
            state,
            signed,
            last_resort,
            one_time,
            one_time_kyber,
        }
    }

    fn register_request(&self, username: &str) -> Register {
        Register {
            username: username.to_owned(),
            identity_key: self.identity.identity_key().serialize().to_vec(),
            registration_id: self.registration_id,
            signed_prekey: Some(keys::api_signed(&self.signed)),
            last_resort_kyber: Some(keys::api_kyber(&self.last_resort)),
            one_time_prekeys: self.one_time.iter().map(keys::api_one_time).collect(),
            one_time_kyber: self.one_time_kyber.iter().map(keys::api_kyber).collect(),
        }
    }
}

impl Client {
    /// Creates a profile in `dir` (refuses if one exists there): generates the identity, the
    /// prekeys (signed EC, Kyber last resort, 100 one-time EC and 100 one-time Kyber) and the
    /// Noise key, connects and registers `username`. The profile is written, in one
    /// transaction, only once the server has accepted the registration.
    pub async fn register(
        dir: &Path,
        key: StoreKey,
        server: ServerInfo,
        username: &str,
    ) -> Result<Client, ClientError> {
        validate_username(username)?;
        if Store::exists(dir) {
            return Err(ClientError::ProfileExists);
        }
        let dir: PathBuf = dir.to_owned();
        create_profile_dir(&dir)?;
        let now = now_ms();
        // Key derivation (Argon2id) and key generation before anything is sent, so that a bad
        // passphrase or key file costs no username.
        let (device, profile_keys) = blocking(move || {
            let profile_keys = key.create()?;
            Ok((NewDevice::generate(now), profile_keys))
        })
        .await?;
        let (transport, server_key, pushes) = Transport::connect(Target {
            url: server.url.clone(),
            noise: copy_keypair(&device.noise),
            server_key: server.key,
            ca_cert: server.ca_cert.clone(),
        })
        .await?;
        let registered = match transport
            .request(request::Body::Register(device.register_request(username)))
            .await
        {
            Ok(response::Body::Registered(registered)) => registered,
            Ok(_) => {
                transport.close().await;
                return Err(ConnectionError::UnexpectedResponse("Register").into());
            }
            Err(e) => {
                transport.close().await;
                return Err(e);
            }
        };
        if registered.username != username
            || !(1..=MAX_VALID_DEVICE_ID).contains(&registered.device_id)
        {
            transport.close().await;
            return Err(ConnectionError::UnexpectedResponse("Register").into());
        }
        let account = AccountRecord {
            username: username.to_owned(),
            device_id: registered.device_id,
            registration_id: device.registration_id,
            server_url: server.url.trim().to_owned(),
            server_key: server_key.as_bytes().to_vec(),
        };
        let identity = device.identity.clone();
        let registration_id = device.registration_id;
        let store_dir = dir.clone();
        let store = blocking(move || {
            Store::create(&store_dir, profile_keys, |tx| {
                tx.put_account(&account)?;
                tx.put_identity(&device.identity)?;
                tx.put_noise_key(&device.noise)?;
                tx.put_prekey_state(&device.state)?;
                tx.put_signed_prekey(&device.signed, None)?;
                tx.put_last_resort_kyber(&device.last_resort, None)?;
                for record in &device.one_time {
                    tx.put_one_time_prekey(record)?;
                }
                for record in &device.one_time_kyber {
                    tx.put_one_time_kyber(record)?;
                }
                Ok(())
            })
        })
        .await;
        let store = match store {
            Ok(store) => store,
            Err(e) => {
                tracing::warn!(error = %e, "registered on the server but the profile could not be written");
                transport.close().await;
                return Err(e);
            }
        };
        Ok(Self::start(
            username.to_owned(),
            registered.device_id,
            registration_id,
            identity,
            store,
            transport,
            pushes,
        ))
    }

    /// Opens an existing profile and connects to the server it registered with (`server`
    /// overrides the stored URL and key if given; a given key replaces the pinned one).
    pub async fn open(
        dir: &Path,
        key: StoreKey,
        server: Option<ServerInfo>,
    ) -> Result<Client, ClientError> {
        let dir = dir.to_owned();
        let (store, account, identity, noise) = blocking(move || {
            let store = Store::open(&dir, &key)?;
            let (account, identity, noise) =
                store.read(|tx| Ok((tx.account()?, tx.identity()?, tx.noise_key()?)))?;
            Ok((store, account, identity, noise))
        })
        .await?;
        let pinned = PublicKey::try_from(&account.server_key[..]).ok();
        let (url, expected, ca_cert) = match server {
            Some(server) => (
                server.url.trim().to_owned(),
                server.key.or(pinned),
                server.ca_cert,
            ),
            None => (account.server_url.clone(), pinned, None),
        };
        let (transport, server_key, pushes) = Transport::connect(Target {
            url: url.clone(),
            noise,
            server_key: expected,
            ca_cert,
        })
        .await?;
        let store = if url != account.server_url
            || pinned.is_none_or(|pinned| !pinned.ct_eq(&server_key))
        {
            let updated = AccountRecord {
                server_url: url,
                server_key: server_key.as_bytes().to_vec(),
                ..account.clone()
            };
            let written = blocking(move || {
                store.write(|tx| Ok(tx.put_account(&updated)?))?;
                Ok(store)
            })
            .await;
            match written {
                Ok(store) => store,
                Err(e) => {
                    transport.close().await;
                    return Err(e);
                }
            }
        } else {
            store
        };
        let client = Self::start(
            account.username,
            account.device_id,
            account.registration_id,
            identity,
            store,
            transport,
            pushes,
        );
        // Top up and rotate before returning, so that a client opened to send or receive once
        // still keeps its prekeys stocked. Failures are not fatal: it runs again later.
        if let Err(error) = client.inner.maintain().await {
            tracing::debug!(%error, "prekey maintenance failed");
        }
        Ok(client)
    }

    fn start(
        username: String,
        device_id: u32,
        registration_id: u32,
        identity: IdentityKeyPair,
        store: Store,
        transport: Transport,
        pushes: mpsc::Receiver<Push>,
    ) -> Client {
        let (side_events, side) = mpsc::unbounded_channel();
        let connections = transport.connections();
        let maintenance_wanted = Arc::new(Notify::new());
        let (acks, ack_commands) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            username,
            device_id,
            registration_id,
            identity,
            store,
            transport,
            inbox: tokio::sync::Mutex::new(Inbox {
                pushes,
                side,
                ready: VecDeque::new(),
                in_flight: None,
            }),
            side_events,
            maintenance: tokio::sync::Mutex::new(()),
            session_setup: tokio::sync::Mutex::new(()),
            maintenance_wanted: Arc::clone(&maintenance_wanted),
            acks,
            writes: std::sync::Mutex::default(),
            sync_scheduled: std::sync::atomic::AtomicBool::new(false),
        });
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        tokio::spawn(acks::run(weak.clone(), ack_commands));
        tokio::spawn(maintenance::run(weak, connections, maintenance_wanted));
        Client { inner }
    }

    /// This account's username.
    pub fn username(&self) -> &str {
        &self.inner.username
    }

    /// This device's id in the account.
    pub fn device_id(&self) -> u32 {
        self.inner.device_id
    }

    /// Encrypts `text` to every device of `to` (and this account's other devices), fetching
    /// bundles and running PQXDH where there is no session, retrying on device mismatch;
    /// returns once the server has acknowledged (stored durably). Stores the outgoing message
    /// in the local history.
    ///
    /// Each message gets a random message id; receivers keep one message per sender and
    /// message id. If the outcome of the send is unknown (the connection dropped or the answer
    /// did not come: the server may have stored it), it is sent once more by itself, after
    /// the connection is back, with the same message id, so a message stored twice shows
    /// once. If that too fails, the error says [`ClientError::outcome_unknown`] and the
    /// message stays in the history: it may have been delivered, and calling `send_text`
    /// again sends a new message (which may then show twice).
    pub async fn send_text(&self, to: &str, text: &str) -> Result<(), ClientError> {
        self.inner.send_text(to, text).await
    }

    /// The next event: messages are decrypted and stored locally, then handed out while the
    /// acknowledgement to the server is sent in the background (never before the local
    /// commit is on disk; a failed one is sent again). `None` when the connection is closed
    /// for good. Cancel-safe: dropping the future loses no event.
    pub async fn next_event(&self) -> Option<Event> {
        self.inner.next_event().await
    }

    /// Known contacts (everyone we have a session or messages with), by username.
    pub fn contacts(&self) -> Result<Vec<Contact>, ClientError> {
        let contacts = self.inner.store.read(|tx| Ok(tx.contacts()?))?;
        Ok(contacts
            .into_iter()
            .map(|c| Contact {
                username: c.username,
                verified: c.verified,
                identity_key_changed: c.key_changed,
            })
            .collect())
    }

    /// The safety number with `user` (60 digits) and the scannable bytes for a QR code.
    pub fn safety_number(&self, user: &str) -> Result<SafetyNumber, ClientError> {
        validate_username(user)?;
        let theirs = self
            .inner
            .store
            .read(|tx| trust::trusted_key(tx, user))?
            .ok_or_else(|| ClientError::UnknownUser(user.to_owned()))?;
        let fingerprint = Fingerprint::new(
            SAFETY_NUMBER_VERSION,
            FINGERPRINT_ITERATIONS,
            self.inner.username.as_bytes(),
            self.inner.identity.identity_key(),
            user.as_bytes(),
            &theirs,
        );
        Ok(SafetyNumber {
            digits: fingerprint.display().to_string(),
            scannable: fingerprint.scannable().serialize(),
        })
    }

    /// Marks `user`'s current identity key as verified (after comparing safety numbers).
    pub fn verify(&self, user: &str) -> Result<(), ClientError> {
        validate_username(user)?;
        self.inner.store.write(|tx| trust::verify(tx, user))
    }

    /// The last `limit` messages with `user`, oldest first.
    pub fn history(&self, user: &str, limit: usize) -> Result<Vec<HistoryEntry>, ClientError> {
        validate_username(user)?;
        let messages = self.inner.store.read(|tx| Ok(tx.history(user, limit)?))?;
        Ok(messages
            .into_iter()
            .map(|m| HistoryEntry {
                outgoing: m.outgoing,
                peer: m.peer,
                text: m.text,
                timestamp_ms: m.timestamp_ms,
            })
            .collect())
    }

    /// Checks the server's count of this device's one-time prekeys, uploads more if it is low,
    /// and rotates the signed and last-resort prekeys if they are due. The client does this
    /// on its own after connecting, after session-starting messages and periodically; this
    /// runs it now.
    pub async fn refresh_prekeys(&self) -> Result<(), ClientError> {
        self.inner.maintain().await
    }

    /// Closes the connection cleanly, after waiting briefly for acknowledgements still being
    /// sent; pending and later requests fail, and `next_event` returns `None` once what was
    /// already processed has been handed out. Then takes everything written to disk and
    /// releases the sending chains' reservations this client made, so that the next open
    /// has nothing of it to recover.
    pub async fn close(&self) {
        self.inner.flush_acks().await;
        self.inner.transport.close().await;
        let inner = Arc::clone(&self.inner);
        if let Err(error) = blocking(move || inner.store.release_reservations()).await {
            tracing::warn!(%error, "releasing the sending chains' reservations failed");
        }
    }
}
