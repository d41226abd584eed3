//! Domain names as the lookup path wants them: lower-case wire format, one allocation.

use std::borrow::Borrow;
use std::fmt;

/// A lower-case domain name in uncompressed wire format, ending with the root label.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(Box<[u8]>);

impl Name {
    pub const ROOT: &'static [u8] = &[0];

    /// From a hickory name (already absolute).
    pub fn from_hickory(n: &hickory_proto::rr::Name) -> Name {
        let mut v = Vec::with_capacity(n.len() + 2);
        for label in n.iter() {
            v.push(label.len() as u8);
            v.extend(label.iter().map(u8::to_ascii_lowercase));
        }
        v.push(0);
        Name(v.into_boxed_slice())
    }

    /// From presentation text such as "downloads.example.com" (trailing dot optional, no
    /// escapes). None if a label is empty or too long.
    pub fn from_text(s: &str) -> Option<Name> {
        let s = s.strip_suffix('.').unwrap_or(s);
        let mut v = Vec::with_capacity(s.len() + 2);
        if !s.is_empty() {
            for label in s.split('.') {
                if label.is_empty() || label.len() > 63 {
                    return None;
                }
                v.push(label.len() as u8);
                v.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
            }
        }
        v.push(0);
        (v.len() <= 255).then(|| Name(v.into_boxed_slice()))
    }

    /// From wire bytes that are already lower-case and well-formed.
    pub fn from_wire(w: &[u8]) -> Name {
        Name(w.into())
    }

    pub fn wire(&self) -> &[u8] {
        &self.0
    }

    /// True if `self` is `other` or below it.
    pub fn is_within(&self, other: &Name) -> bool {
        suffixes(&self.0).any(|off| &self.0[off..] == other.wire())
    }
}

impl Borrow<[u8]> for Name {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

/// Offsets of every suffix of a wire name at label boundaries: the name itself first, the root
/// last.
pub fn suffixes(wire: &[u8]) -> impl Iterator<Item = usize> + '_ {
    let mut off = Some(0usize);
    std::iter::from_fn(move || {
        let cur = off?;
        let len = *wire.get(cur)? as usize;
        off = if len == 0 { None } else { Some(cur + 1 + len) };
        Some(cur)
    })
}

/// Number of labels (the root not counted).
pub fn label_count(wire: &[u8]) -> usize {
    suffixes(wire).count() - 1
}

/// Presentation form of a wire name.
pub fn to_text(wire: &[u8]) -> String {
    let mut s = String::new();
    let mut i = 0;
    while let Some(&len) = wire.get(i) {
        if len == 0 {
            break;
        }
        let label = &wire[i + 1..(i + 1 + len as usize).min(wire.len())];
        for &b in label {
            match b {
                b'.' | b'\\' => {
                    s.push('\\');
                    s.push(b as char);
                }
                0x21..=0x7e => s.push(b as char),
                _ => s.push_str(&format!("\\{b:03}")),
            }
        }
        s.push('.');
        i += 1 + len as usize;
    }
    if s.is_empty() {
        s.push('.');
    }
    s
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&to_text(&self.0))
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_suffixes() {
        let n = Name::from_text("WWW.Example.com.").unwrap();
        assert_eq!(n.to_string(), "www.example.com.");
        let offs: Vec<usize> = suffixes(n.wire()).collect();
        assert_eq!(offs, vec![0, 4, 12, 16]);
        assert_eq!(label_count(n.wire()), 3);
        assert!(n.is_within(&Name::from_text("example.com").unwrap()));
        assert!(!n.is_within(&Name::from_text("ample.com").unwrap()));
        assert_eq!(Name::from_text(".").unwrap().wire(), Name::ROOT);
        assert!(Name::from_text("a..b").is_none());
    }
}
