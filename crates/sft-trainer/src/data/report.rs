//! What the loader did with rows it could not use as they are: per-reason counts, the number of
//! truncated rows, and the first few offending rows with their file and index.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

/// How many example rows a [`SkipReport`] keeps (the counts cover every row).
pub const MAX_EXAMPLES: usize = 10;

/// Why a row was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The row lacks a field its shape needs (or the field is null).
    MissingField,
    /// The field is present but empty (or only whitespace).
    Empty,
    /// Text bytes are not valid UTF-8 (parquet `binary` columns).
    NotUtf8,
    /// The field has the wrong type (e.g. a number where text is expected).
    WrongType,
    /// A JSONL line is not valid JSON.
    BadJson,
    /// The chat template cannot render the row (e.g. messages that do not end with the
    /// assistant's answer).
    Template,
    /// The tokenizer failed on the row's text.
    Tokenizer,
    /// After truncation to `max_seq_length` no token is left to learn from (the prompt alone
    /// fills the window); trl drops these rows too.
    NoLossTokens,
}

impl SkipReason {
    /// A short snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingField => "missing_field",
            Self::Empty => "empty",
            Self::NotUtf8 => "not_utf8",
            Self::WrongType => "wrong_type",
            Self::BadJson => "bad_json",
            Self::Template => "template",
            Self::Tokenizer => "tokenizer",
            Self::NoLossTokens => "no_loss_tokens",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row the loader could not use as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowIssue {
    /// The file the row is in.
    pub file: PathBuf,
    /// The row's 0-based index in its file.
    pub row: usize,
    /// The 1-based line number, for JSONL files.
    pub line: Option<usize>,
    /// The reason.
    pub reason: SkipReason,
    /// Details (the field, the types, the parser's message).
    pub detail: String,
}

impl fmt::Display for RowIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: row {}", self.file.display(), self.row)?;
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        write!(f, ": {}: {}", self.reason, self.detail)
    }
}

/// A row that was truncated to `max_seq_length`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Truncation {
    /// The file the row is in.
    pub file: PathBuf,
    /// The row's 0-based index in its file.
    pub row: usize,
    /// Its length in tokens before truncation.
    pub tokens: usize,
}

/// What the loader skipped or truncated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SkipReport {
    /// Rows read from the files (after `max_rows`).
    pub rows_read: usize,
    /// Rows that became examples.
    pub rows_kept: usize,
    /// Skipped rows per reason.
    pub skipped: BTreeMap<SkipReason, usize>,
    /// The first [`MAX_EXAMPLES`] skipped rows.
    pub examples: Vec<RowIssue>,
    /// Rows longer than `max_seq_length` (truncated, not skipped).
    pub truncated: usize,
    /// The first [`MAX_EXAMPLES`] truncated rows.
    pub truncated_examples: Vec<Truncation>,
}

impl SkipReport {
    /// Counts a skipped row (keeping it as an example while there are few).
    pub fn skip(&mut self, issue: RowIssue) {
        *self.skipped.entry(issue.reason).or_default() += 1;
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(issue);
        }
    }

    /// Counts a truncated row.
    pub fn truncate(&mut self, truncation: Truncation) {
        self.truncated += 1;
        if self.truncated_examples.len() < MAX_EXAMPLES {
            self.truncated_examples.push(truncation);
        }
    }

    /// All skipped rows.
    pub fn total_skipped(&self) -> usize {
        self.skipped.values().sum()
    }

    /// Adds another report's counts and examples (e.g. the eval source's).
    pub fn merge(&mut self, other: SkipReport) {
        self.rows_read += other.rows_read;
        self.rows_kept += other.rows_kept;
        for (reason, n) in other.skipped {
            *self.skipped.entry(reason).or_default() += n;
        }
        let room = MAX_EXAMPLES.saturating_sub(self.examples.len());
        self.examples.extend(other.examples.into_iter().take(room));
        self.truncated += other.truncated;
        let room = MAX_EXAMPLES.saturating_sub(self.truncated_examples.len());
        self.truncated_examples.extend(other.truncated_examples.into_iter().take(room));
    }
}

impl fmt::Display for SkipReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} row(s) read, {} kept", self.rows_read, self.rows_kept)?;
        if !self.skipped.is_empty() {
            let counts: Vec<String> = self.skipped.iter().map(|(r, n)| format!("{r}: {n}")).collect();
            write!(f, ", skipped {}", counts.join(", "))?;
        }
        if self.truncated > 0 {
            write!(f, ", {} truncated to max_seq_length", self.truncated)?;
        }
        for issue in &self.examples {
            write!(f, "; {issue}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(row: usize, reason: SkipReason) -> RowIssue {
        RowIssue { file: "a.jsonl".into(), row, line: Some(row + 1), reason, detail: "d".into() }
    }

    #[test]
    fn counts_every_row_but_keeps_few_examples() {
        let mut report = SkipReport::default();
        for row in 0..(MAX_EXAMPLES + 5) {
            report.skip(issue(row, if row % 2 == 0 { SkipReason::Empty } else { SkipReason::BadJson }));
        }
        assert_eq!(report.total_skipped(), MAX_EXAMPLES + 5);
        assert_eq!(report.skipped[&SkipReason::Empty], 8);
        assert_eq!(report.skipped[&SkipReason::BadJson], 7);
        assert_eq!(report.examples.len(), MAX_EXAMPLES);
        assert_eq!(issue(3, SkipReason::BadJson).to_string(), "a.jsonl: row 3 (line 4): bad_json: d");
    }

    #[test]
    fn merge_adds_counts() {
        let mut a = SkipReport { rows_read: 3, rows_kept: 2, ..SkipReport::default() };
        a.skip(issue(0, SkipReason::Empty));
        let mut b = SkipReport { rows_read: 4, rows_kept: 4, ..SkipReport::default() };
        b.skip(issue(1, SkipReason::Empty));
        b.truncate(Truncation { file: "b".into(), row: 2, tokens: 9 });
        a.merge(b);
        assert_eq!((a.rows_read, a.rows_kept, a.truncated), (7, 6, 1));
        assert_eq!(a.skipped[&SkipReason::Empty], 2);
        assert_eq!(a.examples.len(), 2);
        assert!(a.to_string().contains("1 truncated"), "{a}");
    }
}
