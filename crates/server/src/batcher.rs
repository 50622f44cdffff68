//! Group commit: one task takes the envelopes of every connection's sends and stores whatever
//! has queued up meanwhile with one [`Store::append_batch`] call, so that durability costs one
//! commit per batch rather than per send. A send refused by the store (a full mailbox, a
//! vanished device) fails alone, in the same commit as the others. The envelopes go to the
//! connections of their devices on this instance as soon as the batch is visible, while it is
//! being made durable; a send is answered only once the batch is durable.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::stream::{FuturesOrdered, StreamExt as _};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::delivery::Delivery;
use crate::limits::{COMMIT_QUEUE_SENDS, MAX_COMMIT_BATCH_ENVELOPES};
use crate::metrics::Metrics;
use crate::reply::RequestError;
use crate::store::{Appended, DeviceAddress, NewEnvelope, Store, StoreError, StoredEnvelope};

/// One send's envelopes, and where to say how its commit went.
struct Job {
    envelopes: Vec<NewEnvelope>,
    done: oneshot::Sender<Result<(), RequestError>>,
}

/// Where connections hand their sends to the batcher.
#[derive(Debug, Clone)]
pub(crate) struct CommitQueue {
    jobs: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("envelopes", &self.envelopes.len())
            .finish_non_exhaustive()
    }
}

/// A send's place in its connection's order: sends of one connection are queued for commit
/// (and so stored) in the order the connection sent them, although they are checked
/// concurrently. Dropping a turn (a send refused before its commit) lets the next one go.
#[derive(Debug)]
pub(crate) struct SendTurn {
    previous: Option<oneshot::Receiver<()>>,
    queued: oneshot::Sender<()>,
}

impl SendTurn {
    /// The turn after the one `last` waits for; `last` then waits for this one.
    pub(crate) fn next(last: &mut Option<oneshot::Receiver<()>>) -> SendTurn {
        let (queued, done) = oneshot::channel();
        SendTurn {
            previous: last.replace(done),
            queued,
        }
    }
}

impl CommitQueue {
    /// Stores one send's envelopes (all or nothing) once the connection's previous send is
    /// queued, and returns once they are durable.
    pub(crate) async fn append(
        &self,
        envelopes: Vec<NewEnvelope>,
        turn: SendTurn,
    ) -> Result<(), RequestError> {
        if let Some(previous) = turn.previous {
            // An error means the previous send was refused before its commit: our turn too.
            let _ = previous.await;
        }
        let (done, result) = oneshot::channel();
        self.jobs
            .send(Job { envelopes, done })
            .await
            .map_err(|_| RequestError::ShuttingDown)?;
        let _ = turn.queued.send(());
        result.await.map_err(|_| RequestError::ShuttingDown)?
    }
}

/// The running batcher.
#[derive(Debug)]
pub(crate) struct Batcher {
    close: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Batcher {
    /// Commits everything queued, refuses what comes later, and waits until it is done.
    pub(crate) async fn close(self) {
        let _ = self.close.send(());
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the commit batcher failed");
        }
    }
}

/// Starts the batcher.
pub(crate) fn spawn(
    store: Arc<dyn Store>,
    delivery: Arc<Delivery>,
    metrics: Arc<Metrics>,
) -> (CommitQueue, Batcher) {
    let (jobs, queue) = mpsc::channel(COMMIT_QUEUE_SENDS);
    let (close, closing) = oneshot::channel();
    let worker = Worker {
        store,
        delivery,
        metrics,
    };
    let task = tokio::spawn(worker.run(queue, closing));
    (CommitQueue { jobs }, Batcher { close, task })
}

struct Worker {
    store: Arc<dyn Store>,
    delivery: Arc<Delivery>,
    metrics: Arc<Metrics>,
}

/// What is left of a stored batch once it is visible: waiting for it to be durable, then
/// answering its senders.
type Syncing = futures_util::future::BoxFuture<'static, ()>;

impl Worker {
    async fn run(self, mut queue: mpsc::Receiver<Job>, mut closing: oneshot::Receiver<()>) {
        let mut closed = false;
        // Batches being synced, in commit order; the next batch is stored meanwhile.
        let mut syncing = FuturesOrdered::<Syncing>::new();
        loop {
            let first = tokio::select! {
                Some(()) = syncing.next(), if !syncing.is_empty() => continue,
                job = queue.recv() => match job {
                    Some(job) => job,
                    None => break,
                },
                _ = &mut closing, if !closed => {
                    // No new sends; the queued ones are still received and committed.
                    queue.close();
                    closed = true;
                    continue;
                }
            };
            let mut count = first.envelopes.len();
            let mut batch = vec![first];
            while count < MAX_COMMIT_BATCH_ENVELOPES {
                match queue.try_recv() {
                    Ok(job) => {
                        count += job.envelopes.len();
                        batch.push(job);
                    }
                    Err(_) => break,
                }
            }
            if let Some(rest) = self.commit(batch).await {
                syncing.push_back(rest);
            }
        }
        while syncing.next().await.is_some() {}
    }

