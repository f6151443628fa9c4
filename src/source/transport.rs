//! eventsource-client's `HttpTransport` over the daemon's reqwest client.
//!
//! One HTTP stack, one TLS configuration and one crypto provider for
//! everything hookd sends (STACK.md: the crate's own hyper transport would
//! pull in ring beside aws-lc-rs and panic). reqwest's futures and body
//! streams are `Send` but not `Sync`, which the trait needs, so the request
//! runs on a task and the body arrives through a channel.
//!
//! The body forwarder also does two jobs the SSE parser cannot: it stamps
//! every chunk's arrival in an [`Activity`] (the idle watchdog reads it, so
//! keep-alive comments and half-sent events both count as life), and it
//! ends the stream when a single event grows past `max_event` bytes, since
//! the parser would otherwise buffer an endless line.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use launchdarkly_sdk_transport::{ByteStream, HttpTransport, ResponseFuture, TransportError};
use tokio_util::task::AbortOnDropHandle;

/// When the last bytes of a connection arrived.
#[derive(Clone, Debug)]
pub struct Activity {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    pub fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }
    pub fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }
    /// How long since the last bytes (or since `new`/`touch`).
    pub fn idle(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Clone)]
pub struct ReqwestTransport {
    client: reqwest::Client,
    activity: Activity,
    max_event: usize,
}

impl ReqwestTransport {
    pub fn new(client: reqwest::Client, activity: Activity, max_event: usize) -> Self {
        ReqwestTransport {
            client,
            activity,
            max_event,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("an event is larger than {0} bytes")]
struct EventTooLarge(usize);

impl HttpTransport for ReqwestTransport {
    fn request(&self, req: http::Request<Option<Bytes>>) -> ResponseFuture {
        let (client, activity, max_event) =
            (self.client.clone(), self.activity.clone(), self.max_event);
        let task = AbortOnDropHandle::new(tokio::spawn(async move {
            let (parts, body) = req.into_parts();
            let mut rb = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers);
            if let Some(b) = body {
                rb = rb.body(b);
            }
            // Without the URL: it may carry the API key as a query parameter.
            let resp = rb
                .send()
                .await
                .map_err(|e| TransportError::new(e.without_url()))?;
            activity.touch();
            let mut out = http::Response::builder().status(resp.status());
            for (k, v) in resp.headers() {
                out = out.header(k, v);
            }
            let (tx, rx) = tokio::sync::mpsc::channel(16);
            tokio::spawn(forward(resp, tx, activity, max_event));
            let s: ByteStream = Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|i| (i, rx))
            }));
            out.body(s).map_err(TransportError::new)
        }));
        Box::pin(async move { task.await.map_err(TransportError::new)? })
    }
}

type Chunk = Result<Bytes, TransportError>;

/// Copies the body into the channel until it ends, the reader goes away
/// (even while the server is silent), or an event gets too large.
async fn forward(
    resp: reqwest::Response,
    tx: tokio::sync::mpsc::Sender<Chunk>,
    activity: Activity,
    max_event: usize,
) {
    let mut body = resp.bytes_stream();
    let mut size = EventSize::default();
    loop {
        let next = tokio::select! {
            _ = tx.closed() => return,
            n = body.next() => n,
        };
        let Some(chunk) = next else { return };
        activity.touch();
        let item = chunk
            .map_err(|e| TransportError::new(e.without_url()))
            .and_then(|c| {
                if size.feed(&c) > max_event {
                    Err(TransportError::new(EventTooLarge(max_event)))
                } else {
                    Ok(c)
                }
            });
        let stop = item.is_err();
        if tx.send(item).await.is_err() || stop {
            return;
        }
    }
}

/// Bytes since the last blank line (the end of an SSE event), following
/// CR, LF and CRLF line ends across chunk boundaries.
#[derive(Default)]
struct EventSize {
    since_blank: usize,
    line: usize,
    after_cr: bool,
}

impl EventSize {
    fn feed(&mut self, chunk: &[u8]) -> usize {
        let mut peak = self.since_blank;
        for &b in chunk {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\r' | b'\n' => {
                    self.after_cr = b == b'\r';
                    if self.line == 0 {
                        self.since_blank = 0;
                    }
                    self.line = 0;
                }
                _ => {
                    self.after_cr = false;
                    self.line += 1;
                    self.since_blank += 1;
                    peak = peak.max(self.since_blank);
                }
            }
        }
        peak
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_size_resets_on_blank_lines_of_any_ending() {
        let mut s = EventSize::default();
        assert_eq!(s.feed(b"data: abc\n"), 9);
        assert_eq!(s.feed(b"data: d\r"), 16);
        // The LF of a CRLF split across chunks is not a blank line.
        assert_eq!(s.feed(b"\n"), 16);
        assert_eq!(s.feed(b"\r\n"), 16);
        assert_eq!(s.since_blank, 0);
        assert_eq!(s.feed(b"x\r\rdata: yz\n\n"), 8);
        assert_eq!(s.since_blank, 0);
    }

    /// Feeds `bytes` split at `cuts`; returns the largest peak and the end state.
    fn fed(bytes: &[u8], cuts: &[usize]) -> (usize, (usize, usize, bool)) {
        let mut s = EventSize::default();
        let (mut peak, mut at) = (0, 0);
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        for c in cuts.into_iter().chain([bytes.len()]) {
            peak = peak.max(s.feed(&bytes[at..c]));
            at = c;
        }
        (peak, (s.since_blank, s.line, s.after_cr))
    }

    proptest::proptest! {
        /// SSE framing is the same however the network splits the bytes:
        /// the same peak event size and the same state afterwards, and the
        /// peak is never below the longest run of bytes between blank lines.
        #[test]
        fn event_size_does_not_depend_on_chunking(
            bytes in proptest::collection::vec(
                proptest::sample::select(vec![b'\r', b'\n', b'a', b':', b' ']), 0..300),
            cuts in proptest::collection::vec(0usize..400, 0..12),
        ) {
            let whole = fed(&bytes, &[]);
            proptest::prop_assert_eq!(fed(&bytes, &cuts), whole);
            let text = String::from_utf8(bytes.clone()).unwrap().replace("\r\n", "\n").replace('\r', "\n");
            let longest = text
                .split("\n\n")
                .map(|event| event.bytes().filter(|&b| b != b'\n').count())
                .max()
                .unwrap_or(0);
            proptest::prop_assert!(whole.0 >= longest, "peak {} < longest event {}", whole.0, longest);
        }
    }
}
