//! A job's upload as a seekable byte source for the decoder, read from Redis in slices
//! (`GETRANGE`), so a worker never holds a whole recording: only the slice being decoded.
//! The decoder runs on a blocking thread; each slice is fetched through the tokio runtime.

use std::io::{self, Read, Seek, SeekFrom};
use std::time::Duration;

use inferq_shared::audio::MediaSource;
use inferq_shared::job::JobId;
use inferq_shared::queue::Queue;
use tokio::runtime::Handle;

/// Bytes fetched per read: large enough that Redis round trips are rare, small enough to
/// keep the worker's memory flat.
const SLICE: usize = 256 * 1024;

/// Longest a slice may take before the read fails (and the job goes back to the queue).
const SLICE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct UploadSource {
    queue: Queue,
    runtime: Handle,
    job: JobId,
    len: u64,
    pos: u64,
    /// The slice last fetched and where it starts.
    slice: Vec<u8>,
    slice_start: u64,
}

impl std::fmt::Debug for UploadSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UploadSource")
            .field("job", &self.job)
            .field("len", &self.len)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

impl UploadSource {
    pub(crate) fn new(queue: Queue, runtime: Handle, job: JobId, len: u64) -> Self {
        Self {
            queue,
            runtime,
            job,
            len,
            pos: 0,
            slice: Vec::new(),
            slice_start: 0,
        }
    }

    fn fetch(&mut self) -> io::Result<()> {
        let (queue, job, pos) = (self.queue.clone(), self.job, self.pos);
        let got = self.runtime.block_on(async move {
            tokio::time::timeout(SLICE_TIMEOUT, queue.read_upload(job, pos, SLICE)).await
        });
        let bytes = match got {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return Err(io::Error::other(e)),
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "reading the upload timed out",
                ));
            }
        };
        if bytes.is_empty() {
            // The key vanished mid-read: the job was cancelled (or its upload expired).
            return Err(io::Error::other("the upload is gone"));
        }
        self.slice = bytes;
        self.slice_start = pos;
        Ok(())
    }
}

impl Read for UploadSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let end = self.slice_start + self.slice.len() as u64;
        if self.pos < self.slice_start || self.pos >= end {
            self.fetch()?;
        }
        let at = (self.pos - self.slice_start) as usize;
        let n = buf.len().min(self.slice.len() - at);
        buf[..n].copy_from_slice(&self.slice[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for UploadSource {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(p) => i128::from(p),
            SeekFrom::End(d) => i128::from(self.len) + i128::from(d),
            SeekFrom::Current(d) => i128::from(self.pos) + i128::from(d),
        };
        if target < 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the upload",
            ));
        }
        self.pos = target as u64;
        Ok(self.pos)
    }
}

impl MediaSource for UploadSource {
    fn is_seekable(&self) -> bool {
        true
    }

    fn byte_len(&self) -> Option<u64> {
        Some(self.len)
    }
}
