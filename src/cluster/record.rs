//! What instances share through Redis, one typed schema per document, and the pure decisions
//! about it: whether a peer's verification result may be used, and whether the mirror still
//! serves what was verified.
//!
//! The trust model: a result only saves a download. Before adopting it an instance asks the
//! mirror itself (HEAD) for each file's validators and uses the result only if they are the
//! ones the result was made against, for exactly the manifest this instance fetched from the
//! origin itself. See docs/operations.md, "Several instances".

use serde::{Deserialize, Serialize};

/// One instance's verification of one mirror's copy of one release content (one manifest
/// digest). Stored as JSON under [`super::Keys::result`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRecord {
    /// The record format; a reader skips formats it does not know.
    pub format: u32,
    pub mirror: String,
    /// The mirror's base URL as the verifying instance's config has it: a peer whose config
    /// points the same name elsewhere does not use the result.
    pub base_url: String,
    /// The manifest path at the origin.
    pub release: String,
    /// SHA-256 of the origin's manifest, hex: the result counts for this content only.
    pub manifest_sha256: String,
    pub outcome: Outcome,
    /// Who downloaded and hashed.
    pub verified_by: String,
    /// When, in seconds since the Unix epoch.
    pub at: u64,
    /// The mirror's copy of the manifest (its hash equalled `manifest_sha256`).
    pub manifest: FileRecord,
    /// Every file checked, in manifest order: all of them for `verified`, up to and including
    /// the one with wrong bytes for `mismatch`.
    pub files: Vec<FileRecord>,
    /// With `[cluster] secret`: HMAC-SHA256 of the record without this field, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// The current [`VerifyRecord::format`].
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Every file's SHA-256 matched the manifest.
    Verified,
    /// A file's bytes did not match (the last in `files`).
    Mismatch,
}

/// One file as the verifying instance saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRecord {
    /// Relative to the release's directory (the manifest's own path for the manifest).
    pub path: String,
    /// SHA-256 of the bytes received, hex.
    pub sha256: String,
    /// Whether that was the manifest's SHA-256 for the file.
    pub ok: bool,
    #[serde(default)]
    pub etag: Option<String>,
    #[serde(default)]
    pub last_modified: Option<String>,
    #[serde(default)]
    pub length: Option<u64>,
}

/// What a HEAD of a file on the mirror showed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seen {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub length: Option<u64>,
}

impl FileRecord {
    /// Whether the mirror still serves the bytes that were hashed: the same length, and the
    /// same ETag and Last-Modified wherever the record has one. A record with neither (a
    /// mirror that sends no validators) is never confirmed: the length alone says too little.
    pub fn confirmed_by(&self, seen: &Seen) -> bool {
        if self.etag.is_none() && self.last_modified.is_none() {
            return false;
        }
        let same = |a: &Option<String>, b: &Option<String>| a.is_none() || a == b;
        self.length.is_some()
            && self.length == seen.length
            && same(&self.etag, &seen.etag)
            && same(&self.last_modified, &seen.last_modified)
    }
}

/// A file of the manifest this instance fetched from the origin.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub path: &'a str,
    pub sha256: &'a [u8; 32],
    pub size: Option<u64>,
}

/// Why a record is not used (each is counted by the caller as "not adopted").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    #[error("record format {0} is not known")]
    Format(u32),
    #[error("made for another mirror or base URL")]
    OtherMirror,
    #[error("made against another manifest")]
    OtherManifest,
    #[error("older than the re-verification interval")]
    Stale,
    #[error("dated in the future")]
    Future,
    #[error("does not cover file `{0}` as the manifest lists it")]
    Incomplete(String),
    #[error("a mismatch record without a file that failed")]
    NoFailure,
}

