#!/usr/bin/env bash
# Generates the speech pipeline's audio fixtures into tests/audio/ (git-ignored), idempotently:
# a spoken recording made with espeak-ng and sox (Debian packages, installed by
# scripts/setup.sh), the same recording in every format the pipeline decodes, broken files,
# and the reference segments of the 16 kHz WAV computed by scripts/speech_reference.py (the
# silero-vad package's algorithm on onnxruntime, from .venv-test).
#   speech.wav            16 kHz mono 16-bit PCM, about 17 s: sentences with pauses
#   speech.ref.json       its reference segments
#   speech_8k.wav (+ .ref.json with sampling_rate 8000)
#   speech_44k_stereo.wav, speech_u8.wav, speech_s24.wav, speech_s32.wav, speech_f32.wav,
#   speech_f64.wav, speech.flac, speech.mp3, speech.ogg
#   long.flac             10 minutes (the speech repeated), for progress, cancel and kill tests
#   hour.flac             60 minutes, for the worker's memory bound
#   not_audio.wav, truncated.wav, empty.wav, adpcm.wav (a codec the pipeline does not decode)
# With --bench: also bench-10min.wav (16 kHz mono, 10 minutes) for inferq-bench --speech.
# Usage: scripts/gen_audio_fixtures.sh [--bench]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="tests/audio"
PY=".venv-test/bin/python"
mkdir -p "$OUT"
log() { echo "[audio-fixtures] $*"; }
# The recipe's version: bump it to regenerate everything.
VERSION=2
if [ -f "$OUT/.version" ] && [ "$(cat "$OUT/.version")" = "$VERSION" ] && [ -f "$OUT/speech.ref.json" ] \
   && { [ "${1:-}" != "--bench" ] || [ -f "$OUT/bench-10min.wav" ]; }; then
  log "present in $OUT"
  exit 0
fi
command -v espeak-ng >/dev/null && command -v sox >/dev/null ||
  { echo "espeak-ng and sox are needed (scripts/setup.sh installs them)" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
sentences=(
  "Hello, and welcome to the speech segments pipeline."
  "A file comes in, it is decoded and resampled, and a model runs over it window after window."
  "The quick brown fox jumps over the lazy dog."
  "Meanwhile the user watches a progress bar."
)
parts=()
i=0
for s in "${sentences[@]}"; do
  espeak-ng -v en -s 150 -w "$tmp/s$i.wav" "$s"
  # 16 kHz mono 16-bit, with silence around (lengths vary so pauses differ).
  sox "$tmp/s$i.wav" -r 16000 -c 1 -b 16 "$tmp/p$i.wav" pad "0.$((6 + i))" "1.$((2 * i))"
  parts+=("$tmp/p$i.wav")
  i=$((i + 1))
done
sox "${parts[@]}" "$OUT/speech.wav"
sox "$OUT/speech.wav" -r 8000 "$OUT/speech_8k.wav"
sox "$OUT/speech.wav" -r 44100 -c 2 "$OUT/speech_44k_stereo.wav"
sox "$OUT/speech.wav" -b 8 -e unsigned-integer "$OUT/speech_u8.wav"
sox "$OUT/speech.wav" -b 24 "$OUT/speech_s24.wav"
sox "$OUT/speech.wav" -b 32 -e signed-integer "$OUT/speech_s32.wav"
sox "$OUT/speech.wav" -b 32 -e floating-point "$OUT/speech_f32.wav"
sox "$OUT/speech.wav" -b 64 -e floating-point "$OUT/speech_f64.wav"
sox "$OUT/speech.wav" "$OUT/speech.flac"
sox "$OUT/speech.wav" -C 64 "$OUT/speech.mp3"
sox "$OUT/speech.wav" "$OUT/speech.ogg"
sox "$OUT/speech.wav" -e ima-adpcm "$OUT/adpcm.wav"
secs="$(soxi -D "$OUT/speech.wav")"
reps="$(python3 -c "import math; print(math.ceil(600 / $secs) - 1)")"
sox "$OUT/speech.wav" "$tmp/long.wav" repeat "$reps" trim 0 600
sox "$tmp/long.wav" "$OUT/long.flac"
sox "$tmp/long.wav" "$OUT/hour.flac" repeat 5
printf 'this is a text file, not a recording\n%.0s' {1..50} > "$OUT/not_audio.wav"
head -c "$(( $(stat -c %s "$OUT/speech.wav") / 2 ))" "$OUT/speech.wav" > "$OUT/truncated.wav"
: > "$OUT/empty.wav"
if [ "${1:-}" = "--bench" ]; then
  cp "$tmp/long.wav" "$OUT/bench-10min.wav"
fi
"$PY" scripts/speech_reference.py "$OUT/speech.wav" > "$OUT/speech.ref.json"
"$PY" scripts/speech_reference.py "$OUT/speech_8k.wav" > "$OUT/speech_8k.ref.json"
echo "$VERSION" > "$OUT/.version"
log "generated in $OUT: $(cat "$OUT/speech.ref.json")"
