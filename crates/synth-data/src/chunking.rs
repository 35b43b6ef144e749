//! Token-based chunking mapped back to the original text.
//!
//! The text is tokenized once (no special tokens, no truncation, no padding). Token windows
//! `[s, s + size)` start every `step = size − overlap` tokens; the last window ends at the last
//! token. Window `k` covers the bytes
//!
//! ```text
//! start_k = 0                        for k = 0,   else offset_start(s_k)
//! end_k   = text.len()               for the last, else offset_start(s_k + size)
//! ```
//!
//! so the whitespace between two tokens belongs to the chunk before it, consecutive chunks
//! share exactly `overlap` tokens, and the union of the chunks is the whole text.

use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::{Error, Result};

/// A span of a text: `text == source[start..end]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// Position of the chunk in its document, from 0.
    pub index: usize,
    /// Byte offset of the first byte in the source text.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
    /// Index of the first token of the window.
    pub token_start: usize,
    /// One past the last token of the window (`token_end − token_start ≤ chunk_size`).
    pub token_end: usize,
    /// The covered text.
    pub text: String,
}

impl Chunk {
    /// Number of tokens in the window.
    pub fn token_count(&self) -> usize {
        self.token_end - self.token_start
    }
}

/// Splits texts into windows of at most `chunk_size` tokens that overlap by `chunk_overlap`.
#[derive(Debug, Clone)]
pub struct TokenChunker {
    tokenizer: Tokenizer,
    chunk_size: usize,
    chunk_overlap: usize,
}

impl TokenChunker {
    /// A chunker over a copy of `tokenizer` with truncation and padding turned off.
    ///
    /// # Errors
    /// [`Error::Config`] unless `0 ≤ chunk_overlap < chunk_size`; [`Error::Tokenizer`] when
    /// truncation cannot be turned off.
    pub fn new(tokenizer: &Tokenizer, chunk_size: usize, chunk_overlap: usize) -> Result<Self> {
        if chunk_size == 0 {
            return Err(Error::Config("chunk_size must be at least 1".into()));
        }
        if chunk_overlap >= chunk_size {
            return Err(Error::Config(format!("chunk_overlap ({chunk_overlap}) must be less than chunk_size ({chunk_size})")));
        }
        let mut tokenizer = tokenizer.clone();
        tokenizer.with_truncation(None).map_err(|e| Error::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None);
        Ok(Self { tokenizer, chunk_size, chunk_overlap })
    }

    /// Tokens per chunk at most.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    /// Tokens shared by consecutive chunks.
    pub fn chunk_overlap(&self) -> usize {
        self.chunk_overlap
    }

    /// Byte offsets where each token starts, nondecreasing and on char boundaries.
    fn token_starts(&self, text: &str) -> Result<Vec<usize>> {
        let encoding = self.tokenizer.encode(text, false).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut starts = Vec::with_capacity(encoding.len());
        let mut last = 0;
        for &(start, _) in encoding.get_offsets() {
            let mut s = start.min(text.len());
            while !text.is_char_boundary(s) {
                s -= 1;
            }
            last = last.max(s);
            starts.push(last);
        }
        Ok(starts)
    }

