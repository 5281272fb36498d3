//! The benchmark's data set, made once and reused: a big file for bulk
//! downloads, a small one for the session benchmark and a directory of many
//! entries for listings. Everything world-readable, as the servers require.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::out::die;

fn check<T>(r: std::io::Result<T>, what: &str) -> T {
    r.unwrap_or_else(|e| die(&format!("{what}: {e}")))
}

fn dir(path: &Path) {
    check(fs::create_dir_all(path), "mkdir");
    check(
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)),
        "chmod",
    );
}

/// A file of `len` bytes of a non-trivial pattern (not a sparse file, so
/// the page cache and sendfile see real pages), rewritten only when its
/// size is wrong.
fn file(path: &Path, len: u64) {
    if fs::metadata(path).map(|m| m.len() == len).unwrap_or(false) {
        return;
    }
    let tmp = path.with_extension("tmp");
    let mut f = check(
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp),
        "create",
    );
    let mut block = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in block.chunks_mut(8) {
        // xorshift64: cheap bytes that no layer can compress away.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        check(f.write_all(&block[..n]), "write");
        left -= n as u64;
    }
    check(f.sync_all(), "fsync");
    check(fs::rename(&tmp, path), "rename");
}

pub fn mkdata(dir: &str, big_mib: u64, entries: usize) {
    let root = Path::new(dir);
    check(fs::create_dir_all(root), "mkdir");
    check(
        fs::set_permissions(root, fs::Permissions::from_mode(0o755)),
        "chmod",
    );
    file(&root.join(format!("big-{big_mib}M")), big_mib << 20);
    file(&root.join("small"), 4096);
    file(&root.join("tiny"), 15);
    file(&root.join("slow-64M"), 64 << 20);

    let d = root.join("dir");
    check(fs::create_dir_all(&d), "mkdir dir");
    check(
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)),
        "chmod",
    );
    let have = fs::read_dir(&d).map(|r| r.count()).unwrap_or(0);
    if have != entries {
        // Names of a realistic length, as on a mirror; the file sizes vary
        // so the size column is not constant.
        for i in 0..entries {
            let p = d.join(format!("package-{i:06}-1.0.{}.tar.gz", i % 97));
            if p.exists() {
                continue;
            }
            let mut f = check(
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o644)
                    .open(&p),
                "create entry",
            );
            check(f.write_all(&b"x".repeat(i % 512)), "write entry");
        }
        let have = fs::read_dir(&d).map(|r| r.count()).unwrap_or(0);
        if have != entries {
            die(&format!(
                "{} has {have} entries, not {entries}: remove it and run again",
                d.display()
            ));
        }
    }
    println!("{{\"kind\":\"data\",\"dir\":\"{dir}\",\"big_mib\":{big_mib},\"entries\":{entries}}}");
}

/// The slow-disk scenario's tree, served through the latency-injecting
/// filesystem (slowfs.c): DIR/small (4 KiB, hot: the probe's file),
/// DIR/cold/fI (files of `file_mib` MiB, one per downloader) and
/// DIR/cold/dI/eJ (directories of `entries` small files, for the metadata
/// loopers). slowfs treats everything under DIR/cold as cold.
pub fn mkslow(dir: &str, files: usize, file_mib: u64, dirs: usize, entries: usize) {
    let root = Path::new(dir);
    self::dir(root);
    file(&root.join("small"), 4096);
    let cold = root.join("cold");
    self::dir(&cold);
    for i in 0..files {
        file(&cold.join(format!("f{i}")), file_mib << 20);
    }
    for i in 0..dirs {
        let d = cold.join(format!("d{i}"));
        self::dir(&d);
        for j in 0..entries {
            let p = d.join(format!("e{j}"));
            if !p.exists() {
                file(&p, ((i * 131 + j * 37) % 4096) as u64);
            }
        }
    }
    println!(
        "{{\"kind\":\"slowdata\",\"dir\":\"{dir}\",\"files\":{files},\"file_mib\":{file_mib},\"dirs\":{dirs},\"entries\":{entries}}}"
    );
}
