//! `prekey-drain`: fresh accounts fetch a user's prekey bundles until the user's one-time
//! prekeys are gone. Sessions started after that have no one-time prekey (weaker forward
//! secrecy for their first messages), and the last-resort Kyber key is reused; a user who is
//! offline cannot upload more.
//!
//! The probe registers the target (a raw client from `127.0.0.1`, with `--prekeys` one-time
//! prekeys of each kind and a Kyber last-resort prekey whose id is outside their range) and
//! takes it offline; then fresh requester accounts from the attacker's address fetch its
//! bundles as fast as the server allows (waiting out rate limits) for `--secs` seconds. It
//! reports how many distinct one-time EC and Kyber prekeys were handed out, that rate per
//! hour, and how often the last-resort Kyber key was handed out.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use sotto_api::{request, response, GetBundles, MAX_PREKEYS_PER_UPLOAD};

use crate::consts::{
    DEFAULT_ATTACKER_ADDR, DRAIN_BURST_WINDOW, DRAIN_LAST_RESORT_ID, HONEST_ADDR, MAX_ACCOUNTS,
    MAX_RETRY_WAIT, MAX_SECS,
};
use crate::raw::{describe, RawDevice, Registration};
use crate::report::secs;
use crate::target::Target;
use crate::{honest, ProbeError};

/// Options of the prekey-drain probe.
#[derive(Clone, Debug, clap::Args)]
pub struct PrekeyDrainOptions {
    /// Fresh requester accounts, registered from the attacker's address.
    #[arg(long, default_value_t = 6)]
    pub accounts: usize,
    /// How long the requesters fetch, in seconds.
    #[arg(long, default_value_t = 20)]
    pub secs: u64,
    /// One-time prekeys of each kind the target has (at most one upload's worth).
    #[arg(long, default_value_t = 100)]
    pub prekeys: u32,
    /// The attacker's source address (a loopback address other than 127.0.0.1).
    #[arg(long, default_value_t = DEFAULT_ATTACKER_ADDR)]
    pub attacker_addr: IpAddr,
}

impl Default for PrekeyDrainOptions {
    fn default() -> Self {
        Self {
            accounts: 6,
            secs: 20,
            prekeys: 100,
            attacker_addr: DEFAULT_ATTACKER_ADDR,
        }
    }
}

/// One bundle handed out: when (from the start of the drain), and the ids of its one-time
/// EC prekey and its Kyber prekey.
#[derive(Clone, Copy, Debug)]
struct Handout {
    at: Duration,
    one_time: Option<u32>,
    kyber: Option<u32>,
}

/// What the prekey-drain probe measured.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct PrekeyDrainReport {
    /// The options it ran with.
    pub options: PrekeyDrainOptions,
    /// Requester accounts the server registered.
    pub registered: usize,
    /// Bundles handed out in all.
    pub bundles: usize,
    /// Bundles handed out within the first second: the requesters' burst.
    pub bundles_first_second: usize,
    /// Distinct one-time EC prekeys handed out.
    pub one_time_ec: usize,
    /// Distinct one-time Kyber prekeys handed out.
    pub one_time_kyber: usize,
    /// Times the Kyber last-resort prekey was handed out.
    pub last_resort: usize,
    /// When the last one-time prekey (of either kind) was handed out, from the start.
    pub last_one_time_at: Option<Duration>,
    /// Why fetches (and registrations) were refused, and how often.
    pub refused: BTreeMap<String, usize>,
}

impl PrekeyDrainReport {
    /// Bundles these requesters would get in an hour: the first second's burst, then the rate
    /// seen after it for the rest of the hour. Each bundle carries a one-time prekey while the
    /// target has any left, so this is how many one-time prekeys an attacker takes per hour
    /// from a user who keeps uploading them.
    pub fn bundles_per_hour(&self) -> f64 {
        let window = DRAIN_BURST_WINDOW.as_secs_f64();
        let length = self.options.secs as f64;
        if length <= window {
            return self.bundles as f64 * 3_600.0 / length;
        }
        let later = (self.bundles - self.bundles_first_second) as f64;
        self.bundles_first_second as f64 + later / (length - window) * (3_600.0 - window)
    }
}

