//! Strict parsers for listing lines.

use std::collections::BTreeMap;

/// One `ls -l` line:
/// `-rw-r--r--    1 ftp      ftp          1234 Nov 21 06:00 name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LsLine {
    pub kind: u8,
    pub perms: String,
    pub links: u64,
    pub owner: String,
    pub group: String,
    pub size: u64,
    pub month: String,
    pub day: u8,
    /// `HH:MM` (recent) or `YYYY`.
    pub time_or_year: String,
    pub name: Vec<u8>,
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Splits off one whitespace-delimited field; returns (field, rest after
/// exactly the whitespace that follows it).
fn field(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let start = s.iter().position(|&b| b != b' ')?;
    let s = &s[start..];
    let end = s.iter().position(|&b| b == b' ')?;
    let (f, rest) = s.split_at(end);
    Some((f, rest))
}

fn utf8(b: &[u8]) -> Option<String> {
    String::from_utf8(b.to_vec()).ok()
}

/// Parses an `ls -l` line strictly; `None` if it does not have that form.
pub fn parse_ls(line: &[u8]) -> Option<LsLine> {
    let (mode, rest) = field(line)?;
    if mode.len() != 10 || !matches!(mode[0], b'-' | b'd' | b'l') {
        return None;
    }
    let perm_ok = mode[1..].iter().enumerate().all(|(i, &c)| {
        let allowed: &[u8] = match i % 3 {
            0 => b"r-",
            1 => b"w-",
            _ => b"xsStT-",
        };
        allowed.contains(&c)
    });
    if !perm_ok {
        return None;
    }
    let (links, rest) = field(rest)?;
    let (owner, rest) = field(rest)?;
    let (group, rest) = field(rest)?;
    let (size, rest) = field(rest)?;
    let (month, rest) = field(rest)?;
    let (day, rest) = field(rest)?;
    let (toy, rest) = field(rest)?;
    // Exactly one space before the name (names may begin with spaces
    // only in theory; ours do not).
    let name = rest.strip_prefix(b" ")?;
    if name.is_empty() {
        return None;
    }
    let month = utf8(month)?;
    if !MONTHS.contains(&month.as_str()) {
        return None;
    }
    let day: u8 = utf8(day)?.parse().ok()?;
    if !(1..=31).contains(&day) {
        return None;
    }
    let toy = utf8(toy)?;
    let toy_ok = (toy.len() == 5
        && toy.as_bytes()[2] == b':'
        && toy[..2].parse::<u8>().is_ok_and(|h| h < 24)
        && toy[3..].parse::<u8>().is_ok_and(|m| m < 60))
        || (toy.len() == 4 && toy.parse::<u16>().is_ok());
    if !toy_ok {
        return None;
    }
    Some(LsLine {
        kind: mode[0],
        perms: utf8(&mode[1..])?,
        links: utf8(links)?.parse().ok()?,
        owner: utf8(owner)?,
        group: utf8(group)?,
        size: utf8(size)?.parse().ok()?,
        month,
        day,
        time_or_year: toy,
        name: name.to_vec(),
    })
}

pub fn must_ls(line: &[u8]) -> LsLine {
    parse_ls(line)
        .unwrap_or_else(|| panic!("not an ls -l line: {:?}", String::from_utf8_lossy(line)))
}

/// One MLSD line / MLST fact line (without MLST's leading space):
/// `fact=value;fact=value; name`. Fact names are lower-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mlsx {
    pub facts: BTreeMap<String, String>,
    pub name: Vec<u8>,
}

pub fn parse_mlsx(line: &[u8]) -> Option<Mlsx> {
    let sp = line.iter().position(|&b| b == b' ')?;
    let (facts, name) = (&line[..sp], &line[sp + 1..]);
    if name.is_empty() {
        return None;
    }
    let facts = utf8(facts)?;
    let mut map = BTreeMap::new();
    if !facts.is_empty() {
        // RFC 3659: every fact is terminated by ';'.
        let body = facts.strip_suffix(';')?;
        for f in body.split(';') {
            let (k, v) = f.split_once('=')?;
            if k.is_empty() {
                return None;
            }
            map.insert(k.to_ascii_lowercase(), v.to_string());
        }
    }
    Some(Mlsx {
        facts: map,
        name: name.to_vec(),
    })
}

pub fn must_mlsx(line: &[u8]) -> Mlsx {
    parse_mlsx(line)
        .unwrap_or_else(|| panic!("not an MLSx line: {:?}", String::from_utf8_lossy(line)))
}

/// One EPLF line: `+fact,fact,...,\tname`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eplf {
    pub facts: Vec<String>,
    pub name: Vec<u8>,
}

pub fn parse_eplf(line: &[u8]) -> Option<Eplf> {
    let rest = line.strip_prefix(b"+")?;
    let tab = rest.iter().position(|&b| b == b'\t')?;
    let facts = utf8(&rest[..tab])?;
    let facts = facts.strip_suffix(',')?;
    Some(Eplf {
        facts: facts.split(',').map(str::to_string).collect(),
        name: rest[tab + 1..].to_vec(),
    })
}

pub fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
