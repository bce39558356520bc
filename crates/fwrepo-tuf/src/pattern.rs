//! Delegation path patterns: Unix filename patterns (`*`, `?`, `[seq]`, `[!seq]`) with the
//! semantics of python-tuf's `DelegatedRole` path matching, the reference implementation:
//! pattern and path are split on `/`, must have as many parts, and each part is matched with
//! Python's `fnmatch.fnmatchcase`. `/` is therefore never matched by a wildcard.
//!
//! Bracket expressions follow Python's `fnmatch.translate` to the letter, odd corners
//! included: a `[` without a closing `]` is a literal, `]` right after `[` or `[!` is a member,
//! `-` first or last is a member, a reversed range such as `z-a` is dropped (an expression
//! left empty matches nothing; `[!]` left empty matches any character), and there is no
//! escape character. Matching is by Unicode code point and case-sensitive.

/// Whether `path` is in `pattern`, as python-tuf's `DelegatedRole._is_target_in_pathpattern`.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let (pats, parts): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    pats.len() == parts.len() && pats.iter().zip(&parts).all(|(p, t)| fnmatch(p, t))
}

/// Python's `fnmatch.fnmatchcase(name, pattern)`.
pub fn fnmatch(pattern: &str, name: &str) -> bool {
    let toks = parse(&pattern.chars().collect::<Vec<_>>());
    let name: Vec<char> = name.chars().collect();
    // Every token but `*` matches exactly one character, so one backtrack point (the last
    // `*`) is enough, and the time is O(pattern × name) even for hostile patterns.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < name.len() {
        match toks.get(p) {
            Some(Tok::Star) => {
                star = Some((p, t));
                p += 1;
            }
            Some(tok) if tok.matches(name[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    toks[p..].iter().all(|t| matches!(t, Tok::Star))
}

#[derive(Debug, PartialEq, Eq)]
enum Tok {
    Star,
    Any,
    Lit(char),
    Class { negated: bool, items: Vec<Item> },
    Never,
}

#[derive(Debug, PartialEq, Eq)]
enum Item {
    Char(char),
    Range(char, char),
}

impl Tok {
    fn matches(&self, c: char) -> bool {
        match self {
            Tok::Star | Tok::Any => true,
            Tok::Lit(l) => *l == c,
            Tok::Class { negated, items } => {
                let inside = items.iter().any(|i| match *i {
                    Item::Char(x) => x == c,
                    Item::Range(lo, hi) => lo <= c && c <= hi,
                });
                inside != *negated
            }
            Tok::Never => false,
        }
    }
}

fn parse(pat: &[char]) -> Vec<Tok> {
    let n = pat.len();
    let mut out = Vec::new();
    let mut i = 0;
    while i < n {
        let c = pat[i];
        i += 1;
        match c {
            '*' => {
                if out.last() != Some(&Tok::Star) {
                    out.push(Tok::Star);
                }
            }
            '?' => out.push(Tok::Any),
            '[' => {
                let mut j = i;
                if j < n && pat[j] == '!' {
                    j += 1;
                }
                if j < n && pat[j] == ']' {
                    j += 1;
                }
                while j < n && pat[j] != ']' {
                    j += 1;
                }
                if j >= n {
                    out.push(Tok::Lit('['));
                } else {
                    out.push(bracket(pat, i, j));
                    i = j + 1;
                }
            }
            c => out.push(Tok::Lit(c)),
        }
    }
    out
}

/// Element of a bracket expression after Python's chunking: a member character, or the `-`
/// of a range between its neighbours.
#[derive(Clone, Copy, PartialEq, Eq)]
enum El {
    Char(char),
    RangeDash,
}

/// The bracket expression `pat[start..end]` (between `[` and `]`), as `fnmatch.translate`
/// turns it into a regular-expression set.
fn bracket(pat: &[char], start: usize, end: usize) -> Tok {
    let stuff = &pat[start..end];
    let els: Vec<El> = if !stuff.contains(&'-') {
        stuff.iter().map(|&c| El::Char(c)).collect()
    } else {
        // Split at the hyphens that make ranges: not the first character (after `!`), and not
        // the one right after a range's end.
        let mut chunks: Vec<Vec<char>> = Vec::new();
        let mut i = start;
        let mut k = if pat[start] == '!' { start + 2 } else { start + 1 };
        while let Some(dash) = (k..end).find(|&x| pat[x] == '-') {
            chunks.push(pat[i..dash].to_vec());
            i = dash + 1;
            k = dash + 3;
        }
        let last = &pat[i..end];
        if last.is_empty() {
            // A trailing `-` is a member.
            chunks.last_mut().expect("a dash was found").push('-');
        } else {
            chunks.push(last.to_vec());
        }
        // Drop reversed ranges together with their two end points.
        for k in (1..chunks.len()).rev() {
            if chunks[k - 1].last() > chunks[k].first() {
                let right = chunks.remove(k);
                let left = &mut chunks[k - 1];
                left.pop();
                left.extend_from_slice(right.get(1..).unwrap_or_default());
            }
        }
        let mut els = Vec::new();
        for (n, chunk) in chunks.iter().enumerate() {
            if n > 0 {
                els.push(El::RangeDash);
            }
            els.extend(chunk.iter().map(|&c| El::Char(c)));
        }
        els
    };
    match els.as_slice() {
        [] => Tok::Never,
        [El::Char('!')] => Tok::Any,
        [El::Char('!'), rest @ ..] => Tok::Class { negated: true, items: items(rest) },
        all => Tok::Class { negated: false, items: items(all) },
    }
}

/// Members of a set as Python's regular-expression parser reads them: `a-b` (a range dash
/// between two characters) is a range, anything else a single character.
fn items(els: &[El]) -> Vec<Item> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < els.len() {
        match (els[i], els.get(i + 1), els.get(i + 2)) {
            (El::Char(lo), Some(El::RangeDash), Some(El::Char(hi))) => {
                out.push(Item::Range(lo, *hi));
                i += 3;
            }
            (El::Char(c), ..) => {
                out.push(Item::Char(c));
                i += 1;
            }
            (El::RangeDash, ..) => {
                out.push(Item::Char('-'));
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{fnmatch, path_matches};

    #[test]
    fn wildcards_within_one_segment() {
        assert!(fnmatch("*.bin", "a.bin"));
        assert!(fnmatch("a?c", "abc"));
        assert!(fnmatch("*", ""));
        assert!(!fnmatch("*.bin", "a.bi"));
        assert!(fnmatch("a*b*c", "axxbyyc"));
        assert!(!fnmatch("a*b*c", "axxbyy"));
        assert!(path_matches("fw/*", "fw/x.bin"));
        assert!(!path_matches("fw/*", "fw/sub/x.bin"));
    }

    #[test]
    fn bracket_expressions() {
        assert!(fnmatch("[ab]*", "a.bin") && fnmatch("[ab]*", "b") && !fnmatch("[ab]*", "c"));
        assert!(fnmatch("[!ab]", "c") && !fnmatch("[!ab]", "a"));
        assert!(fnmatch("[a-c]", "b") && !fnmatch("[a-c]", "d"));
        assert!(!fnmatch("[c-a]", "b") && !fnmatch("[c-a]", "c"));
        assert!(fnmatch("[]]", "]") && fnmatch("[!]]", "a"));
        assert!(fnmatch("[", "[") && fnmatch("[a", "[a"));
        assert!(fnmatch("[-a]", "-") && fnmatch("[a-]", "-"));
    }
}