/// Runs the prekey-drain probe against a fresh server.
pub async fn prekey_drain(options: PrekeyDrainOptions) -> Result<PrekeyDrainReport, ProbeError> {
    if options.accounts == 0 || options.accounts > MAX_ACCOUNTS {
        return Err(ProbeError::Options(format!(
            "--accounts must be 1 to {MAX_ACCOUNTS}"
        )));
    }
    if options.secs == 0 || options.secs > MAX_SECS {
        return Err(ProbeError::Options(format!(
            "--secs must be 1 to {MAX_SECS}"
        )));
    }
    if options.prekeys == 0 || options.prekeys as usize > MAX_PREKEYS_PER_UPLOAD {
        return Err(ProbeError::Options(format!(
            "--prekeys must be 1 to {MAX_PREKEYS_PER_UPLOAD}"
        )));
    }
    let target = Target::start(Vec::new(), None).await?;
    let victim_name = honest::username("target");
    let victim = RawDevice::register_ok(
        &target,
        HONEST_ADDR,
        &victim_name,
        options.prekeys,
        DRAIN_LAST_RESORT_ID,
    )
    .await?;
    victim.client.close().await;

    let mut refused = BTreeMap::new();
    let mut requesters = Vec::new();
    for _ in 0..options.accounts {
        let name = honest::username("drain");
        match RawDevice::register(&target, options.attacker_addr, &name, 1, 1_000).await? {
            Registration::Done(device) => requesters.push(*device),
            Registration::Refused(why) => {
                *refused.entry(format!("Register: {why}")).or_insert(0) += 1
            }
        }
    }
    let registered = requesters.len();

    let started = Instant::now();
    let deadline = started + Duration::from_secs(options.secs);
    let mut tasks = Vec::new();
    for requester in requesters {
        tasks.push(tokio::spawn(fetch(
            requester,
            victim_name.clone(),
            started,
            deadline,
        )));
    }
    let mut handouts = Vec::new();
    for task in tasks {
        let (got, refusals) = task
            .await
            .map_err(|e| ProbeError::Server(format!("a requester task failed: {e}")))??;
        handouts.extend(got);
        for (why, n) in refusals {
            *refused.entry(why).or_insert(0) += n;
        }
    }

    let mut ec = HashSet::new();
    let mut kyber = HashSet::new();
    let mut last_resort = 0;
    let mut last_one_time_at: Option<Duration> = None;
    for handout in &handouts {
        let mut one_time = false;
        if let Some(id) = handout.one_time {
            one_time |= ec.insert(id);
        }
        match handout.kyber {
            Some(DRAIN_LAST_RESORT_ID) => last_resort += 1,
            Some(id) => one_time |= kyber.insert(id),
            None => {}
        }
        if one_time {
            last_one_time_at = Some(last_one_time_at.map_or(handout.at, |t| t.max(handout.at)));
        }
    }
    let bundles_first_second = handouts
        .iter()
        .filter(|h| h.at < DRAIN_BURST_WINDOW)
        .count();
    Ok(PrekeyDrainReport {
        options,
        registered,
        bundles: handouts.len(),
        bundles_first_second,
        one_time_ec: ec.len(),
        one_time_kyber: kyber.len(),
        last_resort,
        last_one_time_at,
        refused,
    })
}

/// One requester: fetches `victim`'s bundles until `deadline`, waiting out rate limits and
/// stopping at any other refusal.
async fn fetch(
    mut requester: RawDevice,
    victim: String,
    started: Instant,
    deadline: Instant,
) -> Result<(Vec<Handout>, BTreeMap<String, usize>), ProbeError> {
    let mut handouts = Vec::new();
    let mut refused = BTreeMap::new();
    while Instant::now() < deadline {
        let answer = requester
            .client
            .request(request::Body::GetBundles(GetBundles {
                username: victim.clone(),
                device_id: None,
            }))
            .await?;
        match &answer {
            response::Body::Bundles(b) => {
                let at = started.elapsed();
                handouts.extend(b.bundles.iter().map(|bundle| Handout {
                    at,
                    one_time: bundle.one_time_prekey.as_ref().map(|k| k.id),
                    kyber: bundle.kyber_prekey.as_ref().map(|k| k.id),
                }));
            }
            response::Body::Error(e) if e.code() == sotto_api::ErrorCode::RateLimited => {
                *refused.entry(describe_code(&answer)).or_insert(0) += 1;
                let wait = Duration::from_millis(e.retry_after_ms.unwrap_or(1_000));
                let until = Instant::now() + wait.min(MAX_RETRY_WAIT);
                if until >= deadline {
                    break;
                }
                tokio::time::sleep_until(until.into()).await;
            }
            _ => {
                *refused.entry(describe(&answer)).or_insert(0) += 1;
                break;
            }
        }
    }
    requester.client.close().await;
    Ok((handouts, refused))
}

/// The error code alone (the waits differ from one refusal to the next).
fn describe_code(answer: &response::Body) -> String {
    match answer {
        response::Body::Error(e) => format!("{:?}", e.code()),
        other => describe(other),
    }
}

impl fmt::Display for PrekeyDrainReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        write!(
            f,
            "prekey-drain: {} of {} fresh accounts from {} fetched for {} s: {} bundles, {} of {} one-time EC and {} of {} one-time Kyber prekeys handed out",
            self.registered,
            o.accounts,
            o.attacker_addr,
            o.secs,
            self.bundles,
            self.one_time_ec,
            o.prekeys,
            self.one_time_kyber,
            o.prekeys,
        )?;
        if let Some(at) = self.last_one_time_at {
            write!(f, " (the last after {} s)", secs(at))?;
        }
        write!(
            f,
            "; {} bundles in the first second, then {:.2}/s: {:.0} bundles per hour, each with a one-time prekey while the target has any; last-resort Kyber key handed out {} times; refused: {:?}",
            self.bundles_first_second,
            (self.bundles - self.bundles_first_second) as f64
                / (o.secs as f64 - DRAIN_BURST_WINDOW.as_secs_f64()).max(1e-9),
            self.bundles_per_hour(),
            self.last_resort,
            self.refused
        )
    }
}
