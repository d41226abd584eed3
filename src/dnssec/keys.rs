//! Zone keys: a BIND-format key pair read and checked into a [`Key`] that signs, and new key
//! pairs written by `mirrordns keygen`.
//!
//! Two algorithms: 13 (ECDSA P-256 with SHA-256, RFC 6605) and 15 (Ed25519, RFC 8080). Both
//! have 32-byte private keys and 64-byte signatures, and both are what RFC 8624 recommends for
//! signing. Everything about a key is checked when it is read (the config load), so that a
//! key that cannot sign is a config problem, never a failure found while serving.

mod bind;
mod pkcs8;

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};

use crate::zone::Name;
pub use bind::algorithm_name;

/// ECDSA P-256 with SHA-256.
pub const ECDSAP256SHA256: u8 = 13;
/// Ed25519.
pub const ED25519: u8 = 15;
/// DNSKEY flags of a zone key (ZSK).
pub const FLAGS_ZSK: u16 = 256;
/// DNSKEY flags of a key-signing key: a zone key with the SEP bit.
pub const FLAGS_KSK: u16 = 257;
/// The DNSKEY protocol field, always 3 (RFC 4034 2.1.2).
const PROTOCOL: u8 = 3;
/// DS digest type SHA-256 (RFC 4509).
const DIGEST_SHA256: u8 = 2;

/// A zone key: the public half as published, the private half to sign with.
pub struct Key {
    /// The key's owner = the zone apex it signs, lower-case uncompressed wire form (e.g.
    /// b"\x07example\x03com\x00").
    pub owner: Name,
    /// 13 or 15.
    pub algorithm: u8,
    /// 256 (ZSK) or 257 (KSK, SEP bit).
    pub flags: u16,
    /// RFC 4034 Appendix B key tag.
    pub tag: u16,
    /// The TTL in the .key file if it has one.
    pub ttl: Option<u32>,
    /// DNSKEY RDATA in wire form: flags, protocol 3, algorithm, public key.
    pub dnskey: Box<[u8]>,
    /// The .private file.
    pub file: PathBuf,
    signer: Signer,
}

enum Signer {
    Ecdsa(EcdsaKeyPair, SystemRandom),
    Ed25519(Ed25519KeyPair),
}

impl fmt::Debug for Key {
    /// Everything public; the private key is never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("owner", &self.owner)
            .field("algorithm", &self.algorithm)
            .field("flags", &self.flags)
            .field("tag", &self.tag)
            .field("ttl", &self.ttl)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// A key that cannot be read, used or written. Each names the file and the reason.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {}: {source}", .file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: no public key file {} beside it: {source}", .private.display(), .public.display())]
    NoPublic {
        private: PathBuf,
        public: PathBuf,
        source: std::io::Error,
    },
    #[error("{}{}: {reason}", .file.display(), .line.map(|l| format!(":{l}")).unwrap_or_default())]
    Malformed {
        file: PathBuf,
        line: Option<usize>,
        reason: String,
    },
    #[error(
        "{}: algorithm {algorithm} ({}) is not supported: 13 (ECDSAP256SHA256) and 15 (ED25519) are",
        .file.display(),
        algorithm_name(*.algorithm)
    )]
    Unsupported { file: PathBuf, algorithm: u8 },
    #[error(
        "{}: the private key does not belong to the public key in {} ({reason})",
        .private.display(),
        .public.display()
    )]
    Mismatch {
        private: PathBuf,
        public: PathBuf,
        reason: String,
    },
    #[error(
        "{}: the file name says the key is for `{named}`, but {} holds a key for `{owner}`",
        .private.display(),
        .public.display()
    )]
    Owner {
        private: PathBuf,
        public: PathBuf,
        named: Name,
        owner: Name,
    },
    #[error(
        "{}: the file name says algorithm {named_algorithm} tag {named_tag}, but the key is algorithm {algorithm} tag {tag}",
        .file.display()
    )]
    NameMismatch {
        file: PathBuf,
        named_algorithm: u8,
        named_tag: u16,
        algorithm: u8,
        tag: u16,
    },
    #[error("{}: signing failed", .file.display())]
    Sign { file: PathBuf },
    #[error(
        "cannot make a key of algorithm {algorithm} ({}): 13 (ECDSAP256SHA256) and 15 (ED25519) are supported",
        algorithm_name(*.algorithm)
    )]
    CannotGenerate { algorithm: u8 },
    #[error("cannot make a key for `{zone}`: {reason}")]
    Generate { zone: Name, reason: String },
    #[error("cannot write {}: {source}", .file.display())]
    Write {
        file: PathBuf,
        source: std::io::Error,
    },
}

