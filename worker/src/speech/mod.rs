//! The `speech_segments` pipeline: a recording in, speech segments out, by Silero VAD.
//! [`vad`] is the model's windowing and the silero-vad package's segment rules (pure),
//! [`engine`] runs the next window of many recordings in one ONNX Runtime call, [`source`]
//! reads an upload from Redis in slices ([`fetch`] fills it first for a recording given by
//! URL), [`run`] is the pipeline's read loop and job life.
//! Decoding and resampling live in `inferq_shared::audio` (the API probes uploads with it).

pub(crate) mod engine;
pub(crate) mod fetch;
pub(crate) mod run;
pub(crate) mod source;
pub(crate) mod vad;