/// What a usable record asks the mirror to confirm before it is adopted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan<'r> {
    /// HEAD these (the manifest first); all confirmed: verified.
    Verified(Vec<&'r FileRecord>),
    /// HEAD this file; confirmed: the mirror serves these wrong bytes.
    Mismatch(&'r FileRecord),
}

/// Whether `rec` may stand for this instance's own verification of `mirror` at `base_url`
/// against the manifest with `digest` and `files`, at `now` (Unix seconds), given the
/// re-verification interval `max_age` (seconds). Pure: the HEADs come after.
pub fn plan<'r>(
    rec: &'r VerifyRecord,
    mirror: &str,
    base_url: &str,
    digest: &[u8; 32],
    files: &[Expected<'_>],
    now: u64,
    max_age: u64,
) -> Result<Plan<'r>, Unusable> {
    if rec.format != FORMAT {
        return Err(Unusable::Format(rec.format));
    }
    if rec.mirror != mirror || rec.base_url != base_url {
        return Err(Unusable::OtherMirror);
    }
    if rec.manifest_sha256 != hex(digest) {
        return Err(Unusable::OtherManifest);
    }
    // A minute of clock difference between instances is tolerated.
    if rec.at > now + 60 {
        return Err(Unusable::Future);
    }
    if now.saturating_sub(rec.at) >= max_age {
        return Err(Unusable::Stale);
    }
    match rec.outcome {
        Outcome::Verified => {
            let mut heads = vec![&rec.manifest];
            for f in files {
                let covered = rec.files.iter().find(|r| {
                    r.path == f.path
                        && r.ok
                        && r.sha256 == hex(f.sha256)
                        && (f.size.is_none() || r.length == f.size)
                });
                match covered {
                    Some(r) => heads.push(r),
                    None => return Err(Unusable::Incomplete(f.path.to_string())),
                }
            }
            Ok(Plan::Verified(heads))
        }
        Outcome::Mismatch => {
            let failed = rec.files.last().filter(|r| !r.ok);
            match failed {
                Some(r)
                    if files
                        .iter()
                        .any(|f| f.path == r.path && hex(f.sha256) != r.sha256) =>
                {
                    Ok(Plan::Mismatch(r))
                }
                _ => Err(Unusable::NoFailure),
            }
        }
    }
}

pub fn hex(d: &[u8; 32]) -> String {
    crate::manifest::hex(d)
}

/// Who holds a verification lock: the value stored under [`super::Keys::lock`].
pub fn lock_value(instance: &str, token: u64) -> String {
    format!("{instance} {token:016x}")
}

/// The instance named in a lock value.
pub fn lock_holder(value: &str) -> &str {
    value.rsplit_once(' ').map_or(value, |(name, _)| name)
}

/// An instance's heartbeat, one field per instance under [`super::Keys::peers`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    pub version: String,
    pub started_at: u64,
    /// Last heartbeat, Unix seconds.
    pub at: u64,
}

/// An on-call action written with `mirrordns admin`, one field per target under
/// [`super::Keys::admin`]: `mirror:NAME`, `block:VERSION`, `pin:SERVICE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminRecord {
    pub action: AdminKind,
    /// The mirror (drain, force-up), the version (block) or the service (pin).
    pub target: String,
    /// The manifest a pin requires.
    #[serde(default)]
    pub release: Option<String>,
    /// RFC 3339; none: until cleared.
    #[serde(default)]
    pub until: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// Who wrote it (`user@host`), and when (RFC 3339).
    pub by: String,
    pub at: String,
    /// With `[cluster] secret`: HMAC-SHA256 of the entry without this field, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
}

/// A document that can carry a MAC over the rest of itself.
pub trait Sealed: Serialize + Clone {
    fn mac_mut(&mut self) -> &mut Option<String>;

    /// Sets the MAC for `key`.
    fn seal(&mut self, key: &[u8]) {
        *self.mac_mut() = None;
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
            &serde_json::to_vec(&*self).unwrap_or_default(),
        );
        *self.mac_mut() = Some(crate::manifest::hex(tag.as_ref()));
    }

    /// Whether the MAC is there and right for `key` (compared in constant time).
    fn sealed_with(&self, key: &[u8]) -> bool {
        let mut bare = self.clone();
        let Some(mac) = bare.mac_mut().take() else {
            return false;
        };
        let Some(tag) = crate::manifest::parse_sha256(&mac) else {
            return false;
        };
        let Ok(bytes) = serde_json::to_vec(&bare) else {
            return false;
        };
        ring::hmac::verify(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
            &bytes,
            &tag,
        )
        .is_ok()
    }
}

