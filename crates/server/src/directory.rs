//! A cache of accounts' device lists, which every send checks twice (destination and sender).
//!
//! An account's devices are fixed when it is created: no request adds, removes or replaces a
//! device (registration refuses a key that has a device already). So a cached list is the
//! stored list. Only existing accounts are cached (a name registered later is looked up
//! afresh). Should a request that changes devices (linking, say) be added, it must remove the
//! account's entry here on every instance; entries also expire after [`DEVICE_CACHE_TTL`] as
//! a bound on any staleness.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use crate::limits::{DEVICE_CACHE_ENTRIES, DEVICE_CACHE_TTL};
use crate::store::{AccountDevices, Store, StoreError};

/// Device lists by username.
#[derive(Debug, Default)]
pub(crate) struct DeviceDirectory {
    entries: Mutex<HashMap<String, (Instant, Arc<AccountDevices>)>>,
}

impl DeviceDirectory {
    /// An account's devices, from the cache or the store; `None` when there is no account.
    pub(crate) async fn devices(
        &self,
        store: &dyn Store,
        username: &str,
    ) -> Result<Option<Arc<AccountDevices>>, StoreError> {
        let now = Instant::now();
        {
            let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((cached_at, devices)) = entries.get(username) {
                if now.duration_since(*cached_at) < DEVICE_CACHE_TTL {
                    return Ok(Some(Arc::clone(devices)));
                }
            }
        }
        let Some(devices) = store.account_devices(username).await? else {
            return Ok(None);
        };
        let devices = Arc::new(devices);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= DEVICE_CACHE_ENTRIES {
            entries.retain(|_, (cached_at, _)| now.duration_since(*cached_at) < DEVICE_CACHE_TTL);
            if entries.len() >= DEVICE_CACHE_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(username.to_owned(), (now, Arc::clone(&devices)));
        Ok(Some(devices))
    }
}