impl Key {
    /// True for a key-signing key (the SEP bit, flags 257).
    pub fn is_ksk(&self) -> bool {
        self.flags & 1 == 1
    }

    /// Signs `data` (the RRSIG to-be-signed bytes); ECDSA gives the 64-byte r||s form DNSSEC
    /// uses (RFC 6605), Ed25519 the 64-byte signature.
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.signer {
            Signer::Ecdsa(pair, rng) => {
                pair.sign(rng, data)
                    .map(|s| s.as_ref().to_vec())
                    .map_err(|_| KeyError::Sign {
                        file: self.file.clone(),
                    })
            }
            Signer::Ed25519(pair) => Ok(pair.sign(data).as_ref().to_vec()),
        }
    }

    /// DS RDATA (digest type 2, SHA-256) for this key: tag, algorithm, 2,
    /// SHA-256(owner wire | dnskey rdata).
    pub fn ds_sha256(&self) -> Vec<u8> {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(self.owner.wire());
        ctx.update(&self.dnskey);
        let mut ds = Vec::with_capacity(4 + 32);
        ds.extend_from_slice(&self.tag.to_be_bytes());
        ds.push(self.algorithm);
        ds.push(DIGEST_SHA256);
        ds.extend_from_slice(ctx.finish().as_ref());
        ds
    }

    /// The DS as a presentation line: "example.com. IN DS 12345 13 2 ABCD..."
    pub fn ds_text(&self) -> String {
        let ds = self.ds_sha256();
        let hex: String = ds[4..].iter().map(|b| format!("{b:02X}")).collect();
        format!(
            "{} IN DS {} {} {DIGEST_SHA256} {hex}",
            self.owner, self.tag, self.algorithm
        )
    }

    /// The DNSKEY as a presentation line: "example.com. IN DNSKEY 257 3 13 base64...".
    pub fn dnskey_text(&self) -> String {
        format!(
            "{} IN DNSKEY {} {PROTOCOL} {} {}",
            self.owner,
            self.flags,
            self.algorithm,
            bind::to_base64(&self.dnskey[4..])
        )
    }
}

/// DNSKEY RDATA: flags, protocol, algorithm, public key.
fn dnskey_rdata(flags: u16, algorithm: u8, public_key: &[u8]) -> Box<[u8]> {
    let mut r = Vec::with_capacity(4 + public_key.len());
    r.extend_from_slice(&flags.to_be_bytes());
    r.push(PROTOCOL);
    r.push(algorithm);
    r.extend_from_slice(public_key);
    r.into_boxed_slice()
}

/// The key tag of DNSKEY RDATA (RFC 4034 Appendix B): the RDATA summed as 16-bit words, the
/// carry folded back in once. (Algorithm 1's different rule does not apply: not supported.)
pub fn key_tag(rdata: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for (i, &b) in rdata.iter().enumerate() {
        sum += if i % 2 == 0 {
            u32::from(b) << 8
        } else {
            u32::from(b)
        };
    }
    sum += (sum >> 16) & 0xffff;
    (sum & 0xffff) as u16
}

/// Lengths of the public and private keys an algorithm has, None if it is not supported.
fn key_lengths(algorithm: u8) -> Option<(usize, usize)> {
    match algorithm {
        // x||y; the scalar.
        ECDSAP256SHA256 => Some((64, 32)),
        // The point; the seed.
        ED25519 => Some((32, 32)),
        _ => None,
    }
}

