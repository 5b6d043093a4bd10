//! `$(VAR)` references in env values, command, args and `subPathExpr`, with
//! the rules of upstream's forked `expansion` package: `$$` escapes a `$`,
//! an unknown or unterminated reference stays as written, and a `$` before
//! anything else is kept.

/// Expands every `$(NAME)` in `input` with `mapping(NAME)`.
pub fn expand(input: &str, mut mapping: impl FnMut(&str) -> String) -> String {
    let bytes = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.extend_from_slice(&bytes[checkpoint..cursor]);
            let rest = &bytes[cursor + 1..];
            let advance = match rest[0] {
                // `$$`: an escaped operator.
                b'$' => {
                    out.push(b'$');
                    1
                }
                b'(' => match rest.iter().position(|&b| b == b')') {
                    Some(close) => {
                        // `(` and `)` are ASCII, so the name is on char boundaries.
                        let name = &input[cursor + 2..cursor + 1 + close];
                        out.extend_from_slice(mapping(name).as_bytes());
                        close + 1
                    }
                    // No closer: the `$(` stays literal and scanning goes on.
                    None => {
                        out.extend_from_slice(b"$(");
                        1
                    }
                },
                other => {
                    out.push(b'$');
                    out.push(other);
                    1
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    if checkpoint < bytes.len() {
        out.extend_from_slice(&bytes[checkpoint..]);
    }
    // Only whole UTF-8 sequences were copied, so this never loses anything.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn expansion_table() {
        let vars: BTreeMap<&str, &str> = [
            ("VAR_A", "A"),
            ("VAR_B", "B"),
            ("VAR_C", "C"),
            ("VAR_REF", "$(VAR_A)"),
            ("VAR_EMPTY", ""),
        ]
        .into_iter()
        .collect();
        let map = |n: &str| {
            vars.get(n)
                .map_or_else(|| format!("$({n})"), |v| (*v).to_owned())
        };
        let cases = [
            ("$(VAR_A)", "A"),
            ("___$(VAR_B)___", "___B___"),
            ("$(VAR_A)-$(VAR_A)", "A-A"),
            ("$(VAR_A)$(VAR_B)$(VAR_C)", "ABC"),
            ("f000-$$VAR_A", "f000-$VAR_A"),
            ("$$(VAR_A)", "$(VAR_A)"),
            ("$$$(VAR_A)", "$A"),
            ("$$$$(VAR_A)", "$$(VAR_A)"),
            ("$(VAR_REF)", "$(VAR_A)"),
            ("foo$(VAR_EMPTY)bar", "foobar"),
            ("$(UNKNOWN)", "$(UNKNOWN)"),
            ("$(VAR_A", "$(VAR_A"),
            ("$(", "$("),
            ("$", "$"),
            ("$VAR_A", "$VAR_A"),
            ("${VAR_A}", "${VAR_A}"),
            ("$()", "$()"),
            ("héllo $(VAR_A) wörld$", "héllo A wörld$"),
            ("$é", "$é"),
            ("no refs", "no refs"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(expand(input, map), want, "input {input:?}");
        }
    }
}
