//! Rows to token ids exactly as trl's `SFTTrainer` prepares a dataset (trl 1.16):
//!
//! - **Text rows** (language modeling): the tokenizer's EOS text is appended unless the text
//!   already ends with it, then the text is tokenized *with* special tokens (`tokenizer(text)`).
//!   Every token is learned. A Llama-2 tokenizer adds BOS even when the text starts with `<s>`
//!   (the `guanaco-llama2-1k` rows), giving two BOS tokens, exactly as trl does.
//! - **Prompt/completion rows** (Alpaca and messages, rendered through a chat template): as
//!   trl's conversational prompt-completion rows, the prompt and the whole text are tokenized
//!   *without* special tokens (the template writes them; `apply_chat_template` does the same)
//!   and no EOS is appended. The completion starts where the two token lists diverge (trl's
//!   `common_prefix_length`); with completion-only loss the tokens before it are not learned.
//! - **Whole conversations** (messages rows without completion-only loss, trl's default for a
//!   `messages` dataset): the rendered conversation is tokenized without special tokens and
//!   every token is learned, as `apply_chat_template(messages, tokenize=True)` in trl.
//! - **Truncation** keeps the first `max_seq_length` tokens (trl's `keep_start`); a row left with
//!   nothing to learn is dropped, as trl drops it.

use llama_model::Tokenizer;
use prompt_templates::PromptCompletion;

use super::report::SkipReason;
use super::shape::Problem;

/// One tokenized training example (or, after packing, several sequences in one block).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Example {
    /// Token ids.
    pub input_ids: Vec<u32>,
    /// Which tokens are learned (`false`: label -100), one per id.
    pub loss_mask: Vec<bool>,
    /// For a block made by BFD packing, the lengths of the sequences in it (they sum to the
    /// block's length); empty for an ordinary example. See [`crate::data::collate`].
    pub seq_lengths: Vec<usize>,
}

impl Example {
    /// An example whose every token is learned.
    pub fn all_learned(input_ids: Vec<u32>) -> Self {
        let loss_mask = vec![true; input_ids.len()];
        Self { input_ids, loss_mask, seq_lengths: Vec::new() }
    }

    /// Its length in tokens.
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    /// Whether it has no tokens.
    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }

    /// How many tokens are learned.
    pub fn num_loss_tokens(&self) -> usize {
        self.loss_mask.iter().filter(|m| **m).count()
    }

    /// Keeps the first `max_len` tokens; returns whether anything was cut.
    pub fn truncate(&mut self, max_len: usize) -> bool {
        let cut = self.input_ids.len() > max_len;
        self.input_ids.truncate(max_len);
        self.loss_mask.truncate(max_len);
        cut
    }
}

/// Turns checked, templated rows into examples.
pub(crate) struct Encoder<'a> {
    tokenizer: &'a Tokenizer,
    eos_text: String,
    /// Prepend BOS to text rows when the tokenizer does not add it itself.
    prepend_bos: Option<u32>,
    completion_only_loss: bool,
}

impl<'a> Encoder<'a> {
    /// An encoder; `add_bos` asks for HF's Llama behaviour (`add_bos_token: true`).
    pub(crate) fn new(tokenizer: &'a Tokenizer, eos_text: String, add_bos: bool, completion_only_loss: bool) -> Self {
        let prepend_bos = if add_bos && !tokenizer.adds_bos { tokenizer.bos_id } else { None };
        Self { tokenizer, eos_text, prepend_bos, completion_only_loss }
    }

    /// A language-modeling text row.
    pub(crate) fn text(&self, text: &str) -> Result<Example, Problem> {
        let ids =
            if text.ends_with(&self.eos_text) { self.encode(text, true)? } else { self.encode(&format!("{text}{}", self.eos_text), true)? };
        let ids = match self.prepend_bos {
            Some(bos) => std::iter::once(bos).chain(ids).collect(),
            None => ids,
        };
        Ok(Example::all_learned(ids))
    }

    /// A rendered prompt/completion pair.
    pub(crate) fn pair(&self, pair: &PromptCompletion) -> Result<Example, Problem> {
        let prompt = self.encode(&pair.prompt, false)?;
        let input_ids = self.encode(&pair.text(), false)?;
        let prompt_len = common_prefix_length(&prompt, &input_ids);
        let loss_mask = (0..input_ids.len()).map(|i| i >= prompt_len || !self.completion_only_loss).collect();
        Ok(Example { input_ids, loss_mask, seq_lengths: Vec::new() })
    }

    /// A whole rendered conversation, every token learned.
    pub(crate) fn conversation(&self, text: &str) -> Result<Example, Problem> {
        Ok(Example::all_learned(self.encode(text, false)?))
    }

    /// Whether prompts are masked.
    pub(crate) fn completion_only_loss(&self) -> bool {
        self.completion_only_loss
    }

    fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>, Problem> {
        self.tokenizer.encode(text, add_special).map_err(|e| (SkipReason::Tokenizer, e.to_string()))
    }
}

/// How many leading tokens two lists share.
pub(crate) fn common_prefix_length(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_the_start() {
        let mut example = Example { input_ids: vec![1, 2, 3, 4], loss_mask: vec![false, true, true, true], seq_lengths: vec![] };
        assert!(!example.clone().truncate(4));
        assert!(example.truncate(2));
        assert_eq!(example.input_ids, vec![1, 2]);
        assert_eq!(example.loss_mask, vec![false, true]);
        assert_eq!(example.num_loss_tokens(), 1);
    }

    #[test]
    fn prefix_length() {
        assert_eq!(common_prefix_length(&[1, 2, 3], &[1, 2, 4, 5]), 2);
        assert_eq!(common_prefix_length(&[1, 2], &[1, 2, 3]), 2);
        assert_eq!(common_prefix_length(&[], &[1]), 0);
    }
}
