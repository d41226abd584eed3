//! Release trees on disk for origin and mirror file servers.

use std::path::Path;

use sha2::{Digest, Sha256};

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn filler(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Files of a release: (name, bytes). The checksum and signature sidecars are files like any
/// other.
pub fn files(version: &str) -> Vec<(String, Vec<u8>)> {
    let seed = version.bytes().fold(0u8, |a, b| a.wrapping_add(b));
    vec![
        ("tool-linux-amd64.tar.gz".into(), filler(seed, 96 * 1024)),
        (
            "tool-windows-amd64.zip".into(),
            filler(seed.wrapping_add(1), 48 * 1024),
        ),
        (
            "tool-linux-amd64.tar.gz.sig".into(),
            filler(seed.wrapping_add(2), 64),
        ),
    ]
}

/// The JSON manifest text for `files`.
pub fn manifest_json(version: &str, files: &[(String, Vec<u8>)]) -> String {
    let entries: Vec<serde_json::Value> = files
        .iter()
        .map(|(n, d)| serde_json::json!({"path": n, "size": d.len(), "sha256": hex(&Sha256::digest(d))}))
        .collect();
    serde_json::to_string_pretty(&serde_json::json!({
        "version": version,
        "published": "2026-11-20T10:00:00Z",
        "files": entries,
    }))
    .unwrap()
}

/// Writes a release into `root/<dir>/`: its files and `manifest.json` (plus SHA256SUMS).
pub fn write(root: &Path, dir: &str, version: &str) {
    write_files(root, dir, version, &files(version));
}

/// [`files`] with the first (the tarball) `mb` MiB long: a download that takes a while.
pub fn large_files(version: &str, mb: usize) -> Vec<(String, Vec<u8>)> {
    let mut f = files(version);
    f[0].1 = f[0].1.iter().copied().cycle().take(mb << 20).collect();
    f
}

/// Writes a release of `files` into `root/<dir>/`, as [`write`] does.
pub fn write_files(root: &Path, dir: &str, version: &str, files: &[(String, Vec<u8>)]) {
    let d = root.join(dir);
    std::fs::create_dir_all(&d).unwrap();
    let mut sums = String::new();
    for (n, data) in files {
        replace(&d.join(n), data);
        sums.push_str(&format!("{}  {n}\n", hex(&Sha256::digest(data))));
    }
    replace(
        &d.join("manifest.json"),
        manifest_json(version, files).as_bytes(),
    );
    replace(&d.join("SHA256SUMS"), sums.as_bytes());
}

/// Writes a file the way rsync does by default, through a temporary file renamed over the old
/// one: a prober reading at that moment sees the old bytes or the new, never a file cut short
/// (syncing.rs writes in place on purpose where that is what it tests).
pub fn replace(path: &Path, data: &[u8]) {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    std::fs::write(&tmp, data).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Flips one byte of a file.
pub fn corrupt(path: &Path) {
    let mut data = std::fs::read(path).unwrap();
    data[100] ^= 0xFF;
    std::fs::write(path, data).unwrap();
}
