use std::fmt;
use std::path::PathBuf;

/// A scenario file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    pub file: PathBuf,
    /// 1-based; 0 when the error concerns the whole file (unreadable, empty).
    pub line: usize,
    pub column: usize,
    /// Dotted path of the offending field (`fault.params.size`), empty for the document.
    pub field: String,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if self.field.is_empty() {
            write!(f, ": {}", self.message)
        } else {
            write!(f, ": field `{}`: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for ScenarioError {}

use crate::text::cut;
pub use crate::text::{excerpt, EXCERPT_CHARS};

/// The longest message an error carries; longer ones are cut.
const MESSAGE_CHARS: usize = 400;

impl ScenarioError {
    /// The error as shown: every quoted span (`` `x` `` or `"x"`) of the message cut to an
    /// excerpt, the whole message and each segment of the field bounded, control
    /// characters escaped. Applied to every error the scenario module returns, so a
    /// message built by serde or another module from a 10 MB key stays short.
    pub(super) fn bounded(mut self) -> Self {
        self.message = cut(&bound_quoted(&self.message), MESSAGE_CHARS);
        self.field = self
            .field
            .split('.')
            .map(excerpt)
            .collect::<Vec<_>>()
            .join(".");
        self
    }
}

fn bound_quoted(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(open) = rest.find(['`', '"']) {
        let quote = &rest[open..open + 1];
        out.push_str(&rest[..open + 1]);
        let after = &rest[open + 1..];
        match after.find(quote) {
            Some(close) => {
                out.push_str(&excerpt(&after[..close]));
                out.push_str(quote);
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&excerpt(after));
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_short_and_inert() {
        assert_eq!(excerpt("short"), "short");
        let long = "k".repeat(10_000);
        let e = excerpt(&long);
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
        assert_eq!(excerpt("a\u{1b}[31mb\n"), "a\\u{1b}[31mb\\n");
    }

    #[test]
    fn bounded_cuts_quoted_spans_field_and_message() {
        let huge = "x".repeat(1_000_000);
        let e = ScenarioError {
            file: PathBuf::from("s.yaml"),
            line: 1,
            column: 1,
            field: format!("fault.params.{huge}"),
            message: format!("unknown field `{huge}`, expected `a`; got \"{huge}\" and {huge}"),
        }
        .bounded();
        let shown = e.to_string();
        assert!(shown.len() < 1200, "{} bytes", shown.len());
        assert!(shown.contains("unknown field `xxxx"), "{shown}");
        assert!(shown.contains("…`, expected `a`"), "{shown}");
        assert!(e.field.starts_with("fault.params.xxx"));
    }
}