/// Reads a key pair: `private` names the `.private` file, the `.key` file is beside it.
pub fn load(private: &Path) -> Result<Key, KeyError> {
    let malformed = |file: &Path, line: Option<usize>, reason: String| KeyError::Malformed {
        file: file.to_path_buf(),
        line,
        reason,
    };
    if private.extension().is_none_or(|e| e != "private") {
        return Err(malformed(
            private,
            None,
            "not a `.private` file: name the private key file of a BIND key pair (its `.key` file is found beside it)".into(),
        ));
    }
    let public = private.with_extension("key");
    let private_text = std::fs::read_to_string(private).map_err(|source| KeyError::Read {
        file: private.to_path_buf(),
        source,
    })?;
    let public_text = std::fs::read_to_string(&public).map_err(|source| KeyError::NoPublic {
        private: private.to_path_buf(),
        public: public.clone(),
        source,
    })?;
    let mut secret =
        bind::parse_private(&private_text).map_err(|(l, r)| malformed(private, l, r))?;
    let Some((public_len, private_len)) = key_lengths(secret.algorithm) else {
        return Err(KeyError::Unsupported {
            file: private.to_path_buf(),
            algorithm: secret.algorithm,
        });
    };
    let record = bind::parse_public(&public_text).map_err(|(l, r)| malformed(&public, l, r))?;
    let at = Some(record.line);
    if record.algorithm != secret.algorithm {
        return Err(malformed(
            &public,
            at,
            format!(
                "algorithm {} ({}), but {} is algorithm {} ({}): not one key pair",
                record.algorithm,
                algorithm_name(record.algorithm),
                private.display(),
                secret.algorithm,
                algorithm_name(secret.algorithm)
            ),
        ));
    }
    if record.protocol != PROTOCOL {
        return Err(malformed(
            &public,
            at,
            format!("protocol {}: DNSKEY protocol is always 3", record.protocol),
        ));
    }
    if record.flags != FLAGS_ZSK && record.flags != FLAGS_KSK {
        return Err(malformed(
            &public,
            at,
            format!(
                "flags {}: expected 256 (zone-signing key) or 257 (key-signing key)",
                record.flags
            ),
        ));
    }
    if record.public_key.len() != public_len {
        return Err(malformed(
            &public,
            at,
            format!(
                "the public key is {} bytes; algorithm {} ({}) has {public_len}",
                record.public_key.len(),
                record.algorithm,
                algorithm_name(record.algorithm)
            ),
        ));
    }
    // BIND writes an ECDSA private key as a big-endian number without its leading zero bytes:
    // about one key in 256 has a 31-byte `PrivateKey`. Put the zeros back.
    if secret.algorithm == ECDSAP256SHA256
        && !secret.private_key.is_empty()
        && secret.private_key.len() < private_len
    {
        let mut padded = vec![0u8; private_len - secret.private_key.len()];
        padded.extend_from_slice(&secret.private_key);
        secret.private_key = padded;
    }
    if secret.private_key.len() != private_len {
        return Err(malformed(
            private,
            None,
            format!(
                "the private key is {} bytes; algorithm {} ({}) has {private_len}",
                secret.private_key.len(),
                secret.algorithm,
                algorithm_name(secret.algorithm)
            ),
        ));
    }
    let mismatch = |reason: String| KeyError::Mismatch {
        private: private.to_path_buf(),
        public: public.clone(),
        reason,
    };
    let signer = match record.algorithm {
        ECDSAP256SHA256 => {
            let rng = SystemRandom::new();
            // ring wants the point uncompressed: 0x04, x, y.
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&record.public_key);
            let pair = EcdsaKeyPair::from_private_key_and_public_key(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                &secret.private_key,
                &point,
                &rng,
            )
            .map_err(|e| mismatch(e.to_string()))?;
            Signer::Ecdsa(pair, rng)
        }
        _ => {
            let pair =
                Ed25519KeyPair::from_seed_and_public_key(&secret.private_key, &record.public_key)
                    .map_err(|e| mismatch(e.to_string()))?;
            Signer::Ed25519(pair)
        }
    };
    let dnskey = dnskey_rdata(record.flags, record.algorithm, &record.public_key);
    let tag = key_tag(&dnskey);
    let stem = private
        .file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    if let Some(named) = bind::parse_file_name(&stem) {
        if named.owner != record.owner {
            return Err(KeyError::Owner {
                private: private.to_path_buf(),
                public,
                named: named.owner,
                owner: record.owner,
            });
        }
        if (named.algorithm, named.tag) != (record.algorithm, tag) {
            return Err(KeyError::NameMismatch {
                file: private.to_path_buf(),
                named_algorithm: named.algorithm,
                named_tag: named.tag,
                algorithm: record.algorithm,
                tag,
            });
        }
    }
    Ok(Key {
        owner: record.owner,
        algorithm: record.algorithm,
        flags: record.flags,
        tag,
        ttl: record.ttl,
        dnskey,
        file: private.to_path_buf(),
        signer,
    })
}

