//! Silero VAD as the silero-vad package (6.2.3) runs it, free of ONNX Runtime: windowing with
//! context, and `get_speech_timestamps_from_probs` ported line by line (`utils_vad.py`), so a
//! recording's segments equal the package's own.

use inferq_shared::pipeline::{Segment, SpeechSettings, round_ms};

/// Samples per window: 512 at 16 kHz, 256 at 8 kHz.
pub(crate) fn window_size(sampling_rate: u32) -> usize {
    if sampling_rate == 16000 { 512 } else { 256 }
}

/// Samples of the previous window prepended to each window: 64 at 16 kHz, 32 at 8 kHz.
pub(crate) fn context_size(sampling_rate: u32) -> usize {
    if sampling_rate == 16000 { 64 } else { 32 }
}

/// Width of the model's recurrent state per recording (`state` is `[2, batch, 128]`).
pub(crate) const STATE: usize = 128;

/// One recording's model state between windows: the LSTM state and the context samples,
/// as `OnnxWrapper` carries them.
#[derive(Debug, Clone)]
pub(crate) struct StreamState {
    /// `[2][128]`: the recording's slice of the `[2, batch, 128]` state.
    pub(crate) state: Vec<f32>,
    /// The last `context_size` samples of the previous model input.
    pub(crate) context: Vec<f32>,
}

impl StreamState {
    pub(crate) fn new(sampling_rate: u32) -> Self {
        Self {
            state: vec![0.0; 2 * STATE],
            context: vec![0.0; context_size(sampling_rate)],
        }
    }

    /// Writes this recording's model input (context, then the window, zero-padded as
    /// `get_speech_timestamps` pads the last one) into `row`, and keeps its tail as the next
    /// context.
    pub(crate) fn input_row(&mut self, window: &[f32], row: &mut [f32]) {
        let c = self.context.len();
        row[..c].copy_from_slice(&self.context);
        row[c..c + window.len()].copy_from_slice(window);
        row[c + window.len()..].fill(0.0);
        let n = row.len();
        self.context.copy_from_slice(&row[n - c..]);
    }
}

