//! Acknowledgements, sent by a background task once received envelopes are committed
//! locally and that commit is on disk, so that events wait neither for the disk nor for the
//! round trip. Those that come in within [`ACK_GATHER_DELAY`] share a sync and a request.
//! Ids whose acknowledgement failed are kept (at most [`UNACKED_IDS_KEPT`]) and sent again
//! with the next ones, or after [`ACK_RETRY_DELAY`]: the server does not push them again on
//! the same connection.

use std::collections::VecDeque;
use std::sync::Weak;

use sotto_api::{request, response, Ack, MAX_ACKS_PER_REQUEST};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};

use super::Inner;
use crate::consts::{ACK_GATHER_DELAY, ACK_RETRY_DELAY, UNACKED_IDS_KEPT};
use crate::error::ClientError;

/// What the acknowledgement task is asked to do.
pub(super) enum AckCommand {
    /// Acknowledge these envelope ids, committed locally by commit number `committed` (see
    /// `Store::committed`), once that commit is on disk.
    Ids { ids: Vec<u64>, committed: u64 },
    /// Answer once everything queued before has been tried.
    Flush(oneshot::Sender<()>),
}

/// The task. Holds the client only weakly, so it ends with it.
pub(super) async fn run(weak: Weak<Inner>, mut commands: mpsc::UnboundedReceiver<AckCommand>) {
    let mut unacked: VecDeque<u64> = VecDeque::new();
    loop {
        // Ids are kept only after a failure: then also wake up to try them again.
        let woke = if unacked.is_empty() {
            Some(commands.recv().await)
        } else {
            tokio::select! {
                command = commands.recv() => Some(command),
                () = tokio::time::sleep(ACK_RETRY_DELAY) => None,
            }
        };
        let mut flushes = Vec::new();
        let mut fresh = Vec::new();
        let mut committed = 0;
        let mut open = match woke {
            Some(command) => absorb(command, &mut fresh, &mut committed, &mut flushes),
            None => true,
        };
        while open {
            match commands.try_recv() {
                Ok(command) => {
                    open = absorb(Some(command), &mut fresh, &mut committed, &mut flushes)
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
        }
        if !fresh.is_empty() && flushes.is_empty() && open {
            let gathered = tokio::time::Instant::now() + ACK_GATHER_DELAY;
            loop {
                tokio::select! {
                    command = commands.recv() => {
                        open = absorb(command, &mut fresh, &mut committed, &mut flushes);
                        if !open || !flushes.is_empty() {
                            break;
                        }
                    }
                    () = tokio::time::sleep_until(gathered) => break,
                }
            }
        }
        if !fresh.is_empty() {
            let Some(inner) = weak.upgrade() else { break };
            // One sync for everything that came in meanwhile, off the writer's way.
            let synced = tokio::task::spawn_blocking(move || inner.store.sync_through(committed))
                .await
                .unwrap_or(false);
            if synced {
                unacked.extend(fresh);
            }
            // Otherwise the store takes no more writes, and these are not acknowledged: the
            // server delivers them again.
        }
        // The oldest are forgotten: the server redelivers them on the next connection, and
        // they are acknowledged again as already processed.
        let excess = unacked.len().saturating_sub(UNACKED_IDS_KEPT);
        unacked.drain(..excess);
        if !unacked.is_empty() {
            let Some(inner) = weak.upgrade() else { break };
            if send(&inner, &mut unacked).await {
                // Closed for good: nothing more can be sent.
                unacked.clear();
            }
        }
        for flush in flushes {
            let _ = flush.send(());
        }
        if !open {
            break;
        }
    }
}

/// Takes in one command; `false` once the channel is closed (the client is gone).
fn absorb(
    command: Option<AckCommand>,
    fresh: &mut Vec<u64>,
    committed: &mut u64,
    flushes: &mut Vec<oneshot::Sender<()>>,
) -> bool {
    match command {
        Some(AckCommand::Ids { ids, committed: at }) => {
            fresh.extend(ids);
            *committed = (*committed).max(at);
        }
        Some(AckCommand::Flush(done)) => flushes.push(done),
        None => return false,
    }
    true
}

/// Sends the kept ids, a request's worth at a time, removing those the server answered;
/// stops at the first failure. Returns whether the connection is closed for good.
async fn send(inner: &Inner, unacked: &mut VecDeque<u64>) -> bool {
    while !unacked.is_empty() {
        let n = unacked.len().min(MAX_ACKS_PER_REQUEST);
        let envelope_ids: Vec<u64> = unacked.iter().take(n).copied().collect();
        match inner
            .transport
            .request(request::Body::Ack(Ack { envelope_ids }))
            .await
        {
            Ok(response::Body::Ok(_)) => {}
            // The server answered: asking again would get the same answer, and whatever it
            // did not delete it delivers again on the next connection.
            Ok(_) => tracing::debug!("unexpected answer to an acknowledgement"),
            Err(ClientError::Server(error)) => {
                tracing::debug!(code = error.code, "acknowledgement refused");
            }
            Err(error) => {
                tracing::debug!(%error, "acknowledgement failed; it is sent again");
                return inner.transport.is_closed();
            }
        }
        unacked.drain(..n);
    }
    false
}
