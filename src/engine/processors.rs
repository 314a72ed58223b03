//! The engine's copy of the processors, read by ingest (redaction) and by every processing batch
//! without touching the store. Every change goes to the store first, then here; changes made through
//! other instances arrive when the log follower reads them again, and ingest reads them itself when the
//! copy is older than it may be ([`Processors::loaded_at`]).

use std::sync::{Arc, RwLock};
use std::time::Instant;

use crate::domain::{Processor, ProcessorId, ProcessorType};
use crate::storage::{Error, Store};

#[derive(Debug)]
pub struct Processors {
    /// Highest priority first, as the store orders them, and when the read behind them began: every
    /// processor saved before then is among them.
    copy: RwLock<(Arc<Vec<Arc<Processor>>>, Instant)>,
}

impl Default for Processors {
    fn default() -> Self {
        Self { copy: RwLock::new((Arc::default(), Instant::now())) }
    }
}

impl Processors {
    pub async fn load(store: &dyn Store) -> Result<Self, Error> {
        let cache = Self::default();
        cache.reload(store).await?;
        Ok(cache)
    }

    /// Reads every processor again, totals included.
    pub async fn reload(&self, store: &dyn Store) -> Result<(), Error> {
        let began = Instant::now();
        let all = Arc::new(store.processors().await?.into_iter().map(Arc::new).collect());
        let mut copy = self.copy.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Two reloads racing: the one whose read began later wins.
        if began >= copy.1 {
            *copy = (all, began);
        }
        Ok(())
    }

    /// When the read behind this copy began: every processor saved before then is in it.
    pub fn loaded_at(&self) -> Instant {
        self.copy.read().unwrap_or_else(|poisoned| poisoned.into_inner()).1
    }

    /// Every processor, highest priority first.
    pub fn all(&self) -> Arc<Vec<Arc<Processor>>> {
        self.copy.read().unwrap_or_else(|poisoned| poisoned.into_inner()).0.clone()
    }

    pub fn get(&self, id: ProcessorId) -> Option<Arc<Processor>> {
        self.all().iter().find(|p| p.processor_id == id).cloned()
    }

    /// The enabled processors the processing loop runs, highest priority first. Redaction is not among
    /// them: it happens at ingest, before the commit.
    pub fn runnable(&self) -> Vec<Arc<Processor>> {
        self.all().iter().filter(|p| p.enabled && p.processor_type != ProcessorType::Redact).cloned().collect()
    }

    /// The enabled redact processors, applied to every event before it is stored.
    pub fn redactors(&self) -> Vec<Arc<Processor>> {
        self.all().iter().filter(|p| p.enabled && p.processor_type == ProcessorType::Redact).cloned().collect()
    }
}