    /// Stores a batch and pushes what was stored; returns what is left to do once that is
    /// visible (the sync and the answers), if anything.
    async fn commit(&self, batch: Vec<Job>) -> Option<Syncing> {
        let (sends, waiting): (Vec<Vec<NewEnvelope>>, Vec<_>) = batch
            .into_iter()
            .map(|job| (job.envelopes, job.done))
            .unzip();
        // Only the sends that were stored wake their mailboxes.
        let mailboxes: Vec<Vec<DeviceAddress>> = sends.iter().map(|s| destinations(s)).collect();
        let counts: Vec<usize> = sends.iter().map(Vec::len).collect();
        let handed = Handed::new(&self.delivery, &sends, &mailboxes);
        match self.store.append_batch(sends).await {
            Ok(Appended { results, durable }) if results.len() == waiting.len() => {
                let mut woken = Vec::new();
                let mut stored = 0;
                let envelopes = handed.into_stored(&results);
                let answers: Vec<Result<(), StoreError>> = results
                    .into_iter()
                    .zip(mailboxes.into_iter().zip(counts))
                    .map(|(result, (mailboxes, count))| {
                        result.map(|_| {
                            woken.extend(mailboxes);
                            stored += count;
                        })
                    })
                    .collect();
                woken.sort_unstable();
                woken.dedup();
                // Visible: push now, while the batch is made durable.
                self.delivery.wake_local(&woken, envelopes);
                let (delivery, metrics) = (Arc::clone(&self.delivery), Arc::clone(&self.metrics));
                Some(Box::pin(async move {
                    let synced = durable.wait().await;
                    if let Err(e) = &synced {
                        tracing::error!(error = %e, "a stored batch of sends was not synced");
                        metrics.commit_failed();
                    } else {
                        metrics.commit(stored);
                    }
                    for (done, answer) in waiting.into_iter().zip(answers) {
                        // Stored but maybe not durable: the sender cannot be told either way.
                        let answer = match (&synced, answer) {
                            (Err(_), Ok(())) => Err(StoreError::Unsynced),
                            (_, answer) => answer,
                        };
                        let _ = done.send(answer.map_err(RequestError::Store));
                    }
                    if synced.is_ok() {
                        delivery.wake_remote(&woken).await;
                    }
                }))
            }
            Ok(Appended { results, .. }) => {
                // A store bug: whatever it stored, no send can be told it succeeded.
                tracing::error!(
                    sends = waiting.len(),
                    results = results.len(),
                    "the store answered a batch with the wrong number of results"
                );
                self.metrics.commit_failed();
                for done in waiting {
                    let _ = done.send(Err(RequestError::Store(StoreError::Backend(
                        "the batch was answered wrongly".into(),
                    ))));
                }
                None
            }
            Err(e) => {
                // Each sender's request logs the failure with its device.
                self.metrics.commit_failed();
                let mut waiting = waiting.into_iter();
                if let Some(done) = waiting.next() {
                    let _ = done.send(Err(RequestError::Store(e)));
                }
                for done in waiting {
                    let _ = done.send(Err(RequestError::Store(StoreError::Backend(
                        "batch failed".into(),
                    ))));
                }
                None
            }
        }
    }
}

/// The envelopes of a batch whose devices are connected to this instance, kept to hand to
/// their connections once stored (see [`crate::delivery::Handoff`]).
struct Handed {
    /// `(send, envelope within it, device, envelope without its id)`.
    envelopes: Vec<(usize, usize, DeviceAddress, StoredEnvelope)>,
}

