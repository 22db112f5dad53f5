//! The decision log: sequencing, persistence and fan-out to watchers.
//!
//! Sequences are assigned, persisted and broadcast under one commit lock
//! (readers never wait on it), so the broadcast order is the sequence order
//! and a watcher that resumes from the store and then follows the broadcast
//! sees every decision exactly once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc, watch};

use crate::store::{Loaded, MetaStore, StoreError};
use swarm_core::decision::Decision;
use swarm_core::domain::NodeId;
use swarm_core::migration::book::migration_id;
use swarm_core::migration::machine::Migration;
use swarm_core::reconfig::record::Origin;

/// Decisions kept in the live broadcast buffer; a slower watcher falls back to the store.
const BROADCAST_BUFFER: usize = 4096;
/// Decisions read from the store per page when catching up.
const PAGE: usize = 1000;

struct LogState {
    last_seq: u64,
    first_seq: u64,
    last_round: u64,
    last_decided: HashMap<NodeId, i64>,
}

/// Cheap-clone handle to the decision log.
#[derive(Clone)]
pub struct DecisionLog {
    store: Arc<dyn MetaStore>,
    state: Arc<Mutex<LogState>>,
    /// Serialises commits (sequence assignment, the store write, publication).
    commit: Arc<Mutex<()>>,
    tx: broadcast::Sender<Arc<Decision>>,
}

/// Why a watch cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The requested sequence is no longer retained.
    #[error("sequence {requested} is no longer retained; the oldest retained decision is {oldest}")]
    TooOld {
        /// Asked for.
        requested: u64,
        /// Oldest available.
        oldest: u64,
    },
}

impl DecisionLog {
    /// Builds the log from what the store loaded; reads recent decisions to
    /// restore cooldowns (decisions older than `cooldown_ms` do not matter).
    pub fn open(store: Arc<dyn MetaStore>, loaded: &Loaded, now_ms: i64, cooldown_ms: i64) -> Result<Self, StoreError> {
        let mut last_decided = HashMap::new();
        let first = loaded.first_decision_seq.max(1);
        // Walk back in pages from the end until decisions are older than the cooldown.
        let mut start = loaded.last_decision_seq.saturating_sub(PAGE as u64 - 1).max(first);
        // An empty log reads nothing (a standby's starts so, before it loads).
        if loaded.last_decision_seq > 0 {
            loop {
                let page = store.read_decisions(start, PAGE)?;
                let mut oldest_in_page = i64::MAX;
                for d in &page {
                    oldest_in_page = oldest_in_page.min(d.decided_at_ms);
                    let e = last_decided.entry(d.virt.clone()).or_insert(d.decided_at_ms);
                    *e = (*e).max(d.decided_at_ms);
                }
                if start <= first || page.is_empty() || oldest_in_page < now_ms - cooldown_ms {
                    break;
                }
                start = start.saturating_sub(PAGE as u64).max(first);
            }
        }
        let (tx, _) = broadcast::channel(BROADCAST_BUFFER);
        Ok(DecisionLog {
            store,
            state: Arc::new(Mutex::new(LogState {
                last_seq: loaded.last_decision_seq,
                first_seq: loaded.first_decision_seq,
                last_round: loaded.last_round_id,
                last_decided,
            })),
            commit: Arc::new(Mutex::new(())),
            tx,
        })
    }

    /// Id the next round will get.
    pub fn next_round_id(&self) -> u64 {
        self.state.lock().expect("log lock").last_round + 1
    }

    /// Sequence of the newest decision.
    pub fn last_sequence(&self) -> u64 {
        self.state.lock().expect("log lock").last_seq
    }

    /// Sequence of the oldest retained decision (0: none yet).
    pub fn first_sequence(&self) -> u64 {
        self.state.lock().expect("log lock").first_seq
    }

    /// Time of the latest decision per virtual node.
    pub fn last_decided(&self) -> HashMap<NodeId, i64> {
        self.state.lock().expect("log lock").last_decided.clone()
    }

