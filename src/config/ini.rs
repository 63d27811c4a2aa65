//! A small INI reader that remembers where every value came from, so that
//! errors can name `file:line`. It reads files as Qt's `QSettings`
//! (`IniFormat`) read them, since 0.4's configuration files were written
//! for it: bytes, not text, so that a byte that is not UTF-8 in a comment
//! does not matter; a UTF-8 byte-order mark at the start is skipped; `;`
//! starts a comment anywhere outside a double-quoted value (after a value,
//! after a section header), `#` and `;` at the start of a line; values may
//! be double-quoted (then `;` inside is literal, `\"` and `\\` escape);
//! surrounding blanks are trimmed; lines end at `\n`, `\r\n` or a lone `\r`.

use std::fmt;

/// One `key = value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The section it is in (lower case; "" before any section header).
    pub section: String,
    /// The key, lower case.
    pub key: String,
    /// The value, trimmed and unquoted; `Err` holds it (lossily decoded)
    /// when it is not UTF-8, which is an error only if the key is used.
    pub value: Result<String, String>,
    /// 1-based line number.
    pub line: usize,
}

/// A syntax error, with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    /// The line (from 1).
    pub line: usize,
    /// What is wrong.
    pub msg: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.line, self.msg)
    }
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Parses INI bytes into entries in file order.
pub(crate) fn parse(bytes: &[u8]) -> Result<Vec<Entry>, SyntaxError> {
    let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
    let mut section = String::new();
    let mut out = Vec::new();
    for (i, raw) in lines(bytes).enumerate() {
        let line = i + 1;
        let l = raw.trim_ascii();
        if l.is_empty() || l[0] == b'#' || l[0] == b';' {
            continue;
        }
        let err = |msg: String| SyntaxError { line, msg };
        if let Some(rest) = l.strip_prefix(b"[") {
            let Some(end) = rest.iter().position(|&b| b == b']') else {
                return Err(err(format!("unclosed section header {:?}", lossy(l))));
            };
            if !is_comment_or_empty(&rest[end + 1..]) {
                return Err(err(format!(
                    "text after the section header: {:?}",
                    lossy(rest[end + 1..].trim_ascii())
                )));
            }
            let name = rest[..end].trim_ascii();
            if name.is_empty() {
                return Err(err("empty section name".into()));
            }
            section = lossy(name).to_ascii_lowercase();
            continue;
        }
        let eq = l.iter().position(|&b| b == b'=');
        let semi = l.iter().position(|&b| b == b';');
        let Some(eq) = eq.filter(|&e| semi.is_none_or(|s| e < s)) else {
            let text = l[..semi.unwrap_or(l.len())].trim_ascii();
            return Err(err(format!(
                "expected `key = value` or `[section]`, found {:?}",
                lossy(text)
            )));
        };
        let key = l[..eq].trim_ascii();
        if key.is_empty() {
            return Err(err("missing key before `=`".into()));
        }
        let value = value(l[eq + 1..].trim_ascii()).map_err(err)?;
        out.push(Entry {
            section: section.clone(),
            key: lossy(key).to_ascii_lowercase(),
            value: String::from_utf8(value).map_err(|e| lossy(e.as_bytes())),
            line,
        });
    }
    Ok(out)
}

/// The lines of `bytes` as Qt splits them: at `\n`, `\r\n` or a lone `\r`
/// (old Mac files).
fn lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(bytes);
    std::iter::from_fn(move || {
        let r = rest?;
        let Some(end) = r.iter().position(|&b| b == b'\n' || b == b'\r') else {
            rest = None;
            return Some(r);
        };
        let skip = if r[end..].starts_with(b"\r\n") { 2 } else { 1 };
        rest = Some(&r[end + skip..]);
        Some(&r[..end])
    })
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Whether what follows a section header or a quoted value may be ignored.
fn is_comment_or_empty(rest: &[u8]) -> bool {
    let rest = rest.trim_ascii();
    rest.is_empty() || rest[0] == b';'
}

