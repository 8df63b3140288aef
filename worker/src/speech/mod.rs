//! The `speech_segments` pipeline: a recording in, speech segments out, by Silero VAD.
//! [`pipeline`] plugs it into the consume loop as a kind of job and runs one recording;
//! [`vad`] is the model's windowing and the silero-vad package's segment rules (pure);
//! [`engine`] runs the next window of many recordings in one ONNX Runtime call, [`stream`]
//! being one recording's side of it; [`source`] reads an upload from Redis in slices
//! ([`fetch`] fills it first for a recording given by URL). Decoding and resampling live in
//! `inferq_shared::audio` (the API probes uploads with it).

mod engine;
mod fetch;
mod pipeline;
mod source;
mod stream;
mod vad;

pub(crate) use pipeline::SpeechJobs;
