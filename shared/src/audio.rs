//! Audio in, mono samples at the model's rate out, streaming: symphonia decodes WAV (PCM and
//! float of any width, any channel count), FLAC, MP3 and Ogg Vorbis packet by packet, channels
//! are averaged to mono (as the silero-vad package mixes), and rubato's FFT resampler converts
//! to the target rate. Only a packet and a resampler chunk are held at a time, so memory does
//! not grow with the recording.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler};
use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
/// A byte source the decoder reads (a file, an in-memory buffer, an upload in Redis).
pub use symphonia::core::io::MediaSource;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

/// Resampler input chunk, in frames.
const CHUNK: usize = 1024;

/// Consecutive undecodable packets after which the file is declared corrupt (a few bad
/// packets in a long file are skipped, as players do).
const MAX_BAD_PACKETS: usize = 8;

/// Why a file cannot be turned into samples. Each message says what was wrong, for the job's
/// `invalid_audio` error.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("the file is empty")]
    Empty,
    #[error("not a recognised audio file (expected WAV, FLAC, MP3 or Ogg Vorbis): {0}")]
    NotAudio(String),
    #[error("the file holds no audio track")]
    NoTrack,
    #[error("unsupported audio codec: {0}")]
    Unsupported(String),
    #[error("the file declares no sample rate")]
    NoSampleRate,
    #[error("the audio data is corrupt: {0}")]
    Corrupt(String),
    #[error("the file is truncated: {0}")]
    Truncated(String),
    #[error("the file holds no audio samples")]
    NoSamples,
    #[error("reading the upload failed: {0}")]
    Read(String),
}

/// Mono samples at `target_rate`, pulled chunk by chunk from an audio file.
pub struct Decoder {
    format: Box<dyn FormatReader>,
    decoder: Box<dyn AudioDecoder>,
    track: u32,
    source_rate: u32,
    target_rate: u32,
    /// Frames the container declares, when it does.
    declared_frames: Option<u64>,
    /// Frames decoded so far (at the source rate).
    decoded_frames: u64,
    /// Samples emitted so far (at the target rate).
    emitted: u64,
    resampler: Option<Resample>,
    interleaved: Vec<f32>,
    finished: bool,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("source_rate", &self.source_rate)
            .field("target_rate", &self.target_rate)
            .field("declared_frames", &self.declared_frames)
            .finish_non_exhaustive()
    }
}

/// A resampler with its input staging and the count of leading delay samples still to drop.
struct Resample {
    fft: Fft<f32>,
    input: Vec<f32>,
    output: Vec<f32>,
    skip: usize,
}

fn classify(e: SymError) -> AudioError {
    match e {
        SymError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            AudioError::Truncated("the data ends early".into())
        }
        SymError::IoError(e) => AudioError::Read(e.to_string()),
        SymError::DecodeError(m) => AudioError::Corrupt(m.to_string()),
        SymError::Unsupported(m) => AudioError::Unsupported(m.to_string()),
        other => AudioError::Corrupt(other.to_string()),
    }
}

