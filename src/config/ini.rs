//! A small INI reader that remembers where every value came from, so that
//! errors can name `file:line`. It reads what 0.4's Qt `QSettings` wrote
//! and what people write by hand: `[section]`, `key = value`, comments
//! starting with `#` or `;`, optional double quotes around a value.

use std::fmt;

/// One `key = value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The section it is in (lower case; "" before any section header).
    pub section: String,
    /// The key, lower case.
    pub key: String,
    /// The value, trimmed and unquoted.
    pub value: String,
    /// 1-based line number.
    pub line: usize,
}

/// A syntax error, with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub msg: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.line, self.msg)
    }
}

/// Parses INI text into entries in file order.
pub fn parse(text: &str) -> Result<Vec<Entry>, SyntaxError> {
    let mut section = String::new();
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') || l.starts_with(';') {
            continue;
        }
        if let Some(rest) = l.strip_prefix('[') {
            let Some(name) = rest.strip_suffix(']') else {
                return Err(SyntaxError { line, msg: format!("unclosed section header {l:?}") });
            };
            let name = name.trim();
            if name.is_empty() {
                return Err(SyntaxError { line, msg: "empty section name".into() });
            }
            section = name.to_ascii_lowercase();
            continue;
        }
        let Some((k, v)) = l.split_once('=') else {
            return Err(SyntaxError {
                line,
                msg: format!("expected `key = value` or `[section]`, found {l:?}"),
            });
        };
        let key = k.trim();
        if key.is_empty() {
            return Err(SyntaxError { line, msg: "missing key before `=`".into() });
        }
        out.push(Entry {
            section: section.clone(),
            key: key.to_ascii_lowercase(),
            value: unquote(v.trim()).map_err(|msg| SyntaxError { line, msg })?,
            line,
        });
    }
    Ok(out)
}

/// Removes surrounding double quotes (with `\"` and `\\` escapes inside).
fn unquote(v: &str) -> Result<String, String> {
    let Some(inner) = v.strip_prefix('"') else {
        return Ok(v.to_string());
    };
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(e) => out.push(e),
                None => break,
            },
            '"' => {
                let rest: String = chars.collect();
                if !rest.trim().is_empty() {
                    return Err(format!("text after closing quote: {rest:?}"));
                }
                return Ok(out);
            }
            c => out.push(c),
        }
    }
    Err(format!("unterminated quoted value {v:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_keys_comments_quotes() {
        let e = parse(
            "# top\n[SSL]\nkey = /k.pem\n ; c\n[network]\ninit=\"a@b:1, c@d:2\"\nport=41744\nempty=\n",
        )
        .unwrap();
        let kv: Vec<_> = e
            .iter()
            .map(|e| (e.section.as_str(), e.key.as_str(), e.value.as_str(), e.line))
            .collect();
        assert_eq!(
            kv,
            vec![
                ("ssl", "key", "/k.pem", 3),
                ("network", "init", "a@b:1, c@d:2", 6),
                ("network", "port", "41744", 7),
                ("network", "empty", "", 8),
            ]
        );
    }

    #[test]
    fn qt_cache_file_reads() {
        let e = parse("[General]\n02%3A50%3A56%3A00%3A00%3A02=198.18.0.2, 47742\n").unwrap();
        assert_eq!(e[0].section, "general");
        assert_eq!(e[0].key, "02%3a50%3a56%3a00%3a00%3a02");
        assert_eq!(e[0].value, "198.18.0.2, 47742");
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(parse("[a]\nnonsense\n").unwrap_err().line, 2);
        assert_eq!(parse("[a\n").unwrap_err().line, 1);
        assert_eq!(parse("\n\n[]\n").unwrap_err().line, 3);
        assert_eq!(parse("=x\n").unwrap_err().line, 1);
        assert_eq!(parse("k=\"abc\n").unwrap_err().line, 1);
        assert_eq!(parse("k=\"abc\" d\n").unwrap_err().line, 1);
        assert_eq!(parse("k=\"a\\\"b\"").unwrap()[0].value, "a\"b");
    }
}
