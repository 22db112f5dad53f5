//! A standby's copy of the leader's state, so standbys serve reads:
//! topology with placements, migrations and the decision log, loaded from
//! etcd at one revision and kept current by a watch from the next one
//! (nothing is missed between the two, nothing applied twice).
//!
//! etcd-client neither resumes a watch nor notices one that went silent
//! (a member died under it without closing the stream), so this module
//! does both: it asks for a progress notification every second and
//! treats a watch that answers nothing for three seconds, ends, errs or
//! is cancelled (compacted past its revision) as lost: it reloads
//! everything at a new revision and watches again. Decisions committed
//! while no watch was running are published after the reload, so a
//! `WatchDecisions` stream on a standby still sees every one, once.
//!
//! The copy can lag the leader by the watch's delay (milliseconds on a
//! healthy cluster) and stops moving while etcd is unreachable; every
//! answer from it carries the etcd revision it reflects
//! (`swarm-revision`), so a caller can tell.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use etcd_client::{Client, EventType, WatchOptions};
use swarm_core::decision::Decision;
use swarm_core::domain::Topology;
use swarm_core::migration::book::Book;

use crate::decisions::DecisionLog;
use crate::store::etcd::{self, Key};
use crate::store::{MetaStore, StoreError, records};

/// How often the watch is asked to prove it is alive.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Silence after which the watch is taken as lost.
const SILENT_FOR: Duration = Duration::from_secs(3);
/// At most this many decisions missed while unwatched are published on a
/// reload; a watcher further behind finds the gap and reads the store.
const REPUBLISH: usize = 1000;

/// What a standby knows of the leader's state.
#[derive(Default)]
pub struct View {
    /// Topology with placements.
    pub topology: Topology,
    /// Every migration.
    pub book: Book,
    /// The etcd revision this view reflects (0: not loaded yet).
    pub revision: i64,
    /// Why the view is not following etcd right now, if it is not.
    pub stale: Option<String>,
}

/// Cheap-clone handle to a standby's view and decision log.
#[derive(Clone)]
pub struct Follower {
    view: Arc<RwLock<View>>,
    log: DecisionLog,
}

impl Follower {
    /// A follower reading decisions through `reader` (a store that refuses
    /// writes). Its view is empty until [`follow`] has loaded it.
    pub fn new(reader: Arc<dyn MetaStore>) -> Self {
        let log = DecisionLog::open(reader, &crate::store::Loaded::default(), 0, 0)
            .expect("an empty log reads nothing from the store");
        Follower { view: Arc::new(RwLock::new(View::default())), log }
    }

    /// Reads the view.
    pub fn read<T>(&self, f: impl FnOnce(&View) -> T) -> T {
        f(&self.view.read().expect("view lock"))
    }

    /// The decision log (reads and watches; a standby never appends).
    pub fn log(&self) -> &DecisionLog {
        &self.log
    }

    fn stale(&self, why: String) {
        self.view.write().expect("view lock").stale = Some(why);
    }
}

