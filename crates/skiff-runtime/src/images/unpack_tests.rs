//! Layer unpacking: whiteouts, opaque directories, links, metadata, traversal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::process::Command;

use super::*;

/// One tar entry of a test layer.
enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

fn layer(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(1000);
        h.set_gid(2000);
        h.set_mtime(1_600_000_000);
        match e {
            E::Dir(p, mode) => {
                h.set_entry_type(EntryType::Directory);
                h.set_mode(*mode);
                h.set_size(0);
                b.append_data(&mut h, p, io::empty()).unwrap();
            }
            E::File(p, data, mode) => {
                h.set_entry_type(EntryType::Regular);
                h.set_mode(*mode);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, *data).unwrap();
            }
            E::Symlink(p, target) => {
                h.set_entry_type(EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, target).unwrap();
            }
            E::Hardlink(p, target) => {
                h.set_entry_type(EntryType::Link);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_link(&mut h, p, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// A tar whose single entry has exactly `name` (the tar crate's builder refuses `..`).
fn raw_entry_layer(name: &str, kind: EntryType, link: Option<&str>) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(link) = link {
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(if kind == EntryType::Regular { 4 } else { 0 });
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    if kind == EntryType::Regular {
        let mut block = [0u8; 512];
        block[..4].copy_from_slice(b"evil");
        out.extend_from_slice(&block);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn is_whiteout(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
}

fn opaque(path: &Path) -> bool {
    let mut buf = [0u8; 8];
    rustix::fs::lgetxattr(path, OVERLAY_OPAQUE_XATTR, &mut buf).is_ok_and(|n| &buf[..n] == b"y")
}

#[test]
fn regular_entries_keep_metadata_and_diff_id() {
    let tmp = tempfile::tempdir().unwrap();
    let tar = layer(&[
        E::Dir("etc/", 0o750),
        E::File("etc/passwd", b"root:x:0:0\n", 0o4755),
        E::File("bin/busybox", b"\x7fELF", 0o755),
        E::Symlink("bin/sh", "/bin/busybox"),
        E::Hardlink("bin/ls", "bin/busybox"),
    ]);
    for (compression, blob) in [
        ("plain", tar.clone()),
        ("gzip", gzip(&tar)),
        ("zstd", zstd::encode_all(&tar[..], 1).unwrap()),
    ] {
        let dest = tmp.path().join(compression);
        fs::create_dir(&dest).unwrap();
        let applied = apply_layer(&blob[..], &dest).unwrap();
        assert_eq!(applied.diff_id, Digest::of(&tar), "{compression}");
        assert_eq!(applied.size, tar.len() as u64);

        let etc = fs::metadata(dest.join("etc")).unwrap();
        assert_eq!(etc.mode() & 0o7777, 0o750);
        assert_eq!(
            etc.mtime(),
            1_600_000_000,
            "dir mtime set after its children"
        );
        let passwd = fs::metadata(dest.join("etc/passwd")).unwrap();
        assert_eq!(fs::read(dest.join("etc/passwd")).unwrap(), b"root:x:0:0\n");
        assert_eq!((passwd.uid(), passwd.gid()), (1000, 2000));
        assert_eq!(passwd.mode() & 0o7777, 0o4755, "setuid survives chown");
        assert_eq!(passwd.mtime(), 1_600_000_000);
        // Implicit parents get 0755.
        assert_eq!(
            fs::metadata(dest.join("bin")).unwrap().mode() & 0o7777,
            0o755
        );
        assert_eq!(
            fs::read_link(dest.join("bin/sh")).unwrap(),
            Path::new("/bin/busybox")
        );
        let link = fs::symlink_metadata(dest.join("bin/sh")).unwrap();
        assert_eq!((link.uid(), link.mtime()), (1000, 1_600_000_000));
        let ls = fs::metadata(dest.join("bin/ls")).unwrap();
        assert_eq!(
            ls.ino(),
            fs::metadata(dest.join("bin/busybox")).unwrap().ino()
        );
        assert_eq!(ls.nlink(), 2);
    }
}

#[test]
fn whiteouts_and_opaque_dirs_across_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let layers = [
        layer(&[
            E::File("a/keep", b"1", 0o644),
            E::File("a/gone", b"1", 0o644),
            E::File("b/old", b"1", 0o644),
            E::File("c/file", b"1", 0o644),
        ]),
        layer(&[
            E::File("a/.wh.gone", b"", 0o644),
            E::File("b/.wh..wh..opq", b"", 0o644),
            E::File("b/new", b"2", 0o644),
            E::File(".wh.c", b"", 0o644),
        ]),
        layer(&[E::File("c/again", b"3", 0o644)]),
    ];
    let dirs: Vec<PathBuf> = (0..layers.len())
        .map(|i| tmp.path().join(format!("l{i}")))
        .collect();
    for (tar, dir) in layers.iter().zip(&dirs) {
        fs::create_dir(dir).unwrap();
        apply_layer(&tar[..], dir).unwrap();
    }
    assert!(is_whiteout(&dirs[1].join("a/gone")));
    assert!(
        !dirs[1].join("a/.wh.gone").exists(),
        "marker entries are not materialised"
    );
    assert!(opaque(&dirs[1].join("b")));
    assert!(
        !opaque(&dirs[1].join("a")),
        "an implicit parent is not opaque"
    );
    assert!(is_whiteout(&dirs[1].join("c")));
    assert_eq!(fs::read(dirs[1].join("b/new")).unwrap(), b"2");

    // What overlayfs makes of the stack (top first), when we can mount it here.
    let merged = tmp.path().join("merged");
    fs::create_dir(&merged).unwrap();
    let lower: Vec<String> = dirs.iter().rev().map(|d| d.display().to_string()).collect();
    let mounted = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!("lowerdir={}", lower.join(":")))
        .arg(&merged)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipping the overlay view check: cannot mount overlayfs here");
        return;
    }
    let view = |p: &str| merged.join(p).exists();
    let checks = [
        ("a/keep", true),
        ("a/gone", false),
        ("b/old", false),
        ("b/new", true),
        ("c/file", false),
        ("c/again", true),
    ];
    let seen: Vec<(&str, bool)> = checks.iter().map(|(p, _)| (*p, view(p))).collect();
    let _ = Command::new("umount").arg(&merged).status();
    assert_eq!(seen, checks);
}

#[test]
fn path_traversal_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot file",
            raw_entry_layer("../evil", EntryType::Regular, None),
        ),
        (
            "nested dotdot",
            raw_entry_layer("a/../../evil", EntryType::Regular, None),
        ),
        (
            "whiteout above root",
            raw_entry_layer("../.wh.etc", EntryType::Regular, None),
        ),
        (
            "hard link out",
            raw_entry_layer("x", EntryType::Link, Some("../../etc/passwd")),
        ),
        (
            "write through symlink",
            layer(&[E::Symlink("etc", "/etc"), E::File("etc/evil", b"x", 0o644)]),
        ),
        (
            "relative symlink parent",
            layer(&[E::Symlink("up", "../.."), E::File("up/evil", b"x", 0o644)]),
        ),
    ];
    for (i, (name, tar)) in cases.iter().enumerate() {
        let dest = tmp.path().join(format!("case{i}/root"));
        fs::create_dir_all(&dest).unwrap();
        let err = apply_layer(&tar[..], &dest).unwrap_err();
        assert!(matches!(err, ImageError::PathTraversal(_)), "{name}: {err}");
        assert!(err.to_string().contains("path traversal"), "{name}: {err}");
        assert!(!tmp.path().join(format!("case{i}/evil")).exists(), "{name}");
    }
    assert!(!Path::new("/etc/evil").exists());
    // `..` that stays inside the root is only a spelling.
    let dest = tmp.path().join("inside");
    fs::create_dir(&dest).unwrap();
    apply_layer(
        &raw_entry_layer("a/../b", EntryType::Regular, None)[..],
        &dest,
    )
    .unwrap();
    assert_eq!(fs::read(dest.join("b")).unwrap(), b"evil");
}

#[test]
fn clean_path_table() {
    let cases: &[(&str, Option<&[&str]>)] = &[
        ("./a/b", Some(&["a", "b"])),
        ("/abs/file", Some(&["abs", "file"])),
        ("a/./b/../c", Some(&["a", "c"])),
        ("./", Some(&[])),
        ("..", None),
        ("a/../../b", None),
    ];
    for (input, want) in cases {
        let got = clean_path(Path::new(input));
        let want = want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(got, want, "{input}");
    }
}

#[test]
fn pax_xattrs_are_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("SCHILY.xattr.user.skiff", &b"yes"[..])])
        .unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(1);
    b.append_data(&mut h, "capable", &b"x"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    apply_layer(&tar[..], tmp.path()).unwrap();
    let mut buf = [0u8; 8];
    let n = rustix::fs::lgetxattr(tmp.path().join("capable"), "user.skiff", &mut buf).unwrap();
    assert_eq!(&buf[..n], b"yes");
}
