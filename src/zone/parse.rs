//! RFC 1035 master files -> records with the line each came from.
//!
//! We split the file into logical entries ourselves (comments, quotes, parentheses, directives,
//! owner inheritance) so that every error names its line; the RDATA of each entry is then
//! parsed by hickory-proto's zone parser, which knows every record type's text form.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use hickory_proto::ProtoError;
use hickory_proto::rr::{DNSClass, Name as HName, RData, RecordType};
use hickory_proto::serialize::txt::{ParseError, Parser, parse_ttl};

use crate::diag::Problem;

/// One record as read, before any zone-level checks.
#[derive(Debug, Clone)]
pub struct ParsedRecord {
    pub file: PathBuf,
    pub line: usize,
    pub owner: HName,
    pub ttl: u32,
    pub rtype: RecordType,
    pub rdata: RData,
}

/// One logical entry: its tokens, where it started, whether it began with blank space.
struct Entry {
    line: usize,
    blank_owner: bool,
    tokens: Vec<String>,
}

/// Splits master-file text into entries. Quoted strings keep their quotes and escapes so that
/// hickory sees them as written.
fn entries(text: &str) -> Result<Vec<Entry>, (usize, String)> {
    let mut out = Vec::new();
    let mut line = 1usize;
    let mut depth = 0u32;
    let mut cur: Option<Entry> = None;
    let mut token = String::new();
    let mut in_token = false;
    let mut in_quote = false;
    let mut at_line_start = true;
    let mut chars = text.chars().peekable();
    let mut paren_line = 0;

    fn end_token(cur: &mut Option<Entry>, token: &mut String, in_token: &mut bool) {
        if *in_token {
            if let Some(e) = cur.as_mut() {
                e.tokens.push(std::mem::take(token));
            }
            *in_token = false;
        }
    }

    while let Some(c) = chars.next() {
        if at_line_start && depth == 0 {
            // A new logical entry starts with each physical line outside parentheses.
            if let Some(e) = cur.take()
                && !e.tokens.is_empty()
            {
                out.push(e);
            }
            cur = Some(Entry {
                line,
                blank_owner: c == ' ' || c == '\t',
                tokens: Vec::new(),
            });
        }
        at_line_start = false;
        if in_quote {
            token.push(c);
            match c {
                '\\' => {
                    if let Some(n) = chars.next() {
                        if n == '\n' {
                            line += 1;
                        }
                        token.push(n);
                    }
                }
                '"' => in_quote = false,
                '\n' => line += 1,
                _ => {}
            }
            continue;
        }
        match c {
            '\n' => {
                end_token(&mut cur, &mut token, &mut in_token);
                line += 1;
                at_line_start = true;
            }
            ';' => {
                end_token(&mut cur, &mut token, &mut in_token);
                while let Some(&n) = chars.peek() {
                    if n == '\n' {
                        break;
                    }
                    chars.next();
                }
            }
            '(' => {
                end_token(&mut cur, &mut token, &mut in_token);
                if depth == 0 {
                    paren_line = line;
                }
                depth += 1;
            }
            ')' => {
                end_token(&mut cur, &mut token, &mut in_token);
                if depth == 0 {
                    return Err((line, "`)` without a matching `(`".into()));
                }
                depth -= 1;
            }
            '"' => {
                in_token = true;
                in_quote = true;
                token.push(c);
            }
            '\\' => {
                in_token = true;
                token.push(c);
                if let Some(n) = chars.next() {
                    token.push(n);
                }
            }
            c if c.is_whitespace() => end_token(&mut cur, &mut token, &mut in_token),
            c => {
                in_token = true;
                token.push(c);
            }
        }
    }
    if in_quote {
        return Err((
            line,
            "quoted string is not closed before the end of the file".into(),
        ));
    }
    if depth > 0 {
        return Err((
            paren_line,
            "`(` is not closed before the end of the file".into(),
        ));
    }
    end_token(&mut cur, &mut token, &mut in_token);
    if let Some(e) = cur
        && !e.tokens.is_empty()
    {
        out.push(e);
    }
    Ok(out)
}

/// Reader state carried across entries and into `$INCLUDE`d files.
struct Reader {
    origin: Option<HName>,
    default_ttl: Option<u32>,
    last_ttl: Option<u32>,
    last_owner: Option<HName>,
    records: Vec<ParsedRecord>,
    problems: Vec<Problem>,
    /// Reading stopped after [`MAX_PROBLEMS`].
    stopped: bool,
}

const MAX_INCLUDE_DEPTH: usize = 8;

/// Problems after which reading a zone file (with its includes) stops: a file of garbage
/// would otherwise yield one per line, megabytes of them in `check`, the logs, `/status` and
/// the reply to `POST /reload`.
pub const MAX_PROBLEMS: usize = 50;

