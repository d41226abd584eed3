//! `[dnssec]`: zone keys and signature timing. Key files are read and checked here, like the
//! redirector's TLS key, so that `check` names a bad key and a reload with a bad key is
//! rejected while the last good keys keep signing. That every key's zone is loaded is checked
//! with the zones, in `crate::load`.

use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::{Validator, defaults, raw};
use crate::dnssec::keys::{self, Key};
use crate::dnssec::serial::SerialPolicy;

/// The `[dnssec]` section, keys loaded.
#[derive(Debug, Clone)]
pub struct Dnssec {
    /// Loaded and checked at config load, in config order.
    pub keys: Vec<Arc<Key>>,
    /// The config line of each key entry, same order, for later problems.
    pub key_lines: Vec<usize>,
    /// How long a signature is valid from when it is made.
    pub signature_validity: Duration,
    /// How often signatures are made again; more than zero, less than `signature_validity`.
    pub refresh: Duration,
    /// How the served SOA serial moves.
    pub serial: SerialPolicy,
}

impl Validator<'_> {
    pub(super) fn dnssec(&mut self, raw: Spanned<raw::RawDnssec>) -> Dnssec {
        let raw::RawDnssec {
            keys: key_entries,
            signature_validity,
            refresh,
            serial,
        } = raw.into_inner();
        if key_entries.get_ref().is_empty() {
            self.err(
                &key_entries,
                "dnssec.keys",
                "needs at least one key (a `.private` file); leave out [dnssec] to serve unsigned",
            );
        }
        let mut keys: Vec<Arc<Key>> = Vec::new();
        let mut key_lines = Vec::new();
        for entry in key_entries.get_ref() {
            let line = self.line(entry);
            let key = match keys::load(&self.resolve(entry.get_ref())) {
                Ok(k) => k,
                Err(e) => {
                    self.err(entry, "dnssec.keys", e.to_string());
                    continue;
                }
            };
            // A validator picks the key by owner, algorithm and tag: two keys alike in all
            // three make it try both, and RFC 4035 5.3.1 lets it give up.
            let twin = keys.iter().zip(&key_lines).find(|(k, _)| {
                (&k.owner, k.algorithm, k.tag) == (&key.owner, key.algorithm, key.tag)
            });
            if let Some((other, other_line)) = twin {
                let msg = if other.file == key.file {
                    format!(
                        "{}: listed twice (also on line {other_line})",
                        key.file.display()
                    )
                } else {
                    format!(
                        "{}: same tag {} and algorithm {} for `{}` as {} (line {other_line}): \
                         a zone's keys need different tags; make another key",
                        key.file.display(),
                        key.tag,
                        key.algorithm,
                        key.owner,
                        other.file.display()
                    )
                };
                self.err(entry, "dnssec.keys", msg);
                continue;
            }
            keys.push(Arc::new(key));
            key_lines.push(line);
        }
        let signature_validity = self.positive(
            signature_validity.as_ref(),
            "dnssec.signature-validity",
            defaults::DNSSEC_SIGNATURE_VALIDITY,
        );
        let default_refresh = defaults::dnssec_refresh(signature_validity);
        let refresh = match refresh {
            None => default_refresh,
            Some(r) => {
                let d = self.positive(Some(&r), "dnssec.refresh", default_refresh);
                if d >= signature_validity {
                    self.err(
                        &r,
                        "dnssec.refresh",
                        format!(
                            "`{}` is not shorter than `signature-validity` ({}): signatures \
                             would expire before they are made again",
                            r.get_ref(),
                            humantime::format_duration(signature_validity)
                        ),
                    );
                    default_refresh
                } else {
                    d
                }
            }
        };
        let serial = match serial {
            None => defaults::DNSSEC_SERIAL,
            Some(s) => SerialPolicy::parse(s.get_ref()).unwrap_or_else(|| {
                self.err(
                    &s,
                    "dnssec.serial",
                    format!(
                        "`{}` is not one of \"keep\", \"increment\", \"unixtime\"",
                        s.get_ref()
                    ),
                );
                defaults::DNSSEC_SERIAL
            }),
        };
        Dnssec {
            keys,
            key_lines,
            signature_validity,
            refresh,
            serial,
        }
    }

    /// A duration longer than zero, or `default` after reporting why the value is not one.
    fn positive(&mut self, s: Option<&Spanned<String>>, key: &str, default: Duration) -> Duration {
        let Some(s) = s else {
            return default;
        };
        match super::parse_duration(s.get_ref()) {
            Ok(d) if d.is_zero() => {
                self.err(s, key, "must be longer than zero");
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.err(s, key, e.to_string());
                default
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;
    use crate::zone::Name;

    const HEAD: &str =
        "[server]\ndns-listen = [\"127.0.0.1:5353\"]\nzones = [\"example.com.zone\"]\n\n";

    /// Problems of `config` (written in `dir`), as text.
    fn errors(dir: &Path, config: &str) -> Vec<String> {
        Config::parse(&dir.join("mirrordns.toml"), config)
            .map(|_| ())
            .expect_err("should be rejected")
            .0
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    fn key(dir: &Path, ksk: bool) -> String {
        std::fs::create_dir_all(dir.join("keys")).unwrap();
        let zone = Name::from_text("example.com").unwrap();
        let p = keys::generate(&zone, 13, ksk, &dir.join("keys")).unwrap();
        format!("keys/{}", p.file_name().unwrap().to_string_lossy())
    }

    #[test]
    fn keys_load_relative_to_the_config_with_default_timing() {
        let dir = tempfile::tempdir().unwrap();
        let (ksk, zsk) = (key(dir.path(), true), key(dir.path(), false));
        let text = format!("{HEAD}[dnssec]\nkeys = [\n  \"{ksk}\",\n  \"{zsk}\",\n]\n");
        let c = Config::parse(&dir.path().join("mirrordns.toml"), &text).unwrap();
        let d = c.dnssec.unwrap();
        assert_eq!(d.keys.len(), 2);
        assert_eq!(d.key_lines, vec![7, 8]);
        assert_eq!(d.keys[0].file, dir.path().join(&ksk));
        assert!(d.keys[0].is_ksk() && !d.keys[1].is_ksk());
        assert_eq!(d.signature_validity, Duration::from_secs(14 * 86_400));
        assert_eq!(d.refresh, Duration::from_secs(7 * 86_400));

        let text = format!(
            "{HEAD}[dnssec]\nkeys = [\"{ksk}\"]\nsignature-validity = \"2h\"\nrefresh = \"30m\"\n"
        );
        let d = Config::parse(&dir.path().join("mirrordns.toml"), &text)
            .unwrap()
            .dnssec
            .unwrap();
        assert_eq!(d.signature_validity, Duration::from_secs(7200));
        assert_eq!(d.refresh, Duration::from_secs(1800));
        let text = format!("{HEAD}[dnssec]\nkeys = [\"{ksk}\"]\nsignature-validity = \"2h\"\n");
        let d = Config::parse(&dir.path().join("mirrordns.toml"), &text)
            .unwrap()
            .dnssec
            .unwrap();
        assert_eq!(d.refresh, Duration::from_secs(3600), "half of the validity");

        let c = Config::parse(&dir.path().join("mirrordns.toml"), HEAD).unwrap();
        assert!(c.dnssec.is_none());
    }

    #[test]
    fn section_problems_name_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let cfg = d.join("mirrordns.toml").display().to_string();
        let ksk = key(d, true);

        let e = errors(d, &format!("{HEAD}[dnssec]\nkeys = []\n"));
        assert_eq!(
            e,
            [format!(
                "{cfg}:6: `dnssec.keys`: needs at least one key (a `.private` file); leave out [dnssec] to serve unsigned"
            )]
        );
        let e = errors(
            d,
            &format!("{HEAD}[dnssec]\nkeys = [\"{ksk}\"]\nalgorithm = 13\n"),
        );
        assert!(
            e[0].contains(":7:") && e[0].contains("unknown field `algorithm`"),
            "{e:?}"
        );
        let e = errors(d, &format!("{HEAD}[dnssec]\n"));
        assert!(e[0].contains("missing field `keys`"), "{e:?}");

        let e = errors(
            d,
            &format!(
                "{HEAD}[dnssec]\nkeys = [\"{ksk}\"]\nsignature-validity = \"0s\"\nrefresh = \"soon\"\n"
            ),
        );
        assert_eq!(
            e,
            [
                format!("{cfg}:7: `dnssec.signature-validity`: must be longer than zero"),
                format!(
                    "{cfg}:8: `dnssec.refresh`: `soon` is not a duration: expected e.g. \"500ms\", \"10s\", \"5m\", \"6h\""
                ),
            ]
        );
        let e = errors(
            d,
            &format!(
                "{HEAD}[dnssec]\nkeys = [\"{ksk}\"]\nsignature-validity = \"1d\"\nrefresh = \"24h\"\n"
            ),
        );
        assert_eq!(
            e,
            [format!(
                "{cfg}:8: `dnssec.refresh`: `24h` is not shorter than `signature-validity` (1day): signatures would expire before they are made again"
            )]
        );
        let e = errors(
            d,
            &format!("{HEAD}[dnssec]\nkeys = [\"{ksk}\"]\nrefresh = \"0s\"\n"),
        );
        assert_eq!(
            e,
            [format!(
                "{cfg}:7: `dnssec.refresh`: must be longer than zero"
            )]
        );
    }

    #[test]
    fn bad_and_duplicate_keys_name_the_config_line_and_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let cfg = d.join("mirrordns.toml").display().to_string();
        let ksk = key(d, true);
        let missing = d.join("keys/Kexample.com.+013+00001.private");
        let text = format!(
            "{HEAD}[dnssec]\nkeys = [\n  \"{ksk}\",\n  \"keys/Kexample.com.+013+00001.private\",\n  \"{ksk}\",\n]\n"
        );
        let e = errors(d, &text);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with(&format!(
                "{cfg}:8: `dnssec.keys`: cannot read {}: ",
                missing.display()
            )),
            "{e:?}"
        );
        assert_eq!(
            e[1],
            format!(
                "{cfg}:9: `dnssec.keys`: {}: listed twice (also on line 7)",
                d.join(&ksk).display()
            )
        );

        // A copy under another name: the same key twice for one zone.
        let copy = d.join("keys/copy.private");
        std::fs::copy(d.join(&ksk), &copy).unwrap();
        std::fs::copy(
            d.join(&ksk).with_extension("key"),
            copy.with_extension("key"),
        )
        .unwrap();
        let e = errors(
            d,
            &format!("{HEAD}[dnssec]\nkeys = [\"{ksk}\", \"keys/copy.private\"]\n"),
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(&format!(
                "{cfg}:6: `dnssec.keys`: {}: same tag ",
                copy.display()
            )) && e[0].ends_with("a zone's keys need different tags; make another key"),
            "{e:?}"
        );
    }
}
