//! Go's `%q` / `strconv.Quote`, which upstream uses in most error messages
//! (`pods "x" not found`, `Invalid value: "Foo"`).

use std::fmt::Write as _;

/// Quotes `s` the way Go's `strconv.Quote` does: double quotes, backslash escapes
/// for `"` and `\`, C escapes for `\a \b \f \n \r \t \v`, `\xNN` for other ASCII
/// controls, `\uNNNN` / `\UNNNNNNNN` for non-printable non-ASCII characters.
///
/// Go decides printability with Unicode tables (`unicode.IsPrint`); this uses the
/// standard library's control/whitespace classes plus the format, private-use and
/// non-character ranges, which agrees with Go for every assigned character we
/// expect in names and values. Unassigned code points are kept as-is here where Go
/// would escape them.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0b}' => out.push_str("\\v"),
            c if is_printable(c) => out.push(c),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

fn is_printable(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let u = c as u32;
    let format_or_private = matches!(
        u,
        0xAD | 0x600..=0x605
            | 0x61C
            | 0x6DD
            | 0x70F
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0xE000..=0xF8FF
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0xF0000..=0x10FFFF
    );
    let non_character = (0xFDD0..=0xFDEF).contains(&u) || (u & 0xFFFE) == 0xFFFE;
    !(format_or_private || non_character)
}

#[cfg(test)]
mod tests {
    use super::go_quote;

    #[test]
    fn quotes_like_go() {
        for (input, want) in [
            ("abc", r#""abc""#),
            ("", r#""""#),
            ("a\"b", r#""a\"b""#),
            ("a\\b", r#""a\\b""#),
            ("a\nb\tc", r#""a\nb\tc""#),
            ("\u{0}", r#""\x00""#),
            ("\u{7f}", r#""\x7f""#),
            ("\u{1b}[0m", r#""\x1b[0m""#),
            ("héllo", "\"héllo\""),
            ("日本", "\"日本\""),
            ("\u{a0}", r#""\u00a0""#),
            ("\u{200b}", r#""\u200b""#),
            ("\u{feff}", r#""\ufeff""#),
            ("\u{10ffff}", r#""\U0010ffff""#),
            ("😀", "\"😀\""),
        ] {
            assert_eq!(go_quote(input), want, "input {input:?}");
        }
    }
}
