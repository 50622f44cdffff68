//! `mailbox-flood`: fresh accounts from one address fill a victim's mailbox, so that the
//! victim's existing contacts can no longer reach them.
//!
//! The probe registers a victim and an older contact (`sotto-client`, from `127.0.0.1`); the
//! contact sends the victim a message, which the victim reads, and the victim goes offline.
//! Then it registers fresh attacker accounts from the attacker's address (raw clients) that
//! send envelopes of random bytes to the victim's device as fast as the server accepts them,
//! each until it is refused or has sent its share. It reports how many envelopes the address
//! placed, in how long, and whether the contact's next message still gets through.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use sotto_api::{request, response, GetBundles, SendMessage};

use crate::consts::{
    DEFAULT_ATTACKER_ADDR, FLOOD_ENVELOPE_BYTES, MAX_ACCOUNTS, MAX_MESSAGES_PER_ACCOUNT,
    MAX_RETRY_WAIT, MAX_SECS, PATIENCE, PIPELINE,
};
use crate::raw::{describe, envelope, random, RawDevice, Registration};
use crate::report::secs;
use crate::target::Target;
use crate::{honest, ProbeError};

/// Options of the mailbox-flood probe.
#[derive(Clone, Debug, clap::Args)]
pub struct MailboxFloodOptions {
    /// Fresh attacker accounts, registered from the attacker's address.
    #[arg(long, default_value_t = 11)]
    pub accounts: usize,
    /// Envelopes each attacker account tries to send.
    #[arg(long, default_value_t = 1_000)]
    pub messages: usize,
    /// How long the flood may last, in seconds.
    #[arg(long, default_value_t = 30)]
    pub max_secs: u64,
    /// The attacker's source address (a loopback address other than 127.0.0.1).
    #[arg(long, default_value_t = DEFAULT_ATTACKER_ADDR)]
    pub attacker_addr: IpAddr,
}

impl Default for MailboxFloodOptions {
    fn default() -> Self {
        Self {
            accounts: 11,
            messages: 1_000,
            max_secs: 30,
            attacker_addr: DEFAULT_ATTACKER_ADDR,
        }
    }
}

/// What the mailbox-flood probe measured.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MailboxFloodReport {
    /// The options it ran with.
    pub options: MailboxFloodOptions,
    /// Attacker accounts the server registered.
    pub registered: usize,
    /// Why registrations were refused, and how often.
    pub registrations_refused: BTreeMap<String, usize>,
    /// Envelopes the server accepted (answered `Sent`) from each attacker account.
    pub placed: Vec<usize>,
    /// Why sends were refused, and how often (an account stops at its first refusal that is
    /// not a rate limit).
    pub refused: BTreeMap<String, usize>,
    /// From the first send to the last answer.
    pub took: Duration,
    /// How the honest contact's message after the flood went: `Ok` if the server took it.
    pub contact_after: Result<(), String>,
}

impl MailboxFloodReport {
    /// Envelopes placed in all.
    pub fn total_placed(&self) -> usize {
        self.placed.iter().sum()
    }
}