impl Handed {
    fn new(
        delivery: &Delivery,
        sends: &[Vec<NewEnvelope>],
        mailboxes: &[Vec<DeviceAddress>],
    ) -> Self {
        let devices: Vec<DeviceAddress> = mailboxes.iter().flatten().copied().collect();
        let connected: std::collections::HashSet<DeviceAddress> =
            delivery.connected_here(&devices).into_iter().collect();
        let mut envelopes = Vec::new();
        if connected.is_empty() {
            return Self { envelopes };
        }
        for (send, list) in sends.iter().enumerate() {
            for (index, envelope) in list.iter().enumerate() {
                if connected.contains(&envelope.destination) {
                    envelopes.push((
                        send,
                        index,
                        envelope.destination,
                        StoredEnvelope {
                            id: 0,
                            source: envelope.source.clone(),
                            source_device: envelope.source_device,
                            r#type: envelope.envelope_type,
                            content: envelope.content.clone(),
                            server_timestamp_ms: envelope.server_timestamp_ms,
                        },
                    ));
                }
            }
        }
        Self { envelopes }
    }

    /// The envelopes of the sends that were stored, with their ids, by device (in sequence
    /// order: sends take their numbers in batch order).
    fn into_stored(
        self,
        results: &[Result<Vec<u64>, StoreError>],
    ) -> HashMap<DeviceAddress, Vec<StoredEnvelope>> {
        let mut stored: HashMap<DeviceAddress, Vec<StoredEnvelope>> = HashMap::new();
        for (send, index, device, mut envelope) in self.envelopes {
            if let Some(Ok(ids)) = results.get(send) {
                if let Some(&id) = ids.get(index) {
                    envelope.id = id;
                    stored.entry(device).or_default().push(envelope);
                }
            }
        }
        stored
    }
}

