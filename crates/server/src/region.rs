//! Region awareness of `tether serve` (the `regions` feature): a leadership member in etcd
//! per replica ([`tether_failover::leader::Leadership`]), eligible to create the leader key
//! while its database is writable (`pg_is_in_recovery()` false), exposed to the layers below
//! as their write gate (the epoch to commit with, `None` while the region does not lead) and
//! to `/readyz` as a [`RegionReport`].

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tether_api::{LeaseState, RegionReport, RegionStatus};
use tether_failover::leader::{LeaderState, Leadership};
use tether_model::fencing::{Epoch, WriteGate};
use tether_store::Store;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::RegionSection;

/// This replica's membership in its region's leadership. Dropping it stops the member and
/// the role check (without releasing the leader key: the region's other replicas may hold it).
pub(crate) struct Region {
    leadership: Leadership,
    section: RegionSection,
    _stop: tokio_util::sync::DropGuard,
}

impl Region {
    /// Starts the role check (every `role_check_interval_ms`, each bounded by the store's
    /// query timeout) and the leadership member. Fails only on invalid settings: etcd being
    /// unreachable just keeps the region from leading.
    pub(crate) fn start(section: &RegionSection, store: Arc<dyn Store>) -> anyhow::Result<Self> {
        let leader_config = section.leader_config()?;
        let stop = CancellationToken::new();
        let (eligible_tx, eligible) = watch::channel(false);
        tokio::spawn(watch_role(
            store,
            section.role_check_interval(),
            eligible_tx,
            stop.clone(),
        ));
        let leadership = Leadership::start(leader_config, eligible, stop.clone())
            .context("could not start the region's leadership member ([region])")?;
        tokio::spawn(log_transitions(leadership.subscribe(), stop.clone()));
        info!(region = %section.name, pair = %section.pair, "region-aware replica: writes wait for leadership");
        Ok(Self {
            leadership,
            section: section.clone(),
            _stop: stop.drop_guard(),
        })
    }
}

/// Keeps `eligible` equal to "the database is writable": a standby (or a database that does
/// not answer) must never create the leader key.
async fn watch_role(
    store: Arc<dyn Store>,
    every: Duration,
    eligible: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let writable = match store.in_recovery().await {
            Ok(recovering) => !recovering,
            Err(e) => {
                warn!(error = %tether_model::ErrorChain(&e), "could not read the database's role; not eligible to lead");
                false
            }
        };
        eligible.send_if_modified(|now| std::mem::replace(now, writable) != writable);
    }
}

/// Logs each leadership transition once and exposes it: `tether_region_leader` (1 while
/// this replica's region leads, else 0) and `tether_region_epoch` (the last epoch seen).
async fn log_transitions(mut states: tether_failover::leader::StateWatch, stop: CancellationToken) {
    loop {
        let state = tokio::select! {
            _ = stop.cancelled() => return,
            s = states.changed() => s,
        };
        let Some(state) = state else { return };
        info!(state = ?state, "region leadership changed");
        let (leads, epoch) = match &state {
            LeaderState::Leader { epoch } => (true, Some(*epoch)),
            LeaderState::Follower { epoch, .. } => (false, *epoch),
            LeaderState::Fenced => (false, None),
        };
        metrics::gauge!("tether_region_leader").set(if leads { 1.0 } else { 0.0 });
        if let Some(epoch) = epoch {
            metrics::gauge!("tether_region_epoch").set(epoch.get() as f64);
        }
    }
}

impl WriteGate for Region {
    fn epoch(&self) -> Option<Epoch> {
        self.leadership
            .epoch_if_leader()
            .map(|e| Epoch::new(e.get()))
    }
}

impl RegionReport for Region {
    fn report(&self) -> RegionStatus {
        let (lease, leader, epoch) = match self.leadership.state() {
            LeaderState::Leader { epoch } => (
                LeaseState::Leader,
                Some(self.section.name.clone()),
                Some(epoch.get()),
            ),
            LeaderState::Follower { leader, epoch } => (
                LeaseState::Follower,
                leader.map(|l| l.to_string()),
                epoch.map(|e| e.get()),
            ),
            LeaderState::Fenced => (LeaseState::Fenced, None, None),
        };
        // A `Leader` state whose confirmation ran out is fenced, whatever the member's task
        // has published yet.
        let lease = match (lease, self.leadership.epoch_if_leader()) {
            (LeaseState::Leader, None) => LeaseState::Fenced,
            (lease, _) => lease,
        };
        let now = tokio::time::Instant::now();
        RegionStatus {
            region: self.section.name.clone(),
            pair: self.section.pair.clone(),
            public_endpoint: self.section.public_endpoint.clone(),
            lease,
            leader,
            epoch,
            confirmed_for_ms: self
                .leadership
                .confirmed_until()
                .map(|until| until.saturating_duration_since(now).as_millis() as u64),
        }
    }
}
