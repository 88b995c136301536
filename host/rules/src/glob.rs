//! Name patterns in rules: `*` matches any run of characters (also none),
//! `?` matches one character, everything else matches itself ignoring case.
//! Vendors are inconsistent about case in display names ("Microsoft 365
//! backup" vs "Microsoft 365 Backup"), so patterns ignore it.

use std::fmt;

/// A compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    text: String,
    chars: Vec<Piece>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    Any,
    One,
    Char(char),
}

impl Glob {
    /// The pattern `text`.
    pub fn new(text: &str) -> Self {
        let chars = text
            .chars()
            .map(|c| match c {
                '*' => Piece::Any,
                '?' => Piece::One,
                c => Piece::Char(fold(c)),
            })
            .collect();
        Self {
            text: text.to_owned(),
            chars,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().map(fold).collect();
        let (mut t, mut p) = (0usize, 0usize);
        // Where the last `*` was and the text position it has consumed up
        // to: on a mismatch, let that star take one more character.
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.chars.get(p) {
                Some(Piece::Any) => {
                    star = Some((p, t));
                    p += 1;
                }
                Some(Piece::One) => {
                    t += 1;
                    p += 1;
                }
                Some(Piece::Char(c)) if *c == text[t] => {
                    t += 1;
                    p += 1;
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
        self.chars[p.min(self.chars.len())..]
            .iter()
            .all(|c| *c == Piece::Any)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// One character, case folded (its first lower-case form).
fn fold(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_names_ignoring_case() {
        // (pattern, text, matches)
        let table = [
            ("*Backup*", "Dropsuite Microsoft 365 Backup", true),
            ("*backup*", "Dropsuite Microsoft 365 BACKUP plan", true),
            ("*Backup", "Backup for servers", false),
            ("NMS_*", "NMS_SWITCH", true),
            ("NMS_*", "WINDOWS_SERVER", false),
            ("WINDOWS_?ORKSTATION", "WINDOWS_WORKSTATION", true),
            ("?", "", false),
            ("*", "", true),
            ("", "", true),
            ("", "x", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("*_NotBillable_*", "Servers;_NotBillable_;Lab", true),
            ("exact", "Exact", true),
            ("exact", "exactly", false),
        ];
        for (pattern, text, expected) in table {
            assert_eq!(
                Glob::new(pattern).matches(text),
                expected,
                "{pattern:?} vs {text:?}"
            );
        }
    }
}