/// A value up to its comment, or between double quotes (with `\"` and
/// `\\` escapes inside).
fn value(v: &[u8]) -> Result<Vec<u8>, String> {
    let Some(inner) = v.strip_prefix(b"\"") else {
        let end = v.iter().position(|&b| b == b';').unwrap_or(v.len());
        return Ok(v[..end].trim_ascii().to_vec());
    };
    let mut out = Vec::new();
    let mut bytes = inner.iter().enumerate();
    while let Some((_, &b)) = bytes.next() {
        match b {
            b'\\' => match bytes.next() {
                Some((_, &e)) => out.push(e),
                None => break,
            },
            b'"' => {
                let rest = bytes.next().map_or(&[][..], |(i, _)| &inner[i..]);
                if !is_comment_or_empty(rest) {
                    return Err(format!(
                        "text after closing quote: {:?}",
                        lossy(rest.trim_ascii())
                    ));
                }
                return Ok(out);
            }
            b => out.push(b),
        }
    }
    Err(format!("unterminated quoted value {:?}", lossy(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(text: &[u8]) -> Vec<(String, String, String, usize)> {
        parse(text)
            .unwrap()
            .into_iter()
            .map(|e| (e.section, e.key, e.value.unwrap_or_else(|v| format!("!{v}")), e.line))
            .collect()
    }

    fn kv(v: &[(&str, &str, &str, usize)]) -> Vec<(String, String, String, usize)> {
        v.iter().map(|(s, k, v, l)| (s.to_string(), k.to_string(), v.to_string(), *l)).collect()
    }

    #[test]
    fn sections_keys_comments_quotes() {
        let e = values(
            b"# top\n[SSL]\nkey = /k.pem\n ; c\n[network]\ninit=\"a@b:1, c@d:2\"\nport=41744\nempty=\n",
        );
        assert_eq!(
            e,
            kv(&[
                ("ssl", "key", "/k.pem", 3),
                ("network", "init", "a@b:1, c@d:2", 6),
                ("network", "port", "41744", 7),
                ("network", "empty", "", 8),
            ])
        );
    }

    #[test]
    fn as_qt_reads_them() {
        let e = values(
            b"\xEF\xBB\xBF[ssl] ; the node\r\nkey = /k.pem ; comment\nca=\"/a;b\" ; c\n\
              # caf\xE9\n; \xFF\xFE\ncert=;nothing\n[x]\nbad=\xE9t\xE9\n",
        );
        assert_eq!(
            e,
            kv(&[
                ("ssl", "key", "/k.pem", 2),
                ("ssl", "ca", "/a;b", 3),
                ("ssl", "cert", "", 6),
                ("x", "bad", "!\u{fffd}t\u{fffd}", 8),
            ])
        );
    }

    #[test]
    fn line_ends_as_qt_reads_them() {
        let want = kv(&[("a", "k", "1", 2), ("a", "l", "2", 3), ("a", "m", "3", 5)]);
        assert_eq!(values(b"[a]\nk=1\nl=2\n\nm=3\n"), want);
        assert_eq!(values(b"[a]\r\nk=1\r\nl=2\r\n\r\nm=3"), want);
        assert_eq!(values(b"[a]\rk=1\rl=2\r\rm=3\r"), want);
        assert_eq!(parse(b"[a]\rk=1\rnonsense\r").unwrap_err().line, 3);
    }

    #[test]
    fn qt_cache_file_reads() {
        let e = parse(b"[General]\n02%3A50%3A56%3A00%3A00%3A02=198.18.0.2, 47742\n").unwrap();
        assert_eq!(e[0].section, "general");
        assert_eq!(e[0].key, "02%3a50%3a56%3a00%3a00%3a02");
        assert_eq!(e[0].value.as_deref(), Ok("198.18.0.2, 47742"));
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(parse(b"[a]\nnonsense\n").unwrap_err().line, 2);
        assert_eq!(parse(b"[a\n").unwrap_err().line, 1);
        assert_eq!(parse(b"[a] x\n").unwrap_err().line, 1);
        assert_eq!(parse(b"\n\n[]\n").unwrap_err().line, 3);
        assert_eq!(parse(b"=x\n").unwrap_err().line, 1);
        assert_eq!(parse(b"k ; =x\n").unwrap_err().line, 1);
        assert_eq!(parse(b"k=\"abc\n").unwrap_err().line, 1);
        assert_eq!(parse(b"k=\"abc\" d\n").unwrap_err().line, 1);
        assert_eq!(parse(b"k=\"a\\\"b\"").unwrap()[0].value.as_deref(), Ok("a\"b"));
    }
}