    /// Assigns sequences, persists (atomically with the round id and, when
    /// `propose` is given, one proposed migration per decision, tagged with
    /// the matching origin) and publishes the decisions of one round.
    /// `on_persisted` sees the migrations after they are durable and before
    /// any watcher sees their decisions: an orchestrator that asks for a
    /// migration the moment its decision arrives must find it. Blocking
    /// (store IO).
    pub fn commit_round(
        &self,
        round_id: u64,
        mut decisions: Vec<Decision>,
        propose: Option<Vec<Option<Origin>>>,
        on_persisted: impl FnOnce(Vec<Migration>),
    ) -> Result<Vec<Decision>, StoreError> {
        // Committers queue here, across the store write; `state` is only
        // ever held for a moment. Holding it across the write would block
        // every reader with it, and a reader on a runtime worker (a
        // `ListDecisions` handler) blocked behind a write that needs the
        // runtime to finish (etcd's network IO) stalls both for good.
        let _commit = self.commit.lock().expect("commit lock");
        let last_seq = self.state.lock().expect("log lock").last_seq;
        for (i, d) in decisions.iter_mut().enumerate() {
            d.sequence = last_seq + 1 + i as u64;
            d.round_id = round_id;
        }
        let migrations: Vec<Migration> = match propose {
            Some(origins) => decisions
                .iter()
                .zip(origins.into_iter().chain(std::iter::repeat(None)))
                .map(|(d, origin)| {
                    let mut m = Migration::propose(
                        migration_id(d.sequence),
                        d.sequence,
                        d.virt.to_string(),
                        d.from.to_string(),
                        d.to.to_string(),
                        d.decided_at_ms,
                    );
                    if let Some(o) = origin {
                        m.history[0].cause = format!("move {} of reconfiguration {}", o.index + 1, o.reconfiguration);
                        m.origin = Some(o);
                    }
                    if let Some(back) = d.reverses {
                        m.history[0].cause = format!("moves back what decision {back} moved (its outcome hurt)");
                        m.reverses = Some(back);
                    }
                    m
                })
                .collect(),
            None => Vec::new(),
        };
        self.store.append_decisions(round_id, &decisions, &migrations)?;
        on_persisted(migrations);
        let mut st = self.state.lock().expect("log lock");
        st.last_round = round_id;
        if let Some(last) = decisions.last() {
            st.last_seq = last.sequence;
            if st.first_seq == 0 {
                st.first_seq = decisions[0].sequence;
            }
        }
        for d in &decisions {
            st.last_decided.insert(d.virt.clone(), d.decided_at_ms);
            // No receivers is fine: the store has it.
            let _ = self.tx.send(Arc::new(d.clone()));
        }
        Ok(decisions)
    }

    /// On a standby: takes `new` decisions the leader committed (contiguous,
    /// in sequence order, already in the store) and the store's retained
    /// range `first_seq..=last_seq`, and publishes the decisions to
    /// watchers. A watcher that finds a gap (the standby reloaded after
    /// losing its etcd watch) reads the missing ones from the store.
    pub fn observe(&self, first_seq: u64, last_seq: u64, new: &[Decision]) {
        let mut st = self.state.lock().expect("log lock");
        st.first_seq = first_seq;
        st.last_seq = st.last_seq.max(last_seq);
        // Cooldowns and the round counter are the leader's; a standby that
        // wins loads its own log from the store.
        for d in new {
            let _ = self.tx.send(Arc::new(d.clone()));
        }
    }

    /// Reads a page of the log. Blocking.
    pub fn list(&self, from_seq: u64, limit: usize) -> Result<Vec<Decision>, StoreError> {
        self.store.read_decisions(from_seq, limit)
    }

