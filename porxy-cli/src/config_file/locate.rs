//! Turning byte offsets into what a person reads: `line:column` and the dotted key path.
//!
//! toml's errors carry a byte span but keep their key path private, so the path is found
//! here by re-reading the document with spans and taking the deepest key or value that covers
//! the offset. Values that porxy validates itself already know their path.

use std::ops::Range;

use toml::de::DeTable;

/// The 1-based line and column (in characters) of byte `offset` in `text`.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let bytes = &text.as_bytes()[..offset.min(text.len())];
    let line = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |nl| nl + 1);
    let column = String::from_utf8_lossy(&bytes[line_start..])
        .chars()
        .count()
        + 1;
    (line, column)
}

/// `a.b."c d"`: keys joined by dots, quoted where TOML would need quotes.
pub(super) fn key_path<S: AsRef<str>>(keys: &[S]) -> String {
    keys.iter()
        .map(|key| {
            let key = key.as_ref();
            if is_bare_key(key) {
                key.to_string()
            } else {
                format!("{key:?}")
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// True when `key` can be written unquoted in TOML (letters, digits, `_`, `-`).
pub(super) fn is_bare_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The key path at byte `offset` of the TOML `text`, or "" at the top level.
///
/// The document is read with best-effort recovery, so this also works for syntax errors.
/// The deepest key or value that covers the offset wins; failing that, one that ends right at
/// it (an unclosed string stops there); failing that, the nearest table header before it (a
/// duplicate key, which recovery drops, is blamed on its table).
pub(super) fn key_path_at(text: &str, offset: usize) -> String {
    let (doc, _errors) = DeTable::parse_recoverable(text);
    let mut walk = Walk {
        offset,
        hit: Vec::new(),
        touch: Vec::new(),
        table_before: (0, Vec::new()),
    };
    walk.table(doc.get_ref(), &mut Vec::new());
    [walk.hit, walk.touch, walk.table_before.1]
        .iter()
        .find(|path| !path.is_empty())
        .map_or_else(String::new, |path| key_path(path))
}

struct Walk {
    offset: usize,
    /// The deepest path whose key or value covers the offset.
    hit: Vec<String>,
    /// The deepest path whose key or value ends at the offset.
    touch: Vec<String>,
    /// The table whose header ends last before the offset: (end, path).
    table_before: (usize, Vec<String>),
}

impl Walk {
    /// Visits every key of `table`. A table's own span is its header (or its key, for dotted
    /// keys), not its contents, so children are visited whatever the parent's span.
    fn table(&mut self, table: &DeTable<'_>, path: &mut Vec<String>) {
        for (key, value) in table.iter() {
            path.push(key.get_ref().to_string());
            let (k, v) = (key.span(), value.span());
            if (covers(&k, self.offset) || covers(&v, self.offset)) && path.len() > self.hit.len() {
                self.hit = path.clone();
            }
            if (k.end == self.offset || v.end == self.offset) && path.len() > self.touch.len() {
                self.touch = path.clone();
            }
            if let Some(inner) = value.get_ref().as_table() {
                // A header `[a.b]` spans its keys and a dotted `a.b = ` is its key; anything
                // else is debris from error recovery.
                let real = v.start <= k.start && k.end <= v.end;
                if real && v.end <= self.offset && v.end >= self.table_before.0 {
                    self.table_before = (v.end, path.clone());
                }
                self.table(inner, path);
            }
            path.pop();
        }
    }
}

fn covers(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && (offset < span.end || span.start == span.end)
}