    /// Number of tokens in `text` (no special tokens).
    ///
    /// # Errors
    /// [`Error::Tokenizer`].
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        Ok(self.token_starts(text)?.len())
    }

    /// Splits `text` into chunks (none for an empty text; one token-less chunk for a non-empty
    /// text that yields no tokens, so that nothing is lost).
    ///
    /// # Errors
    /// [`Error::Tokenizer`].
    pub fn chunk(&self, text: &str) -> Result<Vec<Chunk>> {
        if text.is_empty() {
            return Ok(Vec::new());
        }
        let starts = self.token_starts(text)?;
        let n = starts.len();
        if n == 0 {
            return Ok(vec![Chunk { index: 0, start: 0, end: text.len(), token_start: 0, token_end: 0, text: text.into() }]);
        }
        let step = self.chunk_size - self.chunk_overlap;
        let mut chunks = Vec::with_capacity(n.div_ceil(step));
        let mut s = 0;
        loop {
            let e = (s + self.chunk_size).min(n);
            let start = if s == 0 { 0 } else { starts[s] };
            let end = if e == n { text.len() } else { starts[e] };
            chunks.push(Chunk { index: chunks.len(), start, end, token_start: s, token_end: e, text: text[start..end].to_string() });
            if e == n {
                break;
            }
            s += step;
        }
        Ok(chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use tokenizers::models::wordlevel::WordLevel;
    use tokenizers::pre_tokenizers::whitespace::Whitespace;

    /// Words and punctuation runs as tokens (all unknown), with true offsets.
    fn word_tokenizer() -> Tokenizer {
        let vocab: HashMap<String, u32> = [("[UNK]".to_string(), 0)].into_iter().collect();
        let model = WordLevel::builder().vocab(vocab.into_iter().collect()).unk_token("[UNK]".into()).build().expect("model");
        let mut tok = Tokenizer::new(model);
        tok.with_pre_tokenizer(Some(Whitespace {}));
        tok
    }

    fn check_invariants(text: &str, chunks: &[Chunk], size: usize, overlap: usize) -> std::result::Result<(), TestCaseError> {
        if text.is_empty() {
            prop_assert!(chunks.is_empty());
            return Ok(());
        }
        prop_assert!(!chunks.is_empty());
        prop_assert_eq!(chunks[0].start, 0);
        prop_assert_eq!(chunks[chunks.len() - 1].end, text.len());
        for (i, c) in chunks.iter().enumerate() {
            prop_assert_eq!(c.index, i);
            prop_assert!(c.start <= c.end);
            prop_assert_eq!(&c.text, &text[c.start..c.end]);
            prop_assert!(c.token_count() <= size);
        }
        for pair in chunks.windows(2) {
            // Coverage: the next chunk starts no later than this one ends.
            prop_assert!(pair[1].start <= pair[0].end);
            prop_assert!(pair[1].start >= pair[0].start);
            // Overlap: exactly `overlap` shared tokens; non-final chunks are full.
            prop_assert_eq!(pair[0].token_count(), size);
            prop_assert_eq!(pair[1].token_start, pair[0].token_end - overlap);
        }
        Ok(())
    }

    #[test]
    fn small_example_by_hand() {
        let chunker = TokenChunker::new(&word_tokenizer(), 3, 1).expect("chunker");
        let text = "  one two, three four five";
        let chunks = chunker.chunk(text).expect("chunks");
        // Tokens: one | two | , | three | four | five
        let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, vec!["  one two, ", ", three four ", "four five"]);
        assert_eq!(chunks[1].token_start, 2);
    }

    #[test]
    fn overlap_must_be_below_size() {
        let err = TokenChunker::new(&word_tokenizer(), 4, 4).expect_err("overlap = size");
        assert!(err.to_string().contains("chunk_overlap"), "{err}");
        assert!(TokenChunker::new(&word_tokenizer(), 0, 0).is_err());
    }

    proptest! {
        #[test]
        fn chunks_cover_overlap_and_bound(
            text in "[a-zA-Zé日 ,.!\\n]{0,300}",
            size in 1usize..12,
            overlap_frac in 0.0f64..1.0,
        ) {
            let overlap = ((size as f64) * overlap_frac) as usize;
            let overlap = overlap.min(size - 1);
            let chunker = TokenChunker::new(&word_tokenizer(), size, overlap).expect("chunker");
            let chunks = chunker.chunk(&text).expect("chunk");
            check_invariants(&text, &chunks, size, overlap)?;
        }
    }

    /// The MiniLM WordPiece tokenizer (lowercasing, accent-aware normalizer) and the SmolLM2
    /// byte-level BPE, loaded once.
    fn real_tokenizers() -> &'static [Tokenizer] {
        static TOKENIZERS: std::sync::OnceLock<Vec<Tokenizer>> = std::sync::OnceLock::new();
        TOKENIZERS.get_or_init(|| {
            let minilm = format!("{}/tokenizer.json", assets::known::MINILM_DIR);
            [minilm.as_str(), assets::known::SMOLLM2_TOKENIZER]
                .iter()
                .map(|rel| {
                    let path = assets::require(rel).unwrap_or_else(|e| panic!("{e}"));
                    Tokenizer::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn real_tokenizers_keep_the_invariants(
            text in "\\PC{0,200}",
            size in 1usize..40,
            overlap_frac in 0.0f64..1.0,
        ) {
            let overlap = (((size as f64) * overlap_frac) as usize).min(size - 1);
            for tokenizer in real_tokenizers() {
                let chunker = TokenChunker::new(tokenizer, size, overlap).expect("chunker");
                let chunks = chunker.chunk(&text).expect("chunk");
                check_invariants(&text, &chunks, size, overlap)?;
            }
        }
    }
}
