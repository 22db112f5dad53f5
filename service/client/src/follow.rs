//! A client channel over the replicas of a highly available swarmd that
//! follows the leader: a standby names the leader's address in
//! `swarm-leader` (on the reads it serves from its copy of the state, and
//! on the UNAVAILABLE it answers every other call with), and a dead leader
//! refuses connections. The channel switches to the named leader on the
//! first, and to the next known replica on the second; the call that saw
//! it ends as it did (a read answered, anything else UNAVAILABLE), so the
//! caller's next call or retry goes to the new one. With one address and
//! no standby in play it is a plain channel.

use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::transport::{Channel, Endpoint};
use tower::{Service, ServiceExt};

/// Turns an address into an endpoint (TLS settings included), `None` when
/// this connection may not open others.
pub type MakeEndpoint = Arc<dyn Fn(&str) -> Option<Endpoint> + Send + Sync>;

/// The replicas known and the one calls go to now.
#[derive(Clone)]
pub struct Replicas {
    shared: Arc<RwLock<State>>,
    make: MakeEndpoint,
}

struct State {
    /// Every address known: the ones given, then leaders learned.
    known: Vec<String>,
    /// Index into `known` calls go to.
    at: usize,
    channel: Channel,
}

impl Replicas {
    /// A set over `first` (already connected) and the other addresses;
    /// `make` turns an address into an endpoint (TLS settings included).
    pub fn new(first: (String, Channel), others: Vec<String>, make: MakeEndpoint) -> Replicas {
        let mut known = vec![first.0.clone()];
        known.extend(others.into_iter().filter(|o| *o != first.0));
        Replicas { shared: Arc::new(RwLock::new(State { known, at: 0, channel: first.1 })), make }
    }

    /// The address calls go to now.
    pub fn current(&self) -> String {
        let s = self.shared.read().expect("replicas lock");
        s.known[s.at].clone()
    }

    fn switch(&self, to: usize) {
        let mut s = self.shared.write().expect("replicas lock");
        if to == s.at {
            return;
        }
        if let Some(e) = (self.make)(&s.known[to]) {
            s.at = to;
            s.channel = e.connect_lazy();
        }
    }

    /// Calls go to `leader` from now on (learned from a standby).
    pub fn follow(&self, leader: &str) {
        let to = {
            let mut s = self.shared.write().expect("replicas lock");
            match s.known.iter().position(|k| k == leader) {
                Some(i) => i,
                None => {
                    s.known.push(leader.to_owned());
                    s.known.len() - 1
                }
            }
        };
        self.switch(to);
    }

    /// Calls go to the next known replica (the current one did not answer).
    fn rotate(&self) {
        let to = {
            let s = self.shared.read().expect("replicas lock");
            if s.known.len() < 2 {
                return;
            }
            (s.at + 1) % s.known.len()
        };
        self.switch(to);
    }
}

impl Service<http::Request<Body>> for Replicas {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is the current channel's, awaited inside `call`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let me = self.clone();
        let channel = self.shared.read().expect("replicas lock").channel.clone();
        Box::pin(async move {
            let result = channel.oneshot(req).await;
            match &result {
                Ok(resp) => {
                    if let Some(leader) = resp.headers().get("swarm-leader").and_then(|v| v.to_str().ok())
                        && (leader.starts_with("http://") || leader.starts_with("https://"))
                    {
                        me.follow(leader);
                    }
                }
                Err(_) => me.rotate(),
            }
            result
        })
    }
}
