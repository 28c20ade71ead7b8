//! Finds the line and column of a field in block-style YAML, for errors found after parsing (where
//! serde no longer knows positions). Falls back to the nearest enclosing key it can find.

/// One step of a path into the document.
#[derive(Debug, Clone, Copy)]
pub enum PathPart<'a> {
    Key(&'a str),
    Index(usize),
}

/// `routes[2].price`.
pub fn display(path: &[PathPart]) -> String {
    let mut s = String::new();
    for p in path {
        match p {
            PathPart::Key(k) if s.is_empty() => s.push_str(k),
            PathPart::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            PathPart::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// 1-based (line, column) of the last part of `path` that could be found.
pub fn locate(src: &str, path: &[PathPart]) -> (usize, usize) {
    let lines: Vec<&str> = src.lines().collect();
    let (mut start, mut end, mut min_indent) = (0, lines.len(), 0usize);
    let mut found = (1, 1);
    for part in path {
        let mut hit = None;
        match *part {
            PathPart::Key(key) => {
                for (i, line) in lines.iter().enumerate().take(end).skip(start) {
                    let (indent, body) = content(line);
                    if indent >= min_indent && body.strip_prefix(key).is_some_and(|r| r.starts_with(':')) {
                        hit = Some((i, indent));
                        break;
                    }
                }
            }
            PathPart::Index(n) => {
                let items: Vec<(usize, usize)> = (start..end)
                    .filter_map(|i| {
                        let l = lines[i];
                        let indent = l.len() - l.trim_start().len();
                        (indent >= min_indent && l.trim_start().starts_with("- ")).then_some((i, indent))
                    })
                    .collect();
                let base = items.iter().map(|&(_, ind)| ind).min();
                hit = items.into_iter().filter(|&(_, ind)| Some(ind) == base).nth(n);
            }
        }
        let Some((i, indent)) = hit else { break };
        found = (i + 1, indent + 1);
        // Children: following lines indented deeper than this one (a list item's own keys sit at indent + 2).
        let child_min = indent + 1;
        let stop = (i + 1..end).find(|&j| {
            let l = lines[j];
            let t = l.trim_start();
            !t.is_empty() && !t.starts_with('#') && (l.len() - t.len()) < child_min
        });
        start = if matches!(part, PathPart::Index(_)) { i } else { i + 1 };
        end = stop.unwrap_or(end);
        min_indent = if matches!(part, PathPart::Index(_)) {
            indent
        } else {
            child_min
        };
    }
    found
}

/// The position of the first `${NAME}` that `message` mentions, searching from `line` (1-based) on: an
/// error about a variable points at the reference itself.
pub fn reference(src: &str, line: usize, message: &str) -> Option<(usize, usize)> {
    let start = message.find("${")?;
    let end = start + message[start..].find('}')?;
    let reference = &message[start..=end];
    src.lines()
        .enumerate()
        .skip(line.saturating_sub(1))
        .find_map(|(i, l)| l.find(reference).map(|col| (i + 1, col + 1)))
}

/// (indent of the key, text from the key) for `  key: v` and `  - key: v`.
fn content(line: &str) -> (usize, &str) {
    let t = line.trim_start();
    let indent = line.len() - t.len();
    match t.strip_prefix("- ") {
        Some(rest) => (indent + 2 + (rest.len() - rest.trim_start().len()), rest.trim_start()),
        None => (indent, t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PathPart::{Index, Key};

    const SRC: &str =
        "listen: 1\nroutes:\n  - path: /a\n    free: true\n  # note\n  - path: /b\n    price: \"$1\"\npay_to: x\n";

    #[test]
    fn finds_nested_list_fields() {
        assert_eq!(locate(SRC, &[Key("routes"), Index(1), Key("price")]), (7, 5));
        assert_eq!(locate(SRC, &[Key("routes"), Index(0), Key("path")]), (3, 5));
        assert_eq!(locate(SRC, &[Key("pay_to")]), (8, 1));
        // A missing key falls back to its item.
        assert_eq!(locate(SRC, &[Key("routes"), Index(1), Key("accepts")]), (6, 3));
        assert_eq!(display(&[Key("routes"), Index(1), Key("price")]), "routes[1].price");
        let src = "a: 1\nb: \"x ${B}\"\n";
        assert_eq!(
            reference(src, 2, "variable B is not set (referenced as ${B})"),
            Some((2, 7))
        );
    }
}
