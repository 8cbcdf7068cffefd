//! Errors that point at a file, a line and column, a field and a fix.

use std::fmt;

/// A problem with a spec or lock file, located precisely enough to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The file the text came from, as given by the caller.
    pub file: String,
    /// 1-based line and column, when known.
    pub location: Option<(u32, u32)>,
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
        let location = span.map(|span| {
            let (l, c) = locate(text, span.start);
            (
                u32::try_from(l).unwrap_or(u32::MAX),
                u32::try_from(c).unwrap_or(u32::MAX),
            )
        });
        SpecError {
            file: file.to_string(),
            location,
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
        if let Some((line, column)) = self.location {
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