/// Keeps `f` current until the task is dropped.
pub async fn follow(client: Client, prefix: String, f: Follower) {
    loop {
        if let Err(e) = sync(&client, &prefix, &f).await {
            // Said once per outage; the retries every half second are debug.
            if f.read(|v| v.stale.is_none()) {
                tracing::warn!(error = %e, "the standby's copy of the state stopped following etcd; reloading");
            } else {
                tracing::debug!(error = %e, "the standby's copy of the state still cannot follow etcd");
            }
            f.stale(e.to_string());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn lost(reason: impl Into<String>) -> StoreError {
    StoreError::Io { op: "watch", reason: reason.into() }
}

/// One load and the watch after it, until the watch is lost.
async fn sync(client: &Client, prefix: &str, f: &Follower) -> Result<(), StoreError> {
    let (loaded, revision) = etcd::load_at(client, prefix).await?;
    let book = Book::new(loaded.migrations).map_err(|e| StoreError::Corrupt {
        what: "migration",
        key: "m/".into(),
        reason: e.to_string(),
    })?;
    let published = f.log.last_sequence();
    // Only a reload can have watchers waiting (reads and watches are
    // refused until the first load), so only a reload republishes.
    let reloading = f.read(|v| v.revision > 0);
    let missed = if reloading && loaded.last_decision_seq > published {
        let n = ((loaded.last_decision_seq - published) as usize).min(REPUBLISH);
        etcd::read_decisions(client, prefix, loaded.last_decision_seq + 1 - n as u64, n).await?
    } else {
        Vec::new()
    };
    {
        let mut v = f.view.write().expect("view lock");
        v.topology = loaded.topology;
        v.book = book;
        v.revision = revision;
        v.stale = None;
    }
    f.log.observe(loaded.first_decision_seq, loaded.last_decision_seq, &missed);
    tracing::info!(revision, last_decision = loaded.last_decision_seq, "standby loaded the state from etcd");

    let opts = WatchOptions::new().with_prefix().with_start_revision(revision + 1);
    let (mut watcher, mut stream) =
        client.watch_client().watch(prefix, Some(opts)).await.map_err(|e| lost(e.to_string()))?.split();
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    let mut heard = Instant::now();
    loop {
        tokio::select! {
            m = stream.message() => {
                let resp = match m {
                    Ok(Some(r)) => r,
                    Ok(None) => return Err(lost("the watch stream ended")),
                    Err(e) => return Err(lost(e.to_string())),
                };
                heard = Instant::now();
                if resp.canceled() {
                    return Err(lost(format!("etcd cancelled the watch: {}", resp.cancel_reason())));
                }
                apply(prefix, f, &resp)?;
            }
            _ = tick.tick() => {
                if heard.elapsed() > SILENT_FOR {
                    return Err(lost(format!("the watch answered nothing for {SILENT_FOR:?}")));
                }
                // Answered by a progress notification (etcd 3.4+), or the
                // failure shows on the stream.
                let _ = watcher.request_progress().await;
            }
        }
    }
}

/// Applies one watch response's events (a whole transaction arrives in
/// one response), then publishes its decisions: an orchestrator that asks
/// for a decision's migration the moment it sees the decision finds it.
fn apply(prefix: &str, f: &Follower, resp: &etcd_client::WatchResponse) -> Result<(), StoreError> {
    let mut decisions: Vec<Decision> = Vec::new();
    {
        let mut v = f.view.write().expect("view lock");
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let put = ev.event_type() == EventType::Put;
            match (Key::parse(prefix, &key)?, put) {
                (Some(Key::Physical(_)), true) => {
                    let n = etcd::decode_physical(&key, kv.value())?;
                    v.topology.physical.insert(n.id.clone(), n);
                }
                (Some(Key::Physical(id)), false) => {
                    v.topology.physical.remove(id);
                }
                (Some(Key::Virtual(_)), true) => {
                    let n = etcd::decode_virtual(&key, kv.value())?;
                    v.topology.virtual_nodes.insert(n.id.clone(), n);
                }
                (Some(Key::Virtual(id)), false) => {
                    v.topology.virtual_nodes.remove(id);
                }
                (Some(Key::Migration(seq)), true) => v.book.insert(records::decode_migration(seq, kv.value())?),
                (Some(Key::Decision(seq)), true) => decisions.push(records::decode_decision(seq, kv.value())?),
                _ => {}
            }
        }
        if let Some(h) = resp.header() {
            v.revision = v.revision.max(h.revision());
        }
    }
    decisions.sort_by_key(|d| d.sequence);
    if let (Some(oldest), Some(newest)) = (decisions.first(), decisions.last()) {
        let first = match f.log.first_sequence() {
            0 => oldest.sequence,
            s => s,
        };
        f.log.observe(first, newest.sequence, &decisions);
    }
    Ok(())
}
