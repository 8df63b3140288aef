//! One recording inside an engine thread (its buffered samples, its model state row, its
//! probabilities so far), and the run of one window of many recordings in one session call.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;

use ort::session::{Session, SessionInputValue};
use ort::value::Value;
use tokio::sync::oneshot;

use super::vad::{STATE, StreamState, context_size, window_size};

/// What a finished recording gives back: one probability per window and its length in
/// samples at the model's rate.
#[derive(Debug)]
pub(crate) struct Probabilities {
    pub(crate) probs: Vec<f32>,
    pub(crate) samples: u64,
}

/// One recording inside an engine thread.
pub(super) struct Stream {
    pub(super) sampling_rate: u32,
    pub(super) rx: mpsc::Receiver<Vec<f32>>,
    pub(super) buffer: VecDeque<f32>,
    pub(super) ended: bool,
    pub(super) state: StreamState,
    pub(super) probs: Vec<f32>,
    pub(super) samples: u64,
    pub(super) processed: Arc<AtomicU64>,
    pub(super) cancel: Arc<AtomicBool>,
    pub(super) done: Option<oneshot::Sender<Result<Probabilities, String>>>,
}

impl Stream {
    /// Pulls chunks until a window is buffered or nothing more is waiting.
    pub(super) fn fill(&mut self) {
        let window = window_size(self.sampling_rate);
        while !self.ended && self.buffer.len() < window {
            match self.rx.try_recv() {
                Ok(chunk) => {
                    self.samples += chunk.len() as u64;
                    self.buffer.extend(chunk);
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => self.ended = true,
            }
        }
    }

    /// A full window is buffered, or the recording ended with a partial one.
    pub(super) fn ready(&self) -> bool {
        self.buffer.len() >= window_size(self.sampling_rate)
            || (self.ended && !self.buffer.is_empty())
    }
}

/// Reused input buffers of one engine thread.
#[derive(Default)]
pub(super) struct Batch {
    input: Vec<f32>,
    state: Vec<f32>,
    window: Vec<f32>,
}

impl Batch {
    /// One window of each recording in `group` (all at `rate`) through the model, in one call.
    pub(super) fn run(
        &mut self,
        session: &mut Session,
        streams: &mut [Stream],
        group: &[usize],
        rate: u32,
    ) -> ort::Result<()> {
        let (win, ctx) = (window_size(rate), context_size(rate));
        let (b, row) = (group.len(), win + ctx);
        self.input.resize(b * row, 0.0);
        self.state.resize(2 * b * STATE, 0.0);
        let mut taken = Vec::with_capacity(b);
        for (j, &i) in group.iter().enumerate() {
            let s = &mut streams[i];
            let n = s.buffer.len().min(win);
            self.window.clear();
            self.window.extend(s.buffer.drain(..n));
            taken.push(n);
            s.state
                .input_row(&self.window, &mut self.input[j * row..(j + 1) * row]);
            for layer in 0..2 {
                let dst = (layer * b + j) * STATE;
                self.state[dst..dst + STATE]
                    .copy_from_slice(&s.state.state[layer * STATE..(layer + 1) * STATE]);
            }
        }
        let inputs: Vec<(String, SessionInputValue<'_>)> = vec![
            (
                "input".into(),
                Value::from_array((vec![b as i64, row as i64], self.input.clone()))?
                    .into_dyn()
                    .into(),
            ),
            (
                "state".into(),
                Value::from_array((vec![2, b as i64, STATE as i64], self.state.clone()))?
                    .into_dyn()
                    .into(),
            ),
            (
                "sr".into(),
                Value::from_array((Vec::<i64>::new(), vec![i64::from(rate)]))?
                    .into_dyn()
                    .into(),
            ),
        ];
        let outputs = session.run(inputs)?;
        let (_, probs) = outputs["output"].try_extract_tensor::<f32>()?;
        let (_, state) = outputs["stateN"].try_extract_tensor::<f32>()?;
        for (j, &i) in group.iter().enumerate() {
            let s = &mut streams[i];
            s.probs.push(probs[j]);
            for layer in 0..2 {
                let src = (layer * b + j) * STATE;
                s.state.state[layer * STATE..(layer + 1) * STATE]
                    .copy_from_slice(&state[src..src + STATE]);
            }
            s.processed.fetch_add(taken[j] as u64, Ordering::Relaxed);
        }
        Ok(())
    }
}
