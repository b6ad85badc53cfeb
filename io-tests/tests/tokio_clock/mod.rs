//! tokio's clock as the async adapter's `Clock` (the example of the `asynch`
//! module docs), for the tests that run sessions on tokio.

use smolsock::asynch::Clock;
use smolsock::time::Instant;

/// tokio's clock, counting from when it was made (paused or not, as the test's
/// runtime is).
pub struct TokioClock(pub tokio::time::Instant);

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        Instant::from_micros(self.0.elapsed().as_micros().try_into().unwrap_or(u64::MAX))
    }

    async fn sleep_until(&self, at: Instant) {
        match self
            .0
            .checked_add(std::time::Duration::from_micros(at.total_micros()))
        {
            Some(at) => tokio::time::sleep_until(at).await,
            None => std::future::pending().await,
        }
    }
}
