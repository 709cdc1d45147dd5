//! Whether two `[sysfs]` paths, each maybe with globs (`*`, `?`, `[...]`) in its
//! components, can name one attribute. Keys are matched one component at a time (a glob
//! never spans a `/`), so two keys overlap when they have as many components and each pair
//! of components has a name in common: `block/sd*/queue/x` and `block/*a/queue/x` both name
//! `block/sda/queue/x`, though neither pattern matches the other as text.

/// One piece of a component pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// `*` (and `**`, which inside one component means the same).
    Star,
    /// One character: `?`, a literal, or a class.
    One(One),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum One {
    Any,
    Literal(char),
    Class {
        negated: bool,
        items: Vec<(char, char)>,
    },
}

impl One {
    fn matches(&self, c: char) -> bool {
        match self {
            One::Any => c != '/',
            One::Literal(l) => *l == c,
            One::Class { negated, items } => {
                items.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated
            }
        }
    }

    /// Whether some character matches both. Keys are ASCII, so a class that excludes
    /// every ASCII character matches nothing a key can name.
    fn meets(&self, other: &One) -> bool {
        match (self, other) {
            (One::Literal(c), o) | (o, One::Literal(c)) => o.matches(*c),
            _ => (1..=0x7f_u8)
                .map(char::from)
                .any(|c| self.matches(c) && other.matches(c)),
        }
    }
}

/// The tokens of one component, as globset reads them: `[!...]` or `[^...]` negates, a `]`
/// first in a class is literal, `a-z` is a range; a `[` that is never closed is literal.
fn tokens(part: &str) -> Vec<Token> {
    let chars: Vec<char> = part.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => {
                if out.last() != Some(&Token::Star) {
                    out.push(Token::Star);
                }
                i += 1;
            }
            '?' => {
                out.push(Token::One(One::Any));
                i += 1;
            }
            '[' => match class(&chars[i + 1..]) {
                Some((one, used)) => {
                    out.push(Token::One(one));
                    i += 1 + used;
                }
                None => {
                    out.push(Token::One(One::Literal('[')));
                    i += 1;
                }
            },
            c => {
                out.push(Token::One(One::Literal(c)));
                i += 1;
            }
        }
    }
    out
}

/// A class after its `[`, and how many characters it took with its `]`.
fn class(rest: &[char]) -> Option<(One, usize)> {
    let mut i = 0;
    let negated = matches!(rest.first(), Some('!' | '^'));
    if negated {
        i += 1;
    }
    let mut items = Vec::new();
    let mut first = true;
    while i < rest.len() {
        let c = rest[i];
        if c == ']' && !first {
            return Some((One::Class { negated, items }, i + 1));
        }
        first = false;
        if rest.get(i + 1) == Some(&'-') && rest.get(i + 2).is_some_and(|h| *h != ']') {
            items.push((c, rest[i + 2]));
            i += 3;
        } else {
            items.push((c, c));
            i += 1;
        }
    }
    None
}

/// Whether one name matches both component patterns.
fn components_meet(a: &str, b: &str) -> bool {
    let (p, q) = (tokens(a), tokens(b));
    // meet[i][j]: p[i..] and q[j..] have a string in common.
    let mut meet = vec![vec![false; q.len() + 1]; p.len() + 1];
    for i in (0..=p.len()).rev() {
        for j in (0..=q.len()).rev() {
            meet[i][j] = match (p.get(i), q.get(j)) {
                (None, None) => true,
                // Two stars: the one whose match ends first can be dropped.
                (Some(Token::Star), Some(Token::Star)) => meet[i + 1][j] || meet[i][j + 1],
                // A star matches nothing, or takes what the other side's next character does.
                (Some(Token::Star), other) => meet[i + 1][j] || (other.is_some() && meet[i][j + 1]),
                (other, Some(Token::Star)) => meet[i][j + 1] || (other.is_some() && meet[i + 1][j]),
                (Some(Token::One(x)), Some(Token::One(y))) => x.meets(y) && meet[i + 1][j + 1],
                _ => false,
            };
        }
    }
    meet[0][0]
}

/// Whether two paths or names, each maybe with globs in its components, can name the same
/// thing.
pub(crate) fn overlap(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let (a, b): (Vec<&str>, Vec<&str>) = (a.split('/').collect(), b.split('/').collect());
    a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| components_meet(x, y))
}

#[cfg(test)]
mod tests {
    use super::overlap;

    #[test]
    fn globs_overlap_when_some_name_matches_both() {
        for (a, b) in [
            ("block/sda/queue/x", "block/sda/queue/x"),
            ("block/sd*/queue/x", "block/sda/queue/x"),
            ("block/sd*/queue/x", "block/*/queue/x"),
            ("block/sd*/queue/x", "block/*a/queue/x"),
            ("block/s?a/queue/x", "block/*d[a-c]/queue/x"),
            ("block/nvme[0-9]n1/queue/x", "block/nvme[!a-z]*/queue/x"),
            ("block/[]x]/queue/x", "block/]/queue/x"),
            ("block/**/queue/x", "block/vda/queue/x"),
            (
                "devices/system/cpu/cpu*/cpufreq/g",
                "devices/system/cpu/*1/cpufreq/g",
            ),
            ("class/net/e*/mtu", "class/net/*/mtu"),
        ] {
            assert!(overlap(a, b), "{a} and {b}");
            assert!(overlap(b, a), "{b} and {a}");
        }
    }

    #[test]
    fn globs_that_no_name_matches_both_do_not() {
        for (a, b) in [
            ("block/sd*/queue/x", "block/nvme*/queue/x"),
            ("block/sd*/queue/x", "block/sd*/queue/y"),
            ("block/sd?/queue/x", "block/sd/queue/x"),
            ("block/sd[a-c]/queue/x", "block/sd[d-z]/queue/x"),
            ("block/sd[!a]/queue/x", "block/sda/queue/x"),
            ("block/*/queue/x", "block/*/queue/x/y"),
            ("block/*a/queue/x", "block/*b/queue/x"),
        ] {
            assert!(!overlap(a, b), "{a} and {b}");
            assert!(!overlap(b, a), "{b} and {a}");
        }
    }
}