impl Sealed for VerifyRecord {
    fn mac_mut(&mut self) -> &mut Option<String> {
        &mut self.mac
    }
}

impl Sealed for AdminRecord {
    fn mac_mut(&mut self) -> &mut Option<String> {
        &mut self.mac
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdminKind {
    Drain,
    ForceUp,
    Block,
    Pin,
}

impl AdminKind {
    /// The hash field an entry is stored under: one entry per mirror (drain and force-up
    /// replace each other), per blocked version, per pinned service.
    pub fn field(self, target: &str) -> String {
        match self {
            AdminKind::Drain | AdminKind::ForceUp => format!("mirror:{target}"),
            AdminKind::Block => format!("block:{target}"),
            AdminKind::Pin => format!("pin:{target}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, sha: &[u8; 32], ok: bool) -> FileRecord {
        FileRecord {
            path: path.into(),
            sha256: hex(sha),
            ok,
            etag: Some(format!("\"{path}\"")),
            last_modified: Some("Wed, 02 Dec 2026 10:00:00 GMT".into()),
            length: Some(5),
        }
    }

    fn record(outcome: Outcome, files: Vec<FileRecord>) -> VerifyRecord {
        VerifyRecord {
            format: FORMAT,
            mirror: "eu".into(),
            base_url: "http://127.0.0.1:8080/".into(),
            release: "tool/v1/manifest.json".into(),
            manifest_sha256: hex(&[9; 32]),
            outcome,
            verified_by: "ns1".into(),
            at: 1_000,
            manifest: file("tool/v1/manifest.json", &[9; 32], true),
            files,
            mac: None,
        }
    }

    const A: [u8; 32] = [1; 32];
    const B: [u8; 32] = [2; 32];

    fn expected() -> Vec<Expected<'static>> {
        vec![
            Expected {
                path: "a.tar.gz",
                sha256: &A,
                size: Some(5),
            },
            Expected {
                path: "b.zip",
                sha256: &B,
                size: Some(5),
            },
        ]
    }

    fn plan_of(rec: &VerifyRecord, now: u64) -> Result<Plan<'_>, Unusable> {
        plan(
            rec,
            "eu",
            "http://127.0.0.1:8080/",
            &[9; 32],
            &expected(),
            now,
            3600,
        )
    }

    #[test]
    fn a_complete_fresh_record_asks_for_every_file_and_the_manifest() {
        let rec = record(
            Outcome::Verified,
            vec![file("a.tar.gz", &A, true), file("b.zip", &B, true)],
        );
        let Ok(Plan::Verified(heads)) = plan_of(&rec, 1_500) else {
            panic!("not usable");
        };
        let paths: Vec<&str> = heads.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["tool/v1/manifest.json", "a.tar.gz", "b.zip"]);
    }

    #[test]
    fn records_for_something_else_are_not_used() {
        let good = record(
            Outcome::Verified,
            vec![file("a.tar.gz", &A, true), file("b.zip", &B, true)],
        );
        assert_eq!(plan_of(&good, 1_000 + 3600), Err(Unusable::Stale));
        // A peer's clock a minute ahead is tolerated, more is not.
        assert!(plan_of(&good, 1_000 - 60).is_ok());
        assert_eq!(plan_of(&good, 1_000 - 61), Err(Unusable::Future));
        let mut other = good.clone();
        other.base_url = "http://127.0.0.1:9090/".into();
        assert_eq!(plan_of(&other, 1_000), Err(Unusable::OtherMirror));
        let mut other = good.clone();
        other.manifest_sha256 = hex(&[8; 32]);
        assert_eq!(plan_of(&other, 1_000), Err(Unusable::OtherManifest));
        let mut other = good.clone();
        other.format = 2;
        assert_eq!(plan_of(&other, 1_000), Err(Unusable::Format(2)));
    }

    #[test]
    fn a_verified_record_must_claim_the_manifests_own_hash_for_every_file() {
        // A file left out, one claimed with another hash, one marked failed, one of another
        // size: each leaves the record unused.
        let missing = record(Outcome::Verified, vec![file("a.tar.gz", &A, true)]);
        assert_eq!(
            plan_of(&missing, 1_000),
            Err(Unusable::Incomplete("b.zip".into()))
        );
        let wrong = record(
            Outcome::Verified,
            vec![file("a.tar.gz", &A, true), file("b.zip", &A, true)],
        );
        assert_eq!(
            plan_of(&wrong, 1_000),
            Err(Unusable::Incomplete("b.zip".into()))
        );
        let failed = record(
            Outcome::Verified,
            vec![file("a.tar.gz", &A, true), file("b.zip", &B, false)],
        );
        assert!(plan_of(&failed, 1_000).is_err());
        let mut sized = file("b.zip", &B, true);
        sized.length = Some(6);
        let sized = record(Outcome::Verified, vec![file("a.tar.gz", &A, true), sized]);
        assert!(plan_of(&sized, 1_000).is_err());
    }

    #[test]
    fn a_mismatch_record_names_a_file_whose_bytes_differ() {
        let mm = record(
            Outcome::Mismatch,
            vec![file("a.tar.gz", &A, true), file("b.zip", &[7; 32], false)],
        );
        assert_eq!(plan_of(&mm, 1_000), Ok(Plan::Mismatch(&mm.files[1])));
        // Claiming the right hash as the wrong one proves nothing.
        let odd = record(Outcome::Mismatch, vec![file("b.zip", &B, false)]);
        assert_eq!(plan_of(&odd, 1_000), Err(Unusable::NoFailure));
        let none = record(Outcome::Mismatch, vec![file("a.tar.gz", &A, true)]);
        assert_eq!(plan_of(&none, 1_000), Err(Unusable::NoFailure));
    }

    #[test]
    fn confirmation_needs_the_same_validators() {
        let f = file("a.tar.gz", &A, true);
        let seen = Seen {
            etag: f.etag.clone(),
            last_modified: f.last_modified.clone(),
            length: Some(5),
        };
        assert!(f.confirmed_by(&seen));
        let mut other = seen.clone();
        other.etag = Some("\"x\"".into());
        assert!(!f.confirmed_by(&other));
        let mut other = seen.clone();
        other.length = Some(6);
        assert!(!f.confirmed_by(&other));
        let mut other = seen.clone();
        other.last_modified = None;
        assert!(!f.confirmed_by(&other));
        // Only the validators the record has are compared.
        let mut etag_only = f.clone();
        etag_only.last_modified = None;
        assert!(etag_only.confirmed_by(&Seen {
            last_modified: None,
            ..seen.clone()
        }));
        // Length alone never confirms.
        let mut bare = f.clone();
        bare.etag = None;
        bare.last_modified = None;
        assert!(!bare.confirmed_by(&seen));
    }

    #[test]
    fn a_sealed_record_is_checked_against_the_key_and_every_field() {
        let mut rec = record(Outcome::Verified, vec![file("a.tar.gz", &A, true)]);
        assert!(!rec.sealed_with(b"cluster secret 0123"));
        rec.seal(b"cluster secret 0123");
        assert!(rec.sealed_with(b"cluster secret 0123"));
        assert!(!rec.sealed_with(b"another secret 0123"));
        let json = serde_json::to_string(&rec).unwrap();
        let back: VerifyRecord = serde_json::from_str(&json).unwrap();
        assert!(back.sealed_with(b"cluster secret 0123"));
        let mut changed = rec.clone();
        changed.files[0].etag = Some("\"forged\"".into());
        assert!(!changed.sealed_with(b"cluster secret 0123"));
        let mut junk = rec.clone();
        junk.mac = Some("zz".into());
        assert!(!junk.sealed_with(b"cluster secret 0123"));
    }

    #[test]
    fn lock_values_name_their_holder() {
        let v = lock_value("ns 2", 0xabc);
        assert_eq!(v, "ns 2 0000000000000abc");
        assert_eq!(lock_holder(&v), "ns 2");
    }

    #[test]
    fn admin_fields_put_drain_and_force_up_in_one_place() {
        assert_eq!(AdminKind::Drain.field("eu"), AdminKind::ForceUp.field("eu"));
        assert_eq!(AdminKind::Block.field("v1"), "block:v1");
        assert_eq!(AdminKind::Pin.field("dl.example"), "pin:dl.example");
    }
}
