//! Beginning attempts: the start step gives each delivery its fence (or says it is not to
//! run), then the kind runs the started ones.

use inferq_shared::queue::QueueError;
use tokio::task::JoinSet;

use super::{Attempt, Batch, Consumer, Fence, Kind};

impl<K: Kind> Consumer<K> {
    /// Begins the attempts and hands them to the kind, which runs them and settles the
    /// outcomes. On a Redis error the batch comes back unstarted (retrying is safe: starting a
    /// delivery twice adds no attempt).
    pub(super) async fn begin(
        &self,
        (queue, deliveries): Batch,
        permit: K::Permit,
        tasks: &mut JoinSet<()>,
    ) -> Result<(), (QueueError, Batch)> {
        let name = &self.setup.names[queue];
        let tokens = match self
            .setup
            .queue
            .start(
                name,
                &self.setup.consumer,
                &deliveries,
                self.setup.max_attempts,
                self.setup.retention,
            )
            .await
        {
            Ok(t) => t,
            Err(e) => return Err((e, (queue, deliveries))),
        };
        let mut attempts = Vec::with_capacity(deliveries.len());
        for (d, token) in deliveries.into_iter().zip(tokens) {
            let fence = Fence::started(token);
            self.leases.started(queue, &d.entry, d.job, fence);
            if let Some(fence) = fence {
                attempts.push(Attempt { delivery: d, fence });
            }
        }
        self.kind.run(queue, attempts, permit, &self.settle, tasks);
        Ok(())
    }
}