/// The distinct mailboxes of some envelopes.
fn destinations(envelopes: &[NewEnvelope]) -> Vec<DeviceAddress> {
    let mut devices: Vec<DeviceAddress> = envelopes.iter().map(|e| e.destination).collect();
    devices.sort_unstable();
    devices.dedup();
    devices
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use sotto_api::Bundle;

    use super::*;
    use crate::store::{
        AccountDevices, AccountId, DeviceRecord, Durable, NewDevice, PrekeyCounts, PrekeyUpload,
    };

    /// The device whose mailbox is full.
    const FULL: u32 = 99;

    /// Records how many sends every batch has; refuses the sends with an envelope for
    /// [`FULL`]; holds the first batch until `release` fires.
    #[derive(Default)]
    struct FakeStore {
        appends: Mutex<Vec<usize>>,
        hold_first: Mutex<Option<oneshot::Receiver<()>>>,
        /// Batches are visible but never synced: the disk failed.
        unsynced: bool,
    }

    #[async_trait]
    impl Store for FakeStore {
        async fn create_account(
            &self,
            _: &str,
            _: &[u8],
            _: NewDevice,
        ) -> Result<DeviceRecord, StoreError> {
            Err(StoreError::NotFound)
        }
        async fn device_by_auth_key(
            &self,
            _: &[u8; 32],
        ) -> Result<Option<DeviceRecord>, StoreError> {
            Ok(None)
        }
        async fn account_devices(&self, _: &str) -> Result<Option<AccountDevices>, StoreError> {
            Ok(None)
        }
        async fn upload_prekeys(
            &self,
            _: DeviceAddress,
            _: PrekeyUpload,
        ) -> Result<PrekeyCounts, StoreError> {
            Err(StoreError::NotFound)
        }
        async fn prekey_counts(&self, _: DeviceAddress) -> Result<PrekeyCounts, StoreError> {
            Err(StoreError::NotFound)
        }
        async fn take_bundles(
            &self,
            _: &str,
            _: Option<u32>,
            _: bool,
        ) -> Result<Option<Vec<Bundle>>, StoreError> {
            Ok(None)
        }
        async fn append_batch(&self, sends: Vec<Vec<NewEnvelope>>) -> Result<Appended, StoreError> {
            let hold = self.hold_first.lock().unwrap().take();
            if let Some(hold) = hold {
                let _ = hold.await;
            }
            self.appends.lock().unwrap().push(sends.len());
            let results = sends
                .iter()
                .map(|envelopes| {
                    if envelopes.iter().any(|e| e.destination.device_id == FULL) {
                        Err(StoreError::MailboxFull)
                    } else {
                        Ok((1..=envelopes.len() as u64).collect())
                    }
                })
                .collect();
            Ok(Appended {
                results,
                durable: if self.unsynced {
                    let (synced, durable) = oneshot::channel();
                    let _ = synced.send(Err(StoreError::Unsynced));
                    Durable::pending(durable)
                } else {
                    Durable::already()
                },
            })
        }
        async fn fetch_envelopes(
            &self,
            _: DeviceAddress,
            _: u64,
            _: usize,
        ) -> Result<Vec<StoredEnvelope>, StoreError> {
            Ok(Vec::new())
        }
        async fn ack_envelopes(&self, _: DeviceAddress, _: &[u64]) -> Result<u64, StoreError> {
            Ok(0)
        }
        async fn expire_envelopes(&self, _: u64) -> Result<u64, StoreError> {
            Ok(0)
        }
    }

    fn to(device_id: u32) -> Vec<NewEnvelope> {
        vec![NewEnvelope {
            destination: DeviceAddress {
                account: AccountId(1),
                device_id,
            },
            source: "a".into(),
            source_account: AccountId(2),
            source_device: 1,
            envelope_type: 2,
            content: vec![1],
            server_timestamp_ms: 1,
            young_since_ms: None,
        }]
    }

    #[tokio::test]
    async fn queued_sends_share_a_commit_and_only_the_offending_one_fails() {
        let (release, hold) = oneshot::channel();
        let store = Arc::new(FakeStore {
            hold_first: Mutex::new(Some(hold)),
            ..Default::default()
        });
        let delivery = Arc::new(Delivery::new(None, "test".into()));
        let metrics = Arc::new(Metrics::default());
        let (queue, batcher) = spawn(store.clone(), Arc::clone(&delivery), Arc::clone(&metrics));
        let woken = delivery
            .attach(DeviceAddress {
                account: AccountId(1),
                device_id: 3,
            })
            .await;

        let send = |device_id| {
            let queue = queue.clone();
            tokio::spawn(
                async move { queue.append(to(device_id), SendTurn::next(&mut None)).await },
            )
        };
        // The first send's commit is held while three more queue up behind it.
        let first = send(1);
        while store.hold_first.lock().unwrap().is_some() {
            tokio::task::yield_now().await;
        }
        let queued = [send(2), send(FULL), send(3)];
        while queue.jobs.capacity() > COMMIT_QUEUE_SENDS - queued.len() {
            tokio::task::yield_now().await;
        }
        release.send(()).unwrap();

        assert!(first.await.unwrap().is_ok());
        let [a, full, b] = queued;
        assert!(a.await.unwrap().is_ok());
        assert!(matches!(
            full.await.unwrap(),
            Err(RequestError::Store(StoreError::MailboxFull))
        ));
        assert!(b.await.unwrap().is_ok());
        // One commit of one send, then one of the three queued: no send is retried alone.
        assert_eq!(*store.appends.lock().unwrap(), vec![1, 3]);
        // Device 3's connection was woken by its commit.
        woken.handle.woken().await;

        batcher.close().await;
        let refused = queue.append(to(1), SendTurn::next(&mut None)).await;
        assert!(matches!(refused, Err(RequestError::ShuttingDown)));
    }

    #[tokio::test]
    async fn sends_stored_but_not_synced_are_answered_as_unknown_and_refused_ones_as_refused() {
        let store = Arc::new(FakeStore {
            unsynced: true,
            ..Default::default()
        });
        let delivery = Arc::new(Delivery::new(None, "test".into()));
        let (queue, batcher) = spawn(store, Arc::clone(&delivery), Arc::new(Metrics::default()));
        let woken = delivery
            .attach(DeviceAddress {
                account: AccountId(1),
                device_id: 3,
            })
            .await;
        let stored = queue.append(to(3), SendTurn::next(&mut None)).await;
        assert!(
            matches!(stored, Err(RequestError::Store(StoreError::Unsynced))),
            "{stored:?}"
        );
        let refused = queue.append(to(FULL), SendTurn::next(&mut None)).await;
        assert!(
            matches!(refused, Err(RequestError::Store(StoreError::MailboxFull))),
            "{refused:?}"
        );
        // The stored one was pushed before its sync failed.
        woken.handle.woken().await;
        assert_eq!(woken.handle.take_handoff().envelopes.len(), 1);
        batcher.close().await;
    }

    #[tokio::test]
    async fn a_connections_sends_are_queued_in_its_order() {
        let store = Arc::new(FakeStore::default());
        let delivery = Arc::new(Delivery::new(None, "test".into()));
        let (queue, batcher) = spawn(store, delivery, Arc::new(Metrics::default()));
        let mut last = None;
        let first = SendTurn::next(&mut last);
        let second = SendTurn::next(&mut last);
        // The second is ready first but waits for the first's place in the queue.
        let second = tokio::spawn({
            let queue = queue.clone();
            async move { queue.append(to(2), second).await }
        });
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            queue.jobs.capacity(),
            COMMIT_QUEUE_SENDS,
            "nothing queued yet"
        );
        assert!(!second.is_finished());
        queue.append(to(1), first).await.unwrap();
        second.await.unwrap().unwrap();
        batcher.close().await;
    }
}
