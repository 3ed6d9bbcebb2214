//! An in-memory [`SagaStore`] for unit tests of the engine and of steps. Lease times use
//! tokio's clock, so tests can pause and advance it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tether_model::fencing::Epoch;
use tether_model::ids::{InstanceId, SagaId};
use tokio::time::Instant;

use crate::step::StepError;
use crate::store::{
    Ack, Ended, Lease, NewSaga, SagaEvent, SagaOutcome, SagaRecord, SagaState, SagaStore,
    SagaStoreError,
};

struct Entry {
    record: SagaRecord,
    events: Vec<SagaEvent>,
    lease_expires: Instant,
    outcome: Option<SagaOutcome>,
    chain: Option<String>,
    blocked_by: Option<SagaId>,
    inserted: u64,
}

/// Sagas in a `HashMap` behind a mutex.
#[derive(Default)]
pub struct MemoryStore {
    sagas: Mutex<HashMap<SagaId, Entry>>,
    /// The largest epoch committed.
    epoch: Mutex<Epoch>,
    /// Log commits made (records and finishes).
    commits: AtomicUsize,
}

impl MemoryStore {
    /// Stores a new saga (what an application does in its own transaction). Returns `false`
    /// when it is queued behind an unfinished saga of its chain (an adoption pass starts it
    /// later), `true` when it may start now.
    pub fn insert(&self, saga: NewSaga) -> bool {
        let mut sagas = self.sagas.lock().expect("lock poisoned");
        // The chain's tail: the unfinished saga of the chain that nothing waits for yet.
        let tail = saga.chain.as_ref().and_then(|chain| {
            let unfinished =
                |e: &&Entry| e.chain.as_ref() == Some(chain) && !e.record.state.is_terminal();
            sagas
                .values()
                .filter(unfinished)
                .max_by_key(|e| e.inserted)
                .map(|e| e.record.id)
        });
        let record = SagaRecord {
            id: saga.id,
            name: saga.name,
            params: saga.params,
            state: SagaState::Running,
            lease: Lease {
                owner: saga.owner,
                generation: 1,
            },
            cancel_requested: false,
            error: None,
        };
        let now = Instant::now();
        let entry = Entry {
            record,
            events: vec![saga.first_event],
            // A queued saga's lease is already expired: adoption starts it when unblocked.
            lease_expires: if tail.is_some() {
                now
            } else {
                now + saga.lease_ttl
            },
            outcome: None,
            chain: saga.chain,
            blocked_by: tail,
            inserted: sagas.len() as u64,
        };
        sagas.insert(saga.id, entry);
        tail.is_none()
    }

    /// The saga's state and how it ended, if it did.
    pub fn state(&self, id: SagaId) -> Option<(SagaState, Option<SagaOutcome>)> {
        let sagas = self.sagas.lock().expect("lock poisoned");
        sagas.get(&id).map(|e| (e.record.state, e.outcome.clone()))
    }

    /// The saga's log.
    pub fn events(&self, id: SagaId) -> Vec<SagaEvent> {
        let sagas = self.sagas.lock().expect("lock poisoned");
        sagas.get(&id).map(|e| e.events.clone()).unwrap_or_default()
    }

    /// How many log commits (records and finishes) the store took.
    pub fn commits(&self) -> usize {
        self.commits.load(Ordering::Relaxed)
    }

    /// Asks for cancellation, as a DELETE during a create does.
    pub fn request_cancel(&self, id: SagaId) {
        if let Some(e) = self.sagas.lock().expect("lock poisoned").get_mut(&id) {
            e.record.cancel_requested = true;
        }
    }

    /// Refuses an epoch older than the largest committed one, which `epoch` then becomes.
    fn check_epoch(&self, epoch: Epoch) -> Result<(), SagaStoreError> {
        let mut stored = self.epoch.lock().expect("lock poisoned");
        if epoch < *stored {
            return Err(SagaStoreError::StaleEpoch);
        }
        *stored = epoch;
        Ok(())
    }

    fn with_leased<T>(
        &self,
        id: SagaId,
        lease: &Lease,
        f: impl FnOnce(&mut Entry) -> T,
    ) -> Result<T, SagaStoreError> {
        let mut sagas = self.sagas.lock().expect("lock poisoned");
        let entry = sagas.get_mut(&id).ok_or(SagaStoreError::NotFound)?;
        if &entry.record.lease != lease || entry.record.state.is_terminal() {
            return Err(SagaStoreError::Fenced);
        }
        Ok(f(entry))
    }
}