    /// Streams decisions with sequence >= `from_seq` (0: only new ones) into
    /// a channel until the receiver is dropped or `shutdown` turns true.
    pub fn watch(
        &self,
        from_seq: u64,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<mpsc::Receiver<Result<Decision, StoreError>>, WatchError> {
        // Subscribe before reading the store so nothing falls between the two.
        let mut live = self.tx.subscribe();
        let (first, last) = {
            let st = self.state.lock().expect("log lock");
            (st.first_seq, st.last_seq)
        };
        if from_seq != 0 && first != 0 && from_seq < first {
            return Err(WatchError::TooOld { requested: from_seq, oldest: first });
        }
        let mut next = if from_seq == 0 { last + 1 } else { from_seq };
        let (out, rx) = mpsc::channel(256);
        let log = self.clone();
        tokio::spawn(async move {
            // Catch up from the store, then follow the broadcast; fall back to
            // the store whenever the broadcast skipped ahead.
            loop {
                loop {
                    let store_log = log.clone();
                    let page = tokio::task::spawn_blocking(move || store_log.list(next, PAGE)).await;
                    let page = match page {
                        Ok(Ok(p)) => p,
                        Ok(Err(e)) => {
                            let _ = out.send(Err(e)).await;
                            return;
                        }
                        Err(_) => return,
                    };
                    let n = page.len();
                    for d in page {
                        next = d.sequence + 1;
                        if out.send(Ok(d)).await.is_err() {
                            return;
                        }
                    }
                    if n < PAGE {
                        break;
                    }
                }
                loop {
                    tokio::select! {
                        r = live.recv() => match r {
                            Ok(d) => {
                                if d.sequence < next {
                                    continue;
                                }
                                if d.sequence > next {
                                    break; // a gap: read it from the store
                                }
                                next = d.sequence + 1;
                                if out.send(Ok((*d).clone())).await.is_err() {
                                    return;
                                }
                            }
                            Err(broadcast::error::RecvError::Lagged(_)) => break,
                            Err(broadcast::error::RecvError::Closed) => return,
                        },
                        _ = crate::state::stopped(&mut shutdown) => return,
                        _ = out.closed() => return,
                    }
                }
            }
        });
        Ok(rx)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use swarm_core::decision::DecisionKind;

    /// An unsequenced micro-migration decision of `v` from p0 to p1.
    pub(crate) fn decision(seq: u64, v: &str) -> Decision {
        Decision {
            reverses: None,
            sequence: seq,
            round_id: 0,
            decided_at_ms: 1,
            virt: NodeId::parse(v).unwrap(),
            from: NodeId::parse("p0").unwrap(),
            to: NodeId::parse("p1").unwrap(),
            from_score: None,
            to_score: None,
            gain: 0.2,
            reason: "test".into(),
            kind: DecisionKind::MicroMigration,
            cost: None,
            expected_overload_at_ms: None,
        }
    }

    /// An orchestrator asks for a migration the moment its decision
    /// arrives; the hook that makes migrations visible must have run by
    /// then, on a real store.
    #[test]
    fn migrations_are_handed_over_before_their_decisions_are_published() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn MetaStore> = Arc::new(EmbeddedStore::open(&dir.path().join("meta.redb")).unwrap());
        let loaded = store.load().unwrap();
        let log = DecisionLog::open(store, &loaded, 0, 0).unwrap();
        let mut live = log.tx.subscribe();
        let decision = |v: &str| decision(0, v);
        let mut handed: Vec<String> = Vec::new();
        let out = log
            .commit_round(1, vec![decision("v0"), decision("v1")], Some(vec![None, None]), |ms| {
                // Nothing published yet when the migrations are handed over.
                assert!(live.try_recv().is_err(), "a decision was published before its migration");
                handed.extend(ms.into_iter().map(|m| m.id));
            })
            .unwrap();
        assert_eq!(handed, ["m1", "m2"]);
        assert_eq!(out.iter().map(|d| d.sequence).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(live.try_recv().unwrap().sequence, 1);
        assert_eq!(live.try_recv().unwrap().sequence, 2);
        // Without proposals the hook sees none.
        let mut none = None;
        log.commit_round(2, vec![decision("v2")], None, |ms| none = Some(ms.len())).unwrap();
        assert_eq!(none, Some(0));
    }
}