/// Reads a zone file (and its includes). `origin` is the starting `$ORIGIN`, if known.
pub fn read_zone_file(
    path: &Path,
    origin: Option<HName>,
) -> Result<Vec<ParsedRecord>, Vec<Problem>> {
    let mut r = Reader {
        origin,
        default_ttl: None,
        last_ttl: None,
        last_owner: None,
        records: Vec::new(),
        problems: Vec::new(),
        stopped: false,
    };
    r.file(path, 0);
    if r.problems.is_empty() {
        Ok(r.records)
    } else {
        Err(r.problems)
    }
}

fn is_class(t: &str) -> Option<DNSClass> {
    let up = t.to_ascii_uppercase();
    match up.as_str() {
        "IN" => Some(DNSClass::IN),
        "CH" => Some(DNSClass::CH),
        "HS" => Some(DNSClass::HS),
        "CS" | "NONE" | "ANY" => Some(DNSClass::NONE),
        _ => up
            .strip_prefix("CLASS")
            .and_then(|n| n.parse::<u16>().ok())
            .map(DNSClass::from),
    }
}

/// A domain name in a zone file that does not read.
#[derive(Debug, thiserror::Error)]
enum NameError {
    #[error("`@` used before any $ORIGIN")]
    AtWithoutOrigin,
    #[error("`{text}` is not a domain name: {error}")]
    NotAName { text: String, error: ProtoError },
    #[error("`{0}` is relative but no $ORIGIN is set")]
    Relative(String),
}

fn parse_name(text: &str, origin: Option<&HName>) -> Result<HName, NameError> {
    let name = if text == "@" {
        origin.cloned().ok_or(NameError::AtWithoutOrigin)?
    } else {
        let n = HName::parse(text, origin).map_err(|error| NameError::NotAName {
            text: text.to_string(),
            error,
        })?;
        if !n.is_fqdn() {
            return Err(NameError::Relative(text.to_string()));
        }
        n
    };
    Ok(name)
}

impl Reader {
    fn problem(&mut self, file: &Path, line: usize, msg: impl Into<String>) {
        self.problems
            .push(Problem::new(file, Some(line), None, msg));
    }

    fn file(&mut self, path: &Path, depth: usize) {
        let text = match std::fs::read(path) {
            Ok(bytes) => {
                match String::from_utf8(bytes) {
                    Ok(t) => t,
                    Err(e) => {
                        let line = crate::diag::line_of(
                            &String::from_utf8_lossy(&e.as_bytes()[..e.utf8_error().valid_up_to()]),
                            usize::MAX,
                        );
                        self.problem(path, line, "not UTF-8 text: a zone file is text (use \\DDD escapes for other bytes)");
                        return;
                    }
                }
            }
            Err(e) => {
                self.problems.push(Problem::new(
                    path,
                    None,
                    None,
                    format!("cannot read zone file: {e}"),
                ));
                return;
            }
        };
        let entries = match entries(&text) {
            Ok(e) => e,
            Err((line, msg)) => {
                self.problem(path, line, msg);
                return;
            }
        };
        for e in entries {
            if self.stopped {
                return;
            }
            if self.problems.len() >= MAX_PROBLEMS {
                self.stopped = true;
                self.problem(
                    path,
                    e.line,
                    format!("stopped reading here after {MAX_PROBLEMS} problems"),
                );
                return;
            }
            self.entry(path, e, depth);
        }
    }

