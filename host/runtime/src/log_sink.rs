//! A bounded, in-memory stdout/stderr for plugins: bytes past the budget are counted and dropped,
//! never an error (a chatty plugin must not crash because its output is full, nor flood the host).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Bytes kept and bytes dropped by one sink.
#[derive(Debug, Default)]
struct Buffer {
    kept: Vec<u8>,
    dropped: u64,
}

/// A cloneable handle to one bounded buffer.
#[derive(Debug, Clone)]
pub(crate) struct LogSink {
    capacity: usize,
    buffer: Arc<Mutex<Buffer>>,
}

impl LogSink {
    pub(crate) fn new(capacity: usize) -> Self {
        LogSink { capacity, buffer: Arc::new(Mutex::new(Buffer::default())) }
    }

    fn append(&self, bytes: &[u8]) {
        // A poisoned lock only means another writer panicked; the bytes are still ours to keep.
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let room = self.capacity.saturating_sub(buffer.kept.len());
        let take = room.min(bytes.len());
        buffer.kept.extend_from_slice(&bytes[..take]);
        buffer.dropped += (bytes.len() - take) as u64;
    }

    /// The kept bytes and the number of dropped bytes.
    pub(crate) fn take(&self) -> (Vec<u8>, u64) {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        (std::mem::take(&mut buffer.kept), std::mem::take(&mut buffer.dropped))
    }
}

impl IsTerminal for LogSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogSink {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LogSink {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogSink {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LogSink {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_past_the_capacity_are_counted_and_dropped() {
        let sink = LogSink::new(4);
        sink.append(b"abc");
        sink.append(b"defg");
        assert_eq!(sink.take(), (b"abcd".to_vec(), 3));
    }
}
