//! Errors that point at a file, a line and column, a field and a fix.

use std::fmt;

/// A problem with a spec or lock file, located precisely enough to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The file the text came from, as given by the caller.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// Dotted path of the offending field (`node.version`), when known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: String,
}

impl SpecError {
    /// An error at a byte span of `text`.
    pub fn at(
        file: &str,
        text: &str,
        span: Option<std::ops::Range<usize>>,
        field: Option<&str>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        let (line, column) = match span {
            Some(span) => {
                let (l, c) = locate(text, span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        SpecError {
            file: file.to_string(),
            line,
            column,
            field: field.map(str::to_string),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// 1-based (line, column) of byte `offset` in `text`.
pub fn locate(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(before.chars().count(), |nl| {
        before[nl + 1..].chars().count()
    }) + 1;
    (line, column)
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ": ")?;
        if let Some(field) = &self.field {
            write!(f, "field `{field}`: ")?;
        }
        write!(f, "{}", self.message)?;
        if !self.fix.is_empty() {
            write!(f, "\n  fix: {}", self.fix)?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}
