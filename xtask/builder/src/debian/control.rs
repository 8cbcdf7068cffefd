//! deb822 control stanzas: `Packages` files, the body of `InRelease`,
//! `.sources` files.
//!
//! A stanza is a run of non-blank lines; a field starts with `Name:` at the
//! start of a line and continues over the following lines that start with a
//! space or a tab. Field names compare case-insensitively. Lines starting
//! with `#` are comments (allowed by apt's `.sources`; a field name may not
//! start with `#`, so this never hides a field of a `Packages` file).

use anyhow::{Result, bail};

/// One stanza, borrowing from the text it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stanza<'a> {
    /// The stanza's lines exactly as they appear (without the final newline).
    text: &'a str,
    /// `(name, value)` in order; a value spanning continuation lines keeps
    /// its inner newlines and leading blanks, trimmed at both ends.
    fields: Vec<(&'a str, &'a str)>,
}

impl<'a> Stanza<'a> {
    /// The value of field `name` (case-insensitive), trimmed. Multi-line
    /// values keep their inner line breaks: see [`Stanza::lines`].
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    /// The lines of field `name`, each trimmed, empty ones skipped (for
    /// multi-line fields like `SHA256:` of a release file).
    pub fn lines(&self, name: &str) -> impl Iterator<Item = &'a str> + use<'a> {
        self.get(name)
            .unwrap_or("")
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
    }

    /// The whole stanza as it appears in the source, without trailing newline.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// All fields in order, as `(name, value)`.
    pub fn fields(&self) -> &[(&'a str, &'a str)] {
        &self.fields
    }
}

/// Parses every stanza of `text`. Errors name the 1-based line; callers add
/// which file or URL the text came from.
pub fn parse(text: &str) -> Result<Vec<Stanza<'_>>> {
    let mut out = Vec::new();
    // Byte offsets of the current stanza and current field value.
    let mut stanza_start: Option<usize> = None;
    let mut stanza_end = 0usize;
    let mut fields: Vec<(&str, &str)> = Vec::new();
    let mut field: Option<(&str, usize, usize)> = None; // (name, value start, value end)

    let mut offset = 0usize;
    for (number, raw) in text.split_inclusive('\n').enumerate() {
        let start = offset;
        offset += raw.len();
        let line = raw.trim_end_matches(['\n', '\r']);
        let end = start + line.len();
        if line.trim().is_empty() {
            finish_field(text, &mut field, &mut fields);
            if let Some(s) = stanza_start.take() {
                out.push(Stanza {
                    text: &text[s..stanza_end],
                    fields: std::mem::take(&mut fields),
                });
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            match &mut field {
                Some((_, _, value_end)) => *value_end = end,
                None => bail!(
                    "line {}: continuation line outside a field: `{}`",
                    number + 1,
                    line.trim()
                ),
            }
        } else {
            finish_field(text, &mut field, &mut fields);
            let Some(colon) = line.find(':') else {
                bail!("line {}: not a `Field: value` line: `{line}`", number + 1);
            };
            let name = line[..colon].trim();
            if name.is_empty() || name.contains(char::is_whitespace) {
                bail!("line {}: bad field name in `{line}`", number + 1);
            }
            field = Some((name, start + colon + 1, end));
        }
        if stanza_start.is_none() {
            stanza_start = Some(start);
        }
        stanza_end = end;
    }
    finish_field(text, &mut field, &mut fields);
    if let Some(s) = stanza_start {
        out.push(Stanza {
            text: &text[s..stanza_end],
            fields,
        });
    }
    Ok(out)
}

fn finish_field<'a>(
    text: &'a str,
    field: &mut Option<(&'a str, usize, usize)>,
    fields: &mut Vec<(&'a str, &'a str)>,
) {
    if let Some((name, start, end)) = field.take() {
        fields.push((name, text[start..end].trim()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACKAGES: &str = "Package: bash\n\
Version: 5.2.37-2\n\
Essential: yes\n\
Pre-Depends: libc6 (>= 2.36),\n libtinfo6 (>= 6)\n\
Description: GNU Bourne Again SHell\n Bash is...\n .\n More.\n\
\n\
\n\
package: dash\n\
VERSION: 0.5.12-12\r\n\
Multi-Arch: foreign\n";

    #[test]
    fn stanzas_fields_and_continuations() {
        let st = parse(PACKAGES).unwrap();
        assert_eq!(st.len(), 2);
        assert_eq!(st[0].get("package"), Some("bash"));
        assert_eq!(st[0].get("ESSENTIAL"), Some("yes"));
        assert_eq!(
            st[0].get("Pre-Depends"),
            Some("libc6 (>= 2.36),\n libtinfo6 (>= 6)")
        );
        assert_eq!(
            st[0].lines("description").collect::<Vec<_>>(),
            ["GNU Bourne Again SHell", "Bash is...", ".", "More."]
        );
        assert!(st[0].text().starts_with("Package: bash\n"));
        assert!(st[0].text().ends_with(" More."));
        assert_eq!(st[1].get("Package"), Some("dash"));
        assert_eq!(st[1].get("version"), Some("0.5.12-12"));
        assert_eq!(st[1].get("Depends"), None);
        assert_eq!(st[1].fields().len(), 3);
    }

    #[test]
    fn release_style_multiline_field() {
        let text = "Date: Sat, 01 Nov 2025 10:00:00 UTC\nSHA256:\n aa 12 main/x\n bb 34 main/y\n";
        let st = parse(text).unwrap();
        assert_eq!(st.len(), 1);
        assert_eq!(
            st[0].lines("sha256").collect::<Vec<_>>(),
            ["aa 12 main/x", "bb 34 main/y"]
        );
    }

    #[test]
    fn comments_are_skipped() {
        let text = "# leading\nTypes: deb\n# inside\nURIs: http://mirror.example/debian\n";
        let st = parse(text).unwrap();
        assert_eq!(st[0].get("uris"), Some("http://mirror.example/debian"));
        assert_eq!(st[0].fields().len(), 2);
    }

    #[test]
    fn malformed_lines_are_errors() {
        let err = parse("Package: a\nnonsense\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        let err = parse(" leading continuation\n").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn empty_text_has_no_stanzas() {
        assert!(parse("").unwrap().is_empty());
        assert!(parse("\n\n  \n").unwrap().is_empty());
    }
}
