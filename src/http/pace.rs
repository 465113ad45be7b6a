//! Request bodies that must keep arriving: after a short grace, at least a minimum average
//! rate, or the request ends with 408. A client trickling a byte a second would otherwise
//! hold a connection (and whatever the handler holds) for as long as it likes.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

/// Time any body gets before its rate counts: a phone waking its radio, a TLS tunnel.
pub const GRACE: Duration = Duration::from_secs(15);
/// The slowest average a body may arrive at once the grace is over, in bytes a second:
/// a 2G link still does several times this.
pub const MIN_RATE: u64 = 2 * 1024;
/// The longest silence in a body, however fast it was before: a rate earned early is not a
/// licence to hold the connection idle.
pub const MAX_SILENCE: Duration = Duration::from_secs(30);

pub use crate::intake::upload::{TooSlow, is_too_slow};

/// What every handler reads its body from.
pub type RequestBody = Paced<Incoming>;

pub struct Paced<B> {
    inner: B,
    started: Instant,
    last: Instant,
    received: u64,
    timer: Pin<Box<Sleep>>,
    failed: bool,
}

impl<B> Paced<B> {
    pub fn new(inner: B) -> Self {
        let started = Instant::now();
        Paced {
            inner,
            started,
            last: started,
            received: 0,
            timer: Box::pin(tokio::time::sleep_until(started + GRACE)),
            failed: false,
        }
    }

    /// When the body must have reached its next byte to stay at the minimum rate.
    fn deadline(&self) -> Instant {
        let rate = self.started
            + GRACE
            + Duration::from_millis(self.received.saturating_mul(1000) / MIN_RATE);
        rate.min(self.last + MAX_SILENCE)
    }
}

impl<B> Body for Paced<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.failed {
            return Poll::Ready(Some(Err(Box::new(TooSlow))));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.received += data.len() as u64;
                    self.last = Instant::now();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = self.deadline();
                self.timer.as_mut().reset(deadline);
                if self.timer.as_mut().poll(cx).is_ready() {
                    self.failed = true;
                    return Poll::Ready(Some(Err(Box::new(TooSlow))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test(start_paused = true)]
    async fn a_trickle_is_cut_after_the_grace_and_a_steady_body_is_not() {
        let trickle = futures_util::stream::unfold(0u32, |n| async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Some((
                Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(b"x"))),
                n + 1,
            ))
        });
        let started = Instant::now();
        let err = Paced::new(StreamBody::new(Box::pin(trickle)))
            .collect()
            .await
            .err()
            .unwrap();
        assert!(is_too_slow(err.as_ref()));
        let took = started.elapsed();
        assert!(
            took >= GRACE && took < GRACE + Duration::from_secs(2),
            "{took:?}"
        );

        let steady = futures_util::stream::iter(
            (0..40).map(|_| Ok::<_, std::io::Error>(Frame::data(Bytes::from(vec![0u8; 4096])))),
        )
        .then(|f| async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            f
        });
        let body = Paced::new(StreamBody::new(Box::pin(steady)))
            .collect()
            .await;
        assert_eq!(body.unwrap().to_bytes().len(), 40 * 4096);
    }
}