impl Decoder {
    /// Probes the container and opens its first audio track. Errors here mean the header
    /// already shows the file cannot be decoded.
    pub fn open(source: Box<dyn MediaSource>, target_rate: u32) -> Result<Self, AudioError> {
        if source.byte_len() == Some(0) {
            return Err(AudioError::Empty);
        }
        let mss = MediaSourceStream::new(source, Default::default());
        let format = symphonia::default::get_probe()
            .probe(
                &Hint::new(),
                mss,
                FormatOptions::default(),
                MetadataOptions::default(),
            )
            .map_err(|e| match e {
                SymError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    AudioError::NotAudio("the file ends before a header".into())
                }
                SymError::IoError(e) => AudioError::Read(e.to_string()),
                other => AudioError::NotAudio(other.to_string()),
            })?;
        let track = format
            .default_track(TrackType::Audio)
            .ok_or(AudioError::NoTrack)?;
        let params = track
            .codec_params
            .as_ref()
            .and_then(|p| p.audio())
            .ok_or(AudioError::NoTrack)?
            .clone();
        let (track_id, declared_frames) = (track.id, track.num_frames);
        let source_rate = params.sample_rate.ok_or(AudioError::NoSampleRate)?;
        if source_rate == 0 {
            return Err(AudioError::NoSampleRate);
        }
        let decoder = symphonia::default::get_codecs()
            .make_audio_decoder(&params, &AudioDecoderOptions::default())
            .map_err(|e| AudioError::Unsupported(e.to_string()))?;
        let resampler = (source_rate != target_rate)
            .then(|| {
                let fft = Fft::<f32>::new(
                    source_rate as usize,
                    target_rate as usize,
                    CHUNK,
                    1,
                    FixedSync::Input,
                )
                .map_err(|e| {
                    AudioError::Unsupported(format!("resampling from {source_rate} Hz: {e}"))
                })?;
                let output = vec![0.0; fft.output_frames_max()];
                let skip = fft.output_delay();
                Ok::<_, AudioError>(Resample {
                    fft,
                    input: Vec::with_capacity(CHUNK),
                    output,
                    skip,
                })
            })
            .transpose()?;
        Ok(Self {
            format,
            decoder,
            track: track_id,
            source_rate,
            target_rate,
            declared_frames,
            decoded_frames: 0,
            emitted: 0,
            resampler,
            interleaved: Vec::new(),
            finished: false,
        })
    }

    /// Seconds of audio the container declares, when it does.
    pub fn declared_seconds(&self) -> Option<f64> {
        self.declared_frames
            .map(|f| f as f64 / f64::from(self.source_rate))
    }

    /// Samples the whole recording makes at the target rate, once decoding has ended.
    fn expected_output(&self) -> u64 {
        (self.decoded_frames as u128 * u128::from(self.target_rate))
            .div_ceil(u128::from(self.source_rate)) as u64
    }

    /// Seconds of audio decoded so far.
    pub fn decoded_seconds(&self) -> f64 {
        self.decoded_frames as f64 / f64::from(self.source_rate)
    }

    /// Appends the next mono samples at the target rate to `out`; `false` once the recording
    /// has ended (and everything was appended).
    pub fn next_chunk(&mut self, out: &mut Vec<f32>) -> Result<bool, AudioError> {
        if self.finished {
            return Ok(false);
        }
        let mut bad = 0;
        loop {
            let packet = match self.format.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    break;
                }
                Err(e) => return Err(classify(e)),
            };
            if packet.track_id != self.track {
                continue;
            }
            let decoded = match self.decoder.decode(&packet) {
                Ok(d) => d,
                Err(SymError::DecodeError(m)) => {
                    bad += 1;
                    if bad > MAX_BAD_PACKETS {
                        return Err(AudioError::Corrupt(m.to_string()));
                    }
                    continue;
                }
                Err(e) => return Err(classify(e)),
            };
            let channels = decoded.num_planes().max(1);
            let frames = decoded.frames();
            // Encoder delay and padding (MP3, Vorbis), in frames: the container's timebase is
            // the sample rate's.
            let skip = (packet.trim_start.get() as usize).min(frames);
            let keep = frames - skip - (packet.trim_end.get() as usize).min(frames - skip);
            if keep == 0 {
                continue;
            }
            decoded.copy_to_vec_interleaved(&mut self.interleaved);
            self.decoded_frames += keep as u64;
            let start = out.len();
            let kept = &self.interleaved[skip * channels..(skip + keep) * channels];
            let mono = kept.chunks_exact(channels).map(|f| {
                // The plain channel average, as silero-vad's read_audio mixes.
                f.iter().sum::<f32>() / channels as f32
            });
            match self.resampler.as_mut() {
                None => out.extend(mono),
                Some(r) => {
                    for s in mono {
                        r.input.push(s);
                        if r.input.len() == CHUNK {
                            r.process(out, None)?;
                        }
                    }
                }
            }
            self.emitted += (out.len() - start) as u64;
            return Ok(true);
        }
        self.finished = true;
        if let Some(declared) = self.declared_frames
            && self.decoded_frames < declared
            // MP3 and Vorbis frame counts can be off by a frame's worth of priming.
            && declared - self.decoded_frames > 4096
        {
            return Err(AudioError::Truncated(format!(
                "its header declares {:.3} s of audio, the data holds {:.3} s",
                declared as f64 / f64::from(self.source_rate),
                self.decoded_seconds()
            )));
        }
        if self.decoded_frames == 0 {
            return Err(AudioError::NoSamples);
        }
        let expected = self.expected_output();
        if let Some(mut r) = self.resampler.take() {
            let start = out.len();
            // The last partial chunk, then silence until the delayed tail is out.
            let partial = r.input.len();
            r.process(out, Some(partial))?;
            while self.emitted + ((out.len() - start) as u64) < expected {
                r.process(out, Some(0))?;
            }
            let have = self.emitted + (out.len() - start) as u64;
            out.truncate(out.len() - (have - expected) as usize);
            self.emitted = expected;
        }
        Ok(true)
    }
}