/// Runs the mailbox-flood probe against a fresh server.
pub async fn mailbox_flood(options: MailboxFloodOptions) -> Result<MailboxFloodReport, ProbeError> {
    if options.accounts == 0 || options.accounts > MAX_ACCOUNTS {
        return Err(ProbeError::Options(format!(
            "--accounts must be 1 to {MAX_ACCOUNTS}"
        )));
    }
    if options.messages == 0 || options.messages > MAX_MESSAGES_PER_ACCOUNT {
        return Err(ProbeError::Options(format!(
            "--messages must be 1 to {MAX_MESSAGES_PER_ACCOUNT}"
        )));
    }
    if options.max_secs == 0 || options.max_secs > MAX_SECS {
        return Err(ProbeError::Options(format!(
            "--max-secs must be 1 to {MAX_SECS}"
        )));
    }
    let target = Target::start(Vec::new(), None).await?;

    // The victim and its contact, who have talked before; the victim goes offline.
    let victim = honest::register_ok(&target, &honest::username("victim")).await?;
    let contact = honest::register_ok(&target, &honest::username("contact")).await?;
    contact
        .send_text(victim.username(), "before the flood")
        .await?;
    honest::next_message(&victim, PATIENCE)
        .await
        .ok_or(ProbeError::Timeout("the contact's first message"))?;
    let victim_name = victim.username().to_owned();
    victim.close().await;

    // The attacker's accounts, each with the victim's device list from a bundle.
    let mut registrations_refused = BTreeMap::new();
    let mut attackers = Vec::new();
    for _ in 0..options.accounts {
        let name = honest::username("flood");
        match RawDevice::register(&target, options.attacker_addr, &name, 1, 1_000).await? {
            Registration::Done(device) => attackers.push(*device),
            Registration::Refused(why) => *registrations_refused.entry(why).or_insert(0) += 1,
        }
    }
    let registered = attackers.len();

    let deadline = Instant::now() + Duration::from_secs(options.max_secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for attacker in attackers {
        let victim = victim_name.clone();
        tasks.push(tokio::spawn(flood(
            attacker,
            victim,
            options.messages,
            deadline,
        )));
    }
    let mut placed = Vec::new();
    let mut refused = BTreeMap::new();
    for task in tasks {
        let (count, refusals) = task
            .await
            .map_err(|e| ProbeError::Server(format!("an attacker task failed: {e}")))??;
        placed.push(count);
        for (why, n) in refusals {
            *refused.entry(why).or_insert(0) += n;
        }
    }
    let took = started.elapsed();

    let contact_after = contact
        .send_text(&victim_name, "after the flood")
        .await
        .map_err(|e| e.to_string());
    contact.close().await;
    Ok(MailboxFloodReport {
        options,
        registered,
        registrations_refused,
        placed,
        refused,
        took,
        contact_after,
    })
}

/// One attacker: sends up to `messages` envelopes to `victim`'s devices, [`PIPELINE`] at a
/// time, until refused (rate limits are waited out) or `deadline`. Envelopes placed, and the
/// refusals.
async fn flood(
    mut attacker: RawDevice,
    victim: String,
    messages: usize,
    deadline: Instant,
) -> Result<(usize, BTreeMap<String, usize>), ProbeError> {
    let mut refused = BTreeMap::new();
    let bundles = attacker
        .client
        .request(request::Body::GetBundles(GetBundles {
            username: victim.clone(),
            device_id: None,
        }))
        .await?;
    let devices: Vec<(u32, u32)> = match bundles {
        response::Body::Bundles(b) => b
            .bundles
            .iter()
            .map(|b| (b.device_id, b.registration_id))
            .collect(),
        other => {
            *refused
                .entry(format!("GetBundles: {}", describe(&other)))
                .or_insert(0) += 1;
            return Ok((0, refused));
        }
    };
    let mut placed = 0;
    let mut sent = 0;
    'flood: while sent < messages && Instant::now() < deadline {
        let window = PIPELINE.min(messages - sent);
        let mut ids = Vec::with_capacity(window);
        for _ in 0..window {
            let body = request::Body::Send(SendMessage {
                destination: victim.clone(),
                envelopes: devices
                    .iter()
                    .map(|&(device, registration)| {
                        envelope(device, registration, random(FLOOD_ENVELOPE_BYTES))
                    })
                    .collect(),
                own_envelopes: Vec::new(),
            });
            ids.push(attacker.client.start_request(body).await?);
        }
        attacker.client.flush().await?;
        sent += window;
        let mut wait = None;
        let mut stop = false;
        for id in ids {
            let answer = attacker.client.response(id).await?;
            match &answer {
                response::Body::Sent(_) => placed += 1,
                response::Body::Error(e) if e.code() == sotto_api::ErrorCode::RateLimited => {
                    *refused.entry(describe(&answer)).or_insert(0) += 1;
                    sent -= 1;
                    wait = Some(Duration::from_millis(e.retry_after_ms.unwrap_or(1_000)));
                }
                _ => {
                    *refused.entry(describe(&answer)).or_insert(0) += 1;
                    stop = true;
                }
            }
        }
        if stop {
            break 'flood;
        }
        if let Some(wait) = wait {
            let until = Instant::now() + wait.min(MAX_RETRY_WAIT);
            if until >= deadline {
                break 'flood;
            }
            tokio::time::sleep_until(until.into()).await;
        }
    }
    attacker.client.close().await;
    Ok((placed, refused))
}

impl fmt::Display for MailboxFloodReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        let total = self.total_placed();
        write!(
            f,
            "mailbox-flood: {} of {} fresh accounts registered from {}",
            self.registered, o.accounts, o.attacker_addr
        )?;
        if !self.registrations_refused.is_empty() {
            write!(f, " (refused: {:?})", self.registrations_refused)?;
        }
        write!(
            f,
            "; they placed {total} envelopes in the victim's mailbox in {} s ({:.0}/s; per account at most {}); sends refused: {:?}; the victim's contact afterwards: {}",
            secs(self.took),
            total as f64 / self.took.as_secs_f64().max(1e-9),
            self.placed.iter().max().copied().unwrap_or(0),
            self.refused,
            match &self.contact_after {
                Ok(()) => "got through".to_owned(),
                Err(e) => format!("refused ({e})"),
            }
        )
    }
}