/// `get_speech_timestamps_from_probs`: speech segments in samples from one probability per
/// window. `audio_length_samples` is the recording's length at `settings.sampling_rate`.
/// Python's mixed int / float arithmetic is kept: sample positions are integers, the
/// durations derived from milliseconds are floats.
pub(crate) fn speech_timestamps(
    probs: &[f32],
    settings: &SpeechSettings,
    audio_length_samples: u64,
) -> Vec<(i64, i64)> {
    let sr = f64::from(settings.sampling_rate);
    let window = window_size(settings.sampling_rate) as i64;
    let threshold = settings.threshold;
    let neg_threshold = settings.neg_threshold;
    let audio_len = audio_length_samples as i64;
    let min_speech_samples = sr * settings.min_speech_duration_ms as f64 / 1000.0;
    let speech_pad_samples = sr * settings.speech_pad_ms as f64 / 1000.0;
    let max_speech_samples = sr * settings.max_speech_duration_s.unwrap_or(f64::INFINITY)
        - window as f64
        - 2.0 * speech_pad_samples;
    let min_silence_samples = sr * settings.min_silence_duration_ms as f64 / 1000.0;
    // min_silence_at_max_speech = 98 ms, use_max_poss_sil_at_max_speech = True: the defaults.
    let min_silence_samples_at_max_speech = sr * 98.0 / 1000.0;

    let mut triggered = false;
    let mut speeches: Vec<(i64, i64)> = Vec::new();
    // current_speech: {} / {'start'} / {'start', 'end'}.
    let mut current: Option<i64> = None;
    let mut temp_end: i64 = 0;
    let (mut prev_end, mut next_start): (i64, i64) = (0, 0);
    let mut possible_ends: Vec<(i64, i64)> = Vec::new();

    for (i, &p) in probs.iter().enumerate() {
        let p = f64::from(p);
        let cur_sample = window * i as i64;

        if p >= threshold && temp_end != 0 {
            let sil_dur = cur_sample - temp_end;
            if sil_dur as f64 > min_silence_samples_at_max_speech {
                possible_ends.push((temp_end, sil_dur));
            }
            temp_end = 0;
            if next_start < prev_end {
                next_start = cur_sample;
            }
        }

        if p >= threshold && !triggered {
            triggered = true;
            current = Some(cur_sample);
            continue;
        }

        if triggered
            && let Some(start) = current
            && (cur_sample - start) as f64 > max_speech_samples
        {
            // use_max_poss_sil_at_max_speech: cut at the longest silence inside, if any.
            if !possible_ends.is_empty() {
                // Python's max() keeps the first of equal maxima.
                let mut best = possible_ends[0];
                for &pe in &possible_ends[1..] {
                    if pe.1 > best.1 {
                        best = pe;
                    }
                }
                let (pe, dur) = best;
                prev_end = pe;
                speeches.push((start, prev_end));
                current = None;
                next_start = prev_end + dur;
                if next_start < prev_end + cur_sample {
                    current = Some(next_start);
                } else {
                    triggered = false;
                }
                prev_end = 0;
                next_start = 0;
                temp_end = 0;
                possible_ends.clear();
            } else {
                speeches.push((start, cur_sample));
                current = None;
                prev_end = 0;
                next_start = 0;
                temp_end = 0;
                triggered = false;
                possible_ends.clear();
                continue;
            }
        }

        if p < neg_threshold && triggered {
            if temp_end == 0 {
                temp_end = cur_sample;
            }
            let sil_dur_now = cur_sample - temp_end;
            if (sil_dur_now as f64) < min_silence_samples {
                continue;
            }
            if let Some(start) = current
                && (temp_end - start) as f64 > min_speech_samples
            {
                speeches.push((start, temp_end));
            }
            current = None;
            prev_end = 0;
            next_start = 0;
            temp_end = 0;
            triggered = false;
            possible_ends.clear();
            continue;
        }
    }

    if let Some(start) = current
        && (audio_len - start) as f64 > min_speech_samples
    {
        speeches.push((start, audio_len));
    }

    let n = speeches.len();
    for i in 0..n {
        if i == 0 {
            speeches[0].0 = (speeches[0].0 as f64 - speech_pad_samples).max(0.0) as i64;
        }
        if i != n - 1 {
            let silence = speeches[i + 1].0 - speeches[i].1;
            if (silence as f64) < 2.0 * speech_pad_samples {
                // Python's // floors, also for a negative silence.
                let half = silence.div_euclid(2);
                speeches[i].1 += half;
                speeches[i + 1].0 = (speeches[i + 1].0 - half).max(0);
            } else {
                speeches[i].1 =
                    (audio_len as f64).min(speeches[i].1 as f64 + speech_pad_samples) as i64;
                speeches[i + 1].0 = (speeches[i + 1].0 as f64 - speech_pad_samples).max(0.0) as i64;
            }
        } else {
            speeches[i].1 =
                (audio_len as f64).min(speeches[i].1 as f64 + speech_pad_samples) as i64;
        }
    }
    speeches
}