fn append(entry: &mut Entry, events: &[SagaEvent]) {
    for ev in events {
        if !entry
            .events
            .iter()
            .any(|e| e.step == ev.step && e.kind == ev.kind)
        {
            entry.events.push(ev.clone());
        }
    }
}

#[async_trait]
impl SagaStore for MemoryStore {
    async fn saga_load(&self, id: SagaId) -> Result<(SagaRecord, Vec<SagaEvent>), SagaStoreError> {
        let sagas = self.sagas.lock().expect("lock poisoned");
        let e = sagas.get(&id).ok_or(SagaStoreError::NotFound)?;
        Ok((e.record.clone(), e.events.clone()))
    }

    async fn saga_record(
        &self,
        id: SagaId,
        lease: &Lease,
        ttl: Duration,
        events: &[SagaEvent],
        state: Option<(SagaState, Option<&StepError>)>,
        epoch: Epoch,
    ) -> Result<Ack, SagaStoreError> {
        self.check_epoch(epoch)?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.with_leased(id, lease, |entry| {
            append(entry, events);
            if let Some((state, error)) = state {
                entry.record.state = state;
                if let Some(error) = error {
                    entry.record.error = Some(error.clone());
                }
            }
            entry.lease_expires = Instant::now() + ttl;
            Ack {
                cancel_requested: entry.record.cancel_requested,
            }
        })
    }

    async fn saga_finish(
        &self,
        id: SagaId,
        lease: &Lease,
        events: &[SagaEvent],
        outcome: &SagaOutcome,
        epoch: Epoch,
    ) -> Result<Ended, SagaStoreError> {
        self.check_epoch(epoch)?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        let chain = self.with_leased(id, lease, |entry| {
            append(entry, events);
            entry.record.state = outcome.state();
            entry.outcome = Some(outcome.clone());
            entry.chain.clone()
        })?;
        let sagas = self.sagas.lock().expect("lock poisoned");
        let chain_waits = chain.is_some()
            && sagas
                .values()
                .any(|e| e.chain == chain && !e.record.state.is_terminal());
        Ok(Ended { chain_waits })
    }

    async fn saga_renew_leases(
        &self,
        owner: &InstanceId,
        ids: &[SagaId],
        ttl: Duration,
    ) -> Result<Vec<SagaId>, SagaStoreError> {
        let mut sagas = self.sagas.lock().expect("lock poisoned");
        let mut held = Vec::new();
        for id in ids {
            if let Some(e) = sagas.get_mut(id) {
                let mine = &e.record.lease.owner == owner;
                if mine && !e.record.state.is_terminal() {
                    e.lease_expires = Instant::now() + ttl;
                    held.push(*id);
                }
            }
        }
        Ok(held)
    }

    async fn saga_adopt_expired(
        &self,
        owner: &InstanceId,
        ttl: Duration,
        limit: u32,
    ) -> Result<Vec<(SagaId, Lease)>, SagaStoreError> {
        let mut sagas = self.sagas.lock().expect("lock poisoned");
        let now = Instant::now();
        let blocked: Vec<SagaId> = sagas
            .iter()
            .filter(|(_, e)| {
                e.blocked_by
                    .and_then(|b| sagas.get(&b))
                    .is_some_and(|b| !b.record.state.is_terminal())
            })
            .map(|(id, _)| *id)
            .collect();
        let mut adopted = Vec::new();
        for (id, e) in sagas.iter_mut() {
            if adopted.len() as u32 >= limit {
                break;
            }
            if e.record.state.is_terminal() || e.lease_expires > now || blocked.contains(id) {
                continue;
            }
            let generation = e.record.lease.generation + 1;
            let lease = Lease {
                owner: owner.clone(),
                generation,
            };
            if e.record.state == SagaState::Stuck {
                e.record.state = SagaState::Unwinding;
            }
            e.record.lease = lease.clone();
            e.lease_expires = now + ttl;
            adopted.push((*id, lease));
        }
        Ok(adopted)
    }

    async fn saga_release(
        &self,
        id: SagaId,
        lease: &Lease,
        after: Duration,
    ) -> Result<(), SagaStoreError> {
        self.with_leased(id, lease, |entry| {
            let now = Instant::now();
            entry.lease_expires = now.checked_add(after).unwrap_or(now);
        })
    }

    async fn saga_release_all(&self, owner: &InstanceId) -> Result<(), SagaStoreError> {
        let mut sagas = self.sagas.lock().expect("lock poisoned");
        let now = Instant::now();
        for e in sagas.values_mut() {
            if &e.record.lease.owner == owner {
                e.lease_expires = now;
            }
        }
        Ok(())
    }
}
