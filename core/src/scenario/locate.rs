//! Finds where a dotted field path sits in a YAML text, so that errors found after
//! deserialization (stage two) still point at a line and column.
//!
//! serde_yaml keeps no positions once a value is built; re-scanning the text for the
//! keys is enough for scenario files, which are plain block mappings.

/// Returns the 1-based (line, column) of the deepest key of `path` found in `source`.
/// Falls back to the deepest ancestor found, then to (1, 1).
pub fn locate(source: &str, path: &[&str]) -> (usize, usize) {
    let mut best = (1, 1);
    let mut parent_indent: Option<usize> = None;
    let mut start = 0;
    let lines: Vec<&str> = source.lines().collect();
    'segments: for segment in path {
        for (idx, line) in lines.iter().enumerate().skip(start) {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let indent = line.len() - trimmed.len();
            if let Some(parent) = parent_indent {
                // Left the parent's block without finding the key.
                if indent <= parent && idx > start {
                    break 'segments;
                }
            }
            let key = trimmed.trim_start_matches("- ");
            if let Some(rest) = key.strip_prefix(segment) {
                if rest.starts_with(':') {
                    best = (idx + 1, indent + 1 + (trimmed.len() - key.len()));
                    parent_indent = Some(indent);
                    start = idx + 1;
                    continue 'segments;
                }
            }
        }
        break;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::locate;

    const DOC: &str =
        "id: x\nfault:\n  kind: fill-disk\n  params:\n    size: 64Q\nobserve:\n  for: 10s\n";

    #[test]
    fn finds_nested_keys() {
        assert_eq!(locate(DOC, &["fault", "params", "size"]), (5, 5));
        assert_eq!(locate(DOC, &["observe", "for"]), (7, 3));
        assert_eq!(locate(DOC, &["id"]), (1, 1));
    }

    #[test]
    fn missing_key_falls_back_to_parent() {
        assert_eq!(locate(DOC, &["fault", "nope"]), (2, 1));
        // `for` exists, but not under `fault`: must not be found there.
        assert_eq!(locate(DOC, &["fault", "for"]), (2, 1));
    }
}
