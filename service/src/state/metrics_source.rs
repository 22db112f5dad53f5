//! Where samples go and come from: the embedded store, or the Prometheus
//! backend with the frames as its read-through cache. The one place the
//! rest of `Swarm` (and the intakes) ask, so no caller knows which it is.

use std::future::Future;
use std::pin::Pin;

use super::{ApiError, Swarm};
use crate::series::{Sample, SeriesError};

/// Resolves once a batch is durable (embedded) or accepted by the backend.
pub type Stored = Pin<Box<dyn Future<Output = Result<(), SeriesError>> + Send>>;

impl Swarm {
    /// Queues validated samples where the configured backend keeps them;
    /// the returned future resolves once they are durable there. Lets one
    /// stream keep several batches in flight (they share a commit).
    pub async fn append_start(&self, samples: Vec<Sample>) -> Result<Stored, SeriesError> {
        Ok(match &self.inner.prometheus {
            None => Box::pin(self.inner.series.append_start(samples).await?),
            Some(p) => Box::pin(p.write_start(samples).await?),
        })
    }

    /// Brings the frames up to date with the backend before a read (a
    /// no-op for the embedded store, which the intake writes directly).
    /// A refresh under a second old is reused, but never by a round (`fresh`).
    pub(crate) async fn refresh_metrics(&self, fresh: bool) -> Result<(), ApiError> {
        let Some(p) = &self.inner.prometheus else { return Ok(()) };
        let topo = self.topology();
        match p.refresh(&topo, self.now_ms(), !fresh).await {
            Ok(r) => {
                if !r.reused {
                    self.inner.telemetry.metrics_refresh(true);
                    tracing::debug!(
                        queries = r.queries,
                        points = r.points,
                        unknown_series = r.unknown_series,
                        invalid_points = r.invalid_points,
                        "metrics backend read"
                    );
                }
                Ok(())
            }
            Err(e) => {
                self.inner.telemetry.metrics_refresh(false);
                Err(ApiError::Unavailable(e.to_string()))
            }
        }
    }

    /// The Prometheus backend, when it is the one configured.
    pub fn metrics_backend(&self) -> Option<&crate::prometheus::Prometheus> {
        self.inner.prometheus.as_ref()
    }
}