impl Resample {
    /// Resamples the staged input (`partial`: only that many frames are real, the rest
    /// silence) and appends the output, dropping the resampler's leading delay.
    fn process(&mut self, out: &mut Vec<f32>, partial: Option<usize>) -> Result<(), AudioError> {
        let needed = self.fft.input_frames_next();
        self.input.resize(needed, 0.0);
        let err = |e: &dyn std::fmt::Display| AudioError::Corrupt(format!("resampling: {e}"));
        let input = InterleavedSlice::new(&self.input, 1, needed).map_err(|e| err(&e))?;
        let frames_out = self.output.len();
        let mut output =
            InterleavedSlice::new_mut(&mut self.output, 1, frames_out).map_err(|e| err(&e))?;
        let indexing = partial.map(|p| Indexing::new().partial_len(p));
        let (_, written) = self
            .fft
            .process_into_buffer(&input, &mut output, indexing.as_ref())
            .map_err(|e| err(&e))?;
        let skip = self.skip.min(written);
        self.skip -= skip;
        out.extend_from_slice(&self.output[skip..written]);
        self.input.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A 16-bit PCM WAV file of `samples` per channel, interleaved.
    fn wav(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
        let data_len = (samples.len() * 2) as u32;
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(36 + data_len).to_le_bytes());
        v.extend_from_slice(b"WAVEfmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(rate * u32::from(channels) * 2).to_le_bytes());
        v.extend_from_slice(&(channels * 2).to_le_bytes());
        v.extend_from_slice(&16u16.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&data_len.to_le_bytes());
        for s in samples {
            v.extend_from_slice(&s.to_le_bytes());
        }
        v
    }

    fn decode_all(bytes: Vec<u8>, rate: u32) -> Result<Vec<f32>, AudioError> {
        let mut d = Decoder::open(Box::new(Cursor::new(bytes)), rate)?;
        let mut out = Vec::new();
        while d.next_chunk(&mut out)? {}
        Ok(out)
    }

    #[test]
    fn pcm16_mono_at_the_model_rate_is_passed_through_exactly() {
        let samples: Vec<i16> = (0..5000).map(|i| ((i * 37) % 2000 - 1000) as i16).collect();
        let out = decode_all(wav(16000, 1, &samples), 16000).unwrap();
        assert_eq!(out.len(), samples.len());
        for (a, b) in out.iter().zip(&samples) {
            assert_eq!(*a, f32::from(*b) / 32768.0);
        }
    }

    #[test]
    fn stereo_is_averaged_to_mono() {
        let samples: Vec<i16> = (0..2000).flat_map(|_| [1000i16, 3000]).collect();
        let out = decode_all(wav(16000, 2, &samples), 16000).unwrap();
        assert_eq!(out.len(), 2000);
        assert!(out.iter().all(|s| (*s - 2000.0 / 32768.0).abs() < 1e-7));
    }

    #[test]
    fn resampling_keeps_duration_and_a_tone() {
        // 1 s of 440 Hz at 44.1 kHz -> 16 kHz: 16000 samples, still a 440 Hz tone.
        let samples: Vec<i16> = (0..44100)
            .map(|i| {
                (10000.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 44100.0).sin()) as i16
            })
            .collect();
        let out = decode_all(wav(44100, 1, &samples), 16000).unwrap();
        assert_eq!(out.len(), 16000);
        // Compare the middle with the ideal tone at 16 kHz.
        let mut err = 0.0f64;
        for (i, s) in out.iter().enumerate().take(14000).skip(2000) {
            let ideal =
                10000.0 / 32768.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 16000.0).sin();
            err = err.max((f64::from(*s) - ideal).abs());
        }
        assert!(err < 0.01, "max error {err}");
    }

    #[test]
    fn bad_input_is_named() {
        assert!(matches!(
            decode_all(Vec::new(), 16000),
            Err(AudioError::Empty)
        ));
        assert!(matches!(
            decode_all(
                b"this is not audio at all, just some text".repeat(100),
                16000
            ),
            Err(AudioError::NotAudio(_))
        ));
        let mut truncated = wav(16000, 1, &vec![100i16; 48000]);
        truncated.truncate(20000);
        let e = decode_all(truncated, 16000).unwrap_err();
        assert!(matches!(e, AudioError::Truncated(_)), "{e}");
    }
}