    fn entry(&mut self, path: &Path, e: Entry, depth: usize) {
        let line = e.line;
        let first = e.tokens[0].as_str();
        if !e.blank_owner && first.starts_with('$') {
            match first.to_ascii_uppercase().as_str() {
                "$ORIGIN" => match e.tokens.get(1).map(|t| parse_name(t, self.origin.as_ref())) {
                    Some(Ok(n)) => self.origin = Some(n),
                    Some(Err(m)) => self.problem(path, line, format!("$ORIGIN: {m}")),
                    None => self.problem(path, line, "$ORIGIN needs a domain name"),
                },
                "$TTL" => match e.tokens.get(1).map(|t| parse_ttl(t)) {
                    Some(Ok(ttl)) => self.default_ttl = Some(ttl),
                    _ => self.problem(path, line, "$TTL needs a TTL such as 3600 or 1h"),
                },
                "$INCLUDE" => {
                    let Some(file) = e.tokens.get(1) else {
                        self.problem(path, line, "$INCLUDE needs a file name");
                        return;
                    };
                    if depth >= MAX_INCLUDE_DEPTH {
                        self.problem(path, line, "$INCLUDE nested too deeply (a loop?)");
                        return;
                    }
                    let target = path
                        .parent()
                        .unwrap_or(Path::new("."))
                        .join(file.trim_matches('"'));
                    let saved = (self.origin.clone(), self.last_owner.clone());
                    if let Some(o) = e.tokens.get(2) {
                        match parse_name(o, self.origin.as_ref()) {
                            Ok(n) => self.origin = Some(n),
                            Err(m) => {
                                self.problem(path, line, format!("$INCLUDE origin: {m}"));
                                return;
                            }
                        }
                    }
                    self.file(&target, depth + 1);
                    // RFC 1035: an include does not change the including file's origin.
                    (self.origin, self.last_owner) = saved;
                }
                other => self.problem(
                    path,
                    line,
                    format!("unknown directive `{other}`: expected $ORIGIN, $TTL or $INCLUDE"),
                ),
            }
            return;
        }
        let mut toks = e.tokens.iter().map(String::as_str).peekable();
        let owner = if e.blank_owner {
            match &self.last_owner {
                Some(o) => o.clone(),
                None => {
                    self.problem(
                        path,
                        line,
                        "record starts with blank space but no owner name came before it",
                    );
                    return;
                }
            }
        } else {
            let t = toks.next().unwrap_or_default();
            match parse_name(t, self.origin.as_ref()) {
                Ok(n) => n,
                Err(m) => {
                    self.problem(path, line, format!("owner name: {m}"));
                    return;
                }
            }
        };
        self.last_owner = Some(owner.clone());
        let mut ttl = None;
        let mut class = None;
        for _ in 0..2 {
            let Some(&t) = toks.peek() else { break };
            if ttl.is_none() && t.starts_with(|c: char| c.is_ascii_digit()) {
                match parse_ttl(t) {
                    Ok(v) => ttl = Some(v),
                    Err(_) => {
                        self.problem(path, line, format!("`{t}` is not a TTL"));
                        return;
                    }
                }
                toks.next();
            } else if class.is_none()
                && let Some(c) = is_class(t)
            {
                class = Some(c);
                toks.next();
            } else {
                break;
            }
        }
        if let Some(c) = class
            && c != DNSClass::IN
        {
            self.problem(path, line, format!("class {c} is not served: only IN"));
            return;
        }
        let Some(type_text) = toks.next() else {
            self.problem(path, line, "record has no type");
            return;
        };
        let rtype = match RecordType::from_str(&type_text.to_ascii_uppercase()) {
            Ok(t) if !matches!(t, RecordType::Unknown(_)) => t,
            _ => {
                self.problem(
                    path,
                    line,
                    format!("`{type_text}` is not a record type we know"),
                );
                return;
            }
        };
        let ttl = match ttl.or(self.default_ttl).or(self.last_ttl) {
            Some(t) => t,
            None => {
                self.problem(path, line, "record has no TTL and no $TTL came before it");
                return;
            }
        };
        self.last_ttl = Some(ttl);
        let rdata_text: Vec<&str> = toks.collect();
        if rdata_text.is_empty() {
            self.problem(path, line, format!("{rtype} record has no data"));
            return;
        }
        match parse_rdata(rtype, &rdata_text.join(" "), self.origin.as_ref()) {
            Ok(rdata) => self.records.push(ParsedRecord {
                file: path.to_path_buf(),
                line,
                owner,
                ttl,
                rtype,
                rdata,
            }),
            Err(m) => self.problem(
                path,
                line,
                format!("{rtype} record data `{}`: {m}", rdata_text.join(" ")),
            ),
        }
    }
}

/// Record data that hickory's zone parser does not read.
#[derive(Debug, thiserror::Error)]
enum RDataError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("no record parsed")]
    Nothing,
}

/// Parses one record's data with hickory's zone parser, so relative names resolve against the
/// current origin exactly as in a whole-file parse.
fn parse_rdata(rtype: RecordType, text: &str, origin: Option<&HName>) -> Result<RData, RDataError> {
    let origin = origin.cloned().unwrap_or_else(HName::root);
    let snippet = format!("@ 0 IN {rtype} {text}\n");
    let (_, sets) = Parser::new(snippet, None, Some(origin)).parse()?;
    let set = sets.into_values().next().ok_or(RDataError::Nothing)?;
    let rec = set
        .records_without_rrsigs()
        .next()
        .ok_or(RDataError::Nothing)?;
    Ok(rec.data.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_handle_parens_quotes_comments() {
        let text = "$ORIGIN example.com.\n@ IN SOA ns1 host (\n  1 ; serial\n 2 3 4 5 )\n  TXT \"a ; b\" \"c\\\"d\"\n";
        let e = entries(text).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[1].line, 2);
        assert_eq!(
            e[1].tokens,
            ["@", "IN", "SOA", "ns1", "host", "1", "2", "3", "4", "5"]
        );
        assert!(e[2].blank_owner);
        assert_eq!(e[2].tokens, ["TXT", "\"a ; b\"", "\"c\\\"d\""]);
    }

    #[test]
    fn unclosed_paren_names_its_line() {
        let err = entries("a A 1.2.3.4\nb TXT ( \"x\"\n").err().unwrap();
        assert_eq!(err.0, 2);
    }
}
