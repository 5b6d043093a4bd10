//! Raw URL query strings as Go's `url.ParseQuery` reads them: `&`-separated
//! `key=value` pairs, `%XX` escapes and `+` as a space. One reader for the
//! API server and the kubelet's server.

/// The decoded `key=value` pairs of a raw query string, in order (a key
/// without `=` has an empty value).
pub fn query_pairs(query: Option<&str>) -> impl DoubleEndedIterator<Item = (String, String)> + '_ {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
}

/// Decodes `%XX` escapes and `+` (a space) in a query component; invalid
/// escapes are kept as they are.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_plus_and_keeps_invalid_escapes() {
        for (raw, want) in [
            ("a%20b", "a b"),
            ("a+b", "a b"),
            ("%2Bx", "+x"),
            ("100%", "100%"),
            ("%zz", "%zz"),
            ("%+5", "% 5"),
            ("caf%C3%A9", "café"),
        ] {
            assert_eq!(percent_decode(raw), want, "{raw}");
        }
    }

    #[test]
    fn pairs_in_order_with_empty_values() {
        let got: Vec<(String, String)> = query_pairs(Some("a=1&&b&c=x%3Dy&a=2")).collect();
        let want = [("a", "1"), ("b", ""), ("c", "x=y"), ("a", "2")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(got, want);
        assert_eq!(query_pairs(None).count(), 0);
    }
}
