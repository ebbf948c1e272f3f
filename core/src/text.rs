//! Pieces of input text as messages show them. A scenario file or a bundle may hold a
//! megabyte where a name belongs, or escape sequences that would drive a terminal: every
//! message that repeats input repeats it through [`excerpt`].

/// The longest piece of a file's text (a value, a key) that an error repeats.
pub const EXCERPT_CHARS: usize = 80;
/// A piece of the file's text as an error shows it: at most [`EXCERPT_CHARS`]
/// characters (then `…`), control characters escaped so a hostile file cannot drive the
/// terminal.
pub fn excerpt(text: &str) -> String {
    cut(text, EXCERPT_CHARS)
}

/// At most `max` characters of `text` (then `…`), control characters escaped.
pub fn cut(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
