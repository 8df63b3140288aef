//! The model's tokenizer: Hugging Face's `tokenizers` over the model's `tokenizer.json`, with
//! the file's own truncation and fixed padding replaced: each text is cut at
//! [`MAX_TOKENS`] tokens and left unpadded (a run pads to its longest text).

use std::path::Path;

use inferq_shared::embedding::MAX_TOKENS;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

/// One text as the model reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tokens {
    pub(crate) ids: Vec<u32>,
    pub(crate) type_ids: Vec<u32>,
    /// The text was longer than [`MAX_TOKENS`] and was cut there.
    pub(crate) truncated: bool,
}

/// A tokenizer set up for the pipeline; cloned once per engine thread.
#[derive(Clone)]
pub(crate) struct TextTokenizer(Tokenizer);

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TextTokenizer")
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json` (offline: the file is all it reads).
    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let mut tokenizer = Tokenizer::from_file(path)
            .map_err(|e| anyhow::anyhow!("loading the tokenizer {}: {e}", path.display()))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| anyhow::anyhow!("setting the tokenizer's truncation: {e}"))?;
        tokenizer.with_padding(None);
        Ok(Self(tokenizer))
    }

    /// The tokens of one text, `[CLS]` and `[SEP]` included. A text the tokenizer cannot
    /// read becomes an error message for its job.
    pub(crate) fn encode(&self, text: &str) -> Result<Tokens, String> {
        let enc = self
            .0
            .encode_fast(text, true)
            .map_err(|e| format!("tokenizing a text: {e}"))?;
        Ok(Tokens {
            ids: enc.get_ids().to_vec(),
            type_ids: enc.get_type_ids().to_vec(),
            truncated: !enc.get_overflowing().is_empty(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> TextTokenizer {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/all-MiniLM-L6-v2");
        TextTokenizer::load(&dir.join("tokenizer.json")).unwrap()
    }

    #[test]
    fn texts_are_cut_at_256_tokens_and_never_padded() {
        let t = tokenizer();
        let short = t.encode("The weather is lovely today.").unwrap();
        // [CLS] the weather is lovely today . [SEP]
        assert_eq!(short.ids.len(), 8);
        assert_eq!((short.ids[0], *short.ids.last().unwrap()), (101, 102));
        assert!(!short.truncated);
        let long = t.encode(&"word ".repeat(300)).unwrap();
        assert_eq!(long.ids.len(), MAX_TOKENS);
        assert_eq!(*long.ids.last().unwrap(), 102);
        assert!(long.truncated);
        let exact = t.encode(&"word ".repeat(MAX_TOKENS - 2)).unwrap();
        assert_eq!(exact.ids.len(), MAX_TOKENS);
        assert!(!exact.truncated);
    }
}
