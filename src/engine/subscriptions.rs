//! The engine's copy of the subscriptions, read on every fan-out and send without touching the store.
//! Every change goes to the store first, then here; changes made through other instances arrive when
//! the log follower reads them again (twice a second).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::domain::{Subscription, SubscriptionId};
use crate::storage::{Error, Store};

#[derive(Debug, Default)]
pub struct Subscriptions {
    by_id: RwLock<HashMap<SubscriptionId, Arc<Subscription>>>,
}

impl Subscriptions {
    pub async fn load(store: &dyn Store) -> Result<Self, Error> {
        let cache = Self::default();
        cache.reload(store).await?;
        Ok(cache)
    }

    /// Reads every subscription again; true when something changed.
    pub async fn reload(&self, store: &dyn Store) -> Result<bool, Error> {
        let all: HashMap<SubscriptionId, Arc<Subscription>> =
            store.subscriptions().await?.into_iter().map(|s| (s.subscription_id, Arc::new(s))).collect();
        let mut current = self.write();
        let changed = current.len() != all.len()
            || all.iter().any(|(id, new)| current.get(id).is_none_or(|old| old.as_ref() != new.as_ref()));
        if changed {
            *current = all;
        }
        Ok(changed)
    }

    pub fn get(&self, id: SubscriptionId) -> Option<Arc<Subscription>> {
        self.read().get(&id).cloned()
    }

    /// Every subscription, oldest first.
    pub fn all(&self) -> Vec<Arc<Subscription>> {
        let mut all: Vec<_> = self.read().values().cloned().collect();
        all.sort_by_key(|s| (s.created_at, s.subscription_id));
        all
    }

    pub fn enabled(&self) -> Vec<Arc<Subscription>> {
        self.read().values().filter(|s| s.enabled).cloned().collect()
    }

    pub fn put(&self, subscription: Subscription) -> Arc<Subscription> {
        let subscription = Arc::new(subscription);
        self.write().insert(subscription.subscription_id, subscription.clone());
        subscription
    }

    pub fn remove(&self, id: SubscriptionId) {
        self.write().remove(&id);
    }

    /// The longest request timeout of any subscription, for claim leases.
    pub fn longest_timeout(&self) -> Duration {
        self.read().values().map(|s| s.retry_policy.timeout()).max().unwrap_or_default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<SubscriptionId, Arc<Subscription>>> {
        self.by_id.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<SubscriptionId, Arc<Subscription>>> {
        self.by_id.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
