//! The engine's copy of the processors, read by ingest (redaction) and by every processing batch
//! without touching the store. Every change goes to the store first, then here.

use std::sync::{Arc, RwLock};

use crate::domain::{Processor, ProcessorId, ProcessorType};
use crate::storage::{Error, Store};

#[derive(Debug, Default)]
pub struct Processors {
    /// Highest priority first, as the store orders them.
    all: RwLock<Arc<Vec<Arc<Processor>>>>,
}

impl Processors {
    pub async fn load(store: &dyn Store) -> Result<Self, Error> {
        let cache = Self::default();
        cache.reload(store).await?;
        Ok(cache)
    }

    /// Reads every processor again, totals included.
    pub async fn reload(&self, store: &dyn Store) -> Result<(), Error> {
        let all = store.processors().await?;
        *self.all.write().unwrap_or_else(|poisoned| poisoned.into_inner()) =
            Arc::new(all.into_iter().map(Arc::new).collect());
        Ok(())
    }

    /// Every processor, highest priority first.
    pub fn all(&self) -> Arc<Vec<Arc<Processor>>> {
        self.all.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
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