/// Segments in seconds as `return_seconds=True, time_resolution=3` gives them.
pub(crate) fn to_seconds(
    speeches: &[(i64, i64)],
    sampling_rate: u32,
    audio_length_samples: u64,
) -> Vec<Segment> {
    let sr = f64::from(sampling_rate);
    let length = audio_length_samples as f64 / sr;
    speeches
        .iter()
        .map(|&(s, e)| Segment {
            start: round_ms(s as f64 / sr).max(0.0),
            end: round_ms(e as f64 / sr).min(length),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> SpeechSettings {
        SpeechSettings::default()
    }

    /// Probabilities from a pattern: one char per window, '#' speech (0.9), '.' silence (0.1),
    /// '-' in between (0.4: neither starts nor ends speech).
    fn probs(pattern: &str) -> Vec<f32> {
        pattern
            .chars()
            .map(|c| match c {
                '#' => 0.9,
                '-' => 0.4,
                _ => 0.1,
            })
            .collect()
    }

    #[test]
    fn a_segment_is_padded_and_short_ones_dropped() {
        // 20 windows of silence, 20 of speech (10240 samples = 0.64 s), 20 of silence.
        let p = probs(&format!(
            "{}{}{}",
            ".".repeat(20),
            "#".repeat(20),
            ".".repeat(20)
        ));
        let s = speech_timestamps(&p, &settings(), 60 * 512);
        // Speech starts at window 20; silence from window 40 lasts 100 ms (1600 samples, so
        // 4 windows) before the segment ends at temp_end = 40 * 512; then 480 samples of pad.
        assert_eq!(s, vec![(20 * 512 - 480, 40 * 512 + 480)]);
        // 5 windows (160 ms) of speech: shorter than 250 ms, dropped.
        let p = probs(&format!(
            "{}{}{}",
            ".".repeat(20),
            "#".repeat(5),
            ".".repeat(20)
        ));
        assert!(speech_timestamps(&p, &settings(), 45 * 512).is_empty());
    }

    #[test]
    fn close_segments_share_the_silence_between_them() {
        // Two segments 8 windows (4096 samples) apart: more than 2 pads (960), so both padded.
        let p = probs(&format!(
            "{}{}{}{}",
            "#".repeat(20),
            ".".repeat(8),
            "#".repeat(20),
            ".".repeat(10)
        ));
        let s = speech_timestamps(&p, &settings(), 58 * 512);
        assert_eq!(
            s,
            vec![(0, 20 * 512 + 480), (28 * 512 - 480, 48 * 512 + 480)]
        );
        // Speech to the end: the segment ends at the recording's end.
        let p = probs(&format!("{}{}", ".".repeat(4), "#".repeat(20)));
        let s = speech_timestamps(&p, &settings(), 24 * 512 - 100);
        assert_eq!(s, vec![(4 * 512 - 480, 24 * 512 - 100)]);
    }

    #[test]
    fn max_speech_duration_splits_at_the_longest_silence() {
        let mut st = settings();
        st.max_speech_duration_s = Some(1.0);
        // One window below neg_threshold and four in between make a 2560-sample pause that
        // does not end the segment (temp_end is never 1600 samples old while the probability
        // is below neg_threshold) but is a place to cut. The limit is 16000 - 512 - 960 =
        // 14528 samples: at window 29 the segment is cut at the pause; at window 44 the
        // second one has no pause and is cut where it stands.
        let p = probs(&format!("{}.----{}", "#".repeat(10), "#".repeat(40)));
        let s = speech_timestamps(&p, &st, 55 * 512);
        assert_eq!(s, vec![(0, 5600), (7200, 22784), (22784, 28160)]);
    }

    #[test]
    fn seconds_are_rounded_to_milliseconds_and_clamped() {
        // The end is clamped to the unrounded length, as Python's min(round(...), length).
        let s = to_seconds(&[(16424, 71136)], 16000, 71000);
        assert_eq!(
            s,
            vec![Segment {
                start: 1.026,
                end: 4.4375
            }]
        );
        let s = to_seconds(&[(16424, 71136)], 16000, 80000);
        assert_eq!(
            s,
            vec![Segment {
                start: 1.026,
                end: 4.446
            }]
        );
    }

    #[test]
    fn the_context_carries_the_previous_windows_tail() {
        let mut st = StreamState::new(16000);
        let mut row = vec![1.0; 576];
        let w: Vec<f32> = (0..512).map(|i| i as f32).collect();
        st.input_row(&w, &mut row);
        assert!(row[..64].iter().all(|x| *x == 0.0));
        assert_eq!(row[64], 0.0);
        assert_eq!(row[575], 511.0);
        st.input_row(&w[..100], &mut row);
        assert_eq!(row[0], 448.0);
        assert_eq!(row[64 + 99], 99.0);
        assert!(row[64 + 100..].iter().all(|x| *x == 0.0));
        // The padded window's context is its zero tail.
        assert!(st.context.iter().all(|x| *x == 0.0));
    }
}
