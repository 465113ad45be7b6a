//! Version order of the box's releases, as `sort -V` and `dpkg --compare-versions` see
//! strings such as `0.1.0+20261130220501`.

use std::cmp::Ordering;

/// Runs of digits compare as numbers, everything else byte by byte; a string that is a
/// prefix of the other is the older one (`0.1.0` < `0.1.0+20261130`).
pub fn compare(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let (da, ra) = split_run(a, true);
                let (db, rb) = split_run(b, true);
                let (na, nb) = (trim_zeros(da), trim_zeros(db));
                // Longer (without leading zeros) is larger; equal lengths compare as text.
                let order = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
                if order != Ordering::Equal {
                    return order;
                }
                (a, b) = (ra, rb);
            }
            (Some(x), Some(y)) if x.is_ascii_digit() != y.is_ascii_digit() => {
                // A number where the other has text: text that sorts after digits (letters,
                // `+`'s neighbours) decides bytewise, as both tools do for these strings.
                return x.cmp(y);
            }
            _ => {
                let (ta, ra) = split_run(a, false);
                let (tb, rb) = split_run(b, false);
                let common = ta.len().min(tb.len());
                let order = ta[..common].cmp(&tb[..common]);
                if order != Ordering::Equal {
                    return order;
                }
                if ta.len() != tb.len() {
                    // One text run ends first: what follows it (a digit, or the end) is
                    // compared with the other's next byte.
                    let next_a = a.get(common);
                    let next_b = b.get(common);
                    return next_a.cmp(&next_b);
                }
                (a, b) = (ra, rb);
            }
        }
    }
}

fn split_run(s: &[u8], digits: bool) -> (&[u8], &[u8]) {
    let n = s
        .iter()
        .position(|c| c.is_ascii_digit() != digits)
        .unwrap_or(s.len());
    s.split_at(n)
}

fn trim_zeros(s: &[u8]) -> &[u8] {
    let n = s.iter().position(|&c| c != b'0').unwrap_or(s.len());
    &s[n..]
}

#[cfg(test)]
mod tests {
    use super::compare;
    use std::cmp::Ordering::{Equal, Greater, Less};

    #[test]
    fn orders_releases_as_sort_v_does() {
        for (a, b, want) in [
            ("0.1.0", "0.1.0", Equal),
            ("0.1.0", "0.2.0", Less),
            ("0.10.0", "0.9.9", Greater),
            ("0.1.0", "0.1.0+20261130220501", Less),
            ("0.1.0+20261130220501", "0.1.0+20261201000000", Less),
            ("0.2.0+20261101000000", "0.1.0+20261201000000", Greater),
            ("1.0.0", "1.0.0-rc1", Less),
            ("0.1.01", "0.1.1", Equal),
            ("1.2", "1.10", Less),
            ("1.2a", "1.2b", Less),
        ] {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn agrees_with_sort_v_when_it_is_installed() {
        let list = [
            "0.1.0+20261130220501",
            "0.1.0",
            "0.10.0",
            "0.2.0+1",
            "0.2.0",
            "1.0.0",
            "0.9.9",
            "0.1.0+20261201000000",
        ];
        let Ok(out) = std::process::Command::new("sort")
            .arg("-V")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                if let Some(mut stdin) = child.stdin.take() {
                    stdin.write_all(list.join("\n").as_bytes())?;
                }
                child.wait_with_output()
            })
        else {
            eprintln!("sort -V not available: skipped");
            return;
        };
        let want: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
        let mut got = list.to_vec();
        got.sort_by(|a, b| compare(a, b));
        assert_eq!(got, want);
    }
}