/// Writes K<zone>.+<alg:03>.+<tag:05>.key and .private in BIND format (Private-key-format:
/// v1.3, the algorithm, the private key and Created/Publish/Activate dates), .private with
/// mode 0600; returns the .private path. An existing file is never overwritten. The written
/// pair is read back with [`load`], so what `keygen` writes is what the server accepts.
pub fn generate(zone: &Name, algorithm: u8, ksk: bool, dir: &Path) -> Result<PathBuf, KeyError> {
    let failed = |reason: &str| KeyError::Generate {
        zone: zone.clone(),
        reason: reason.to_string(),
    };
    let rng = SystemRandom::new();
    let (private_key, public_key) = match algorithm {
        ECDSAP256SHA256 => {
            let alg = &ECDSA_P256_SHA256_FIXED_SIGNING;
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng)
                .map_err(|_| failed("no random numbers from the system"))?;
            let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng)
                .map_err(|e| failed(&format!("ring's new key does not read back: {e}")))?;
            let point = pair.public_key().as_ref().to_vec();
            let scalar = pkcs8::ec_private_scalar(pkcs8.as_ref())
                .ok_or_else(|| failed("no private key in ring's PKCS#8 document"))?;
            // The scalar taken out of the document is the one that goes with the point.
            EcdsaKeyPair::from_private_key_and_public_key(alg, scalar, &point, &rng)
                .map_err(|e| failed(&format!("the private key taken from PKCS#8 is wrong: {e}")))?;
            match point.split_first() {
                Some((0x04, xy)) if xy.len() == 64 => (scalar.to_vec(), xy.to_vec()),
                _ => {
                    return Err(failed(
                        "ring's public key is not an uncompressed P-256 point",
                    ));
                }
            }
        }
        ED25519 => {
            // An Ed25519 private key is 32 random bytes (RFC 8032 5.1.5).
            let mut seed = [0u8; 32];
            rng.fill(&mut seed)
                .map_err(|_| failed("no random numbers from the system"))?;
            let pair =
                Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|e| failed(&e.to_string()))?;
            let point = pair.public_key().as_ref().to_vec();
            Ed25519KeyPair::from_seed_and_public_key(&seed, &point)
                .map_err(|e| failed(&e.to_string()))?;
            (seed.to_vec(), point)
        }
        _ => return Err(KeyError::CannotGenerate { algorithm }),
    };
    let flags = if ksk { FLAGS_KSK } else { FLAGS_ZSK };
    let dnskey = dnskey_rdata(flags, algorithm, &public_key);
    let tag = key_tag(&dnskey);
    let stem = bind::file_stem(zone, algorithm, tag)
        .ok_or_else(|| failed("its name has a `/` or `\\`, which cannot be in a file name"))?;
    let public_path = dir.join(format!("{stem}.key"));
    let private_path = dir.join(format!("{stem}.private"));
    let dates = bind::Dates::at(SystemTime::now());
    let dnskey_line = format!(
        "{zone} IN DNSKEY {flags} {PROTOCOL} {algorithm} {}",
        bind::to_base64(&public_key)
    );
    write_new(
        &public_path,
        &bind::public_text(&dnskey_line, ksk, tag, zone, &dates),
        0o644,
    )?;
    let written = write_new(
        &private_path,
        &bind::private_text(algorithm, &private_key, &dates),
        0o600,
    );
    if let Err(e) = written {
        // Half a pair is no use and would block a second try with the same tag.
        let _ = std::fs::remove_file(&public_path);
        return Err(e);
    }
    load(&private_path)?;
    Ok(private_path)
}

/// Creates `path` (never replacing a file) with `mode` and writes `text` to it.
fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), KeyError> {
    use std::os::unix::fs::OpenOptionsExt;
    let error = |source| KeyError::Write {
        file: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(error)?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(error)
}

#[cfg(test)]
mod tests;
