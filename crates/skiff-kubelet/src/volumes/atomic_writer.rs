//! Atomic updates of a projected volume's files, as upstream's `AtomicWriter`
//! (`pkg/volume/util/atomic_writer.go`).
//!
//! Layout of a volume directory:
//! ```text
//! ..2026_11_29_22_33_12.123456789/   the files of one generation
//! ..data -> ..2026_11_29_22_33_12.123456789
//! key    -> ..data/key               one symlink per top-level name
//! ```
//! A reader following `key` sees either the old or the new generation,
//! never a mix: the switch is a single `rename` of a symlink over `..data`.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The symlink to the current generation.
pub const DATA_DIR_NAME: &str = "..data";
/// The temporary symlink renamed over [`DATA_DIR_NAME`].
const NEW_DATA_DIR_NAME: &str = "..data_tmp";
/// Upstream's limits on a projected path and on each of its elements.
const MAX_PATH_LENGTH: usize = 4096;
const MAX_FILE_NAME_LENGTH: usize = 255;

/// One file of a payload: its bytes and permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    /// The file's content.
    pub data: Vec<u8>,
    /// Permission bits (`0o644` and the like).
    pub mode: u32,
    /// The file's owner, when not the kubelet's user (a projected token
    /// readable by the pod's `runAsUser`).
    pub fs_user: Option<u32>,
}

/// Relative path -> file; the whole content of a volume.
pub type Payload = BTreeMap<String, FileProjection>;

/// Checks a payload path as upstream's `validatePath` does.
pub fn validate_path(target: &str) -> Result<(), String> {
    if target.is_empty() {
        return Err("invalid path: must not be empty: \"\"".to_string());
    }
    if target.starts_with('/') {
        return Err(format!("invalid path: must be relative path: {target}"));
    }
    if target.len() > MAX_PATH_LENGTH {
        return Err(format!(
            "invalid path: must be less than or equal to {MAX_PATH_LENGTH} characters"
        ));
    }
    let items: Vec<&str> = target.split('/').collect();
    for item in &items {
        if *item == ".." {
            return Err(format!("invalid path: must not contain '..': {target}"));
        }
        if item.len() > MAX_FILE_NAME_LENGTH {
            return Err(format!(
                "invalid path: filenames must be less than or equal to {MAX_FILE_NAME_LENGTH} characters"
            ));
        }
    }
    if items[0].starts_with("..") && items[0].len() > 2 {
        return Err(format!("invalid path: must not start with '..': {target}"));
    }
    Ok(())
}

/// `path.Clean` for a relative, already validated path: drops empty and `.` elements.
fn clean(target: &str) -> String {
    target
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// The first element of a relative path: the name of its user-visible symlink.
fn top_level(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

/// Writes payloads into one volume directory.
#[derive(Debug, Clone)]
pub struct AtomicWriter {
    target_dir: PathBuf,
    fs_group: Option<u32>,
}

impl AtomicWriter {
    /// A writer for `target_dir`, which must exist.
    pub fn new(target_dir: impl Into<PathBuf>) -> Self {
        Self {
            target_dir: target_dir.into(),
            fs_group: None,
        }
    }

    /// Gives every new generation to group `gid` (the pod's `fsGroup`), with
    /// set-group-ID directories, as upstream's `SetVolumeOwnership`. File
    /// modes are taken from the payload as they are.
    pub fn with_fs_group(mut self, gid: Option<u32>) -> Self {
        self.fs_group = gid;
        self
    }

    /// Makes the directory hold exactly `payload`. Returns `false`, touching
    /// nothing, when the current generation already has the same files with the
    /// same content and modes.
    pub fn write(&self, payload: &Payload) -> io::Result<bool> {
        let mut cleaned = Payload::new();
        for (path, file) in payload {
            validate_path(path).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            cleaned.insert(clean(path), file.clone());
        }

        let data_link = self.target_dir.join(DATA_DIR_NAME);
        let old_ts = match std::fs::read_link(&data_link) {
            Ok(name) => Some(name),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let old_files = match &old_ts {
            Some(name) => files_under(&self.target_dir.join(name))?,
            None => BTreeSet::new(),
        };
        if let Some(name) = &old_ts
            && !self.should_write(&self.target_dir.join(name), &cleaned, &old_files)?
        {
            return Ok(false);
        }

        let ts_dir = self.new_timestamp_dir()?;
        let written = write_payload(&ts_dir, &cleaned).and_then(|()| match self.fs_group {
            Some(gid) => set_group(&ts_dir, gid),
            None => Ok(()),
        });
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&ts_dir);
            return Err(e);
        }
        let new_top: BTreeSet<&str> = cleaned.keys().map(|p| top_level(p)).collect();
        for name in &new_top {
            let visible = self.target_dir.join(name);
            match std::fs::symlink_metadata(&visible) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    std::os::unix::fs::symlink(Path::new(DATA_DIR_NAME).join(name), &visible)?;
                }
                Err(e) => return Err(e),
            }
        }

        // The swap: a fresh symlink renamed over `..data`.
        let tmp_link = self.target_dir.join(NEW_DATA_DIR_NAME);
        match std::fs::remove_file(&tmp_link) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let ts_name = ts_dir
            .file_name()
            .map(PathBuf::from)
            .ok_or_else(|| io::Error::other("timestamp directory has no name"))?;
        std::os::unix::fs::symlink(&ts_name, &tmp_link)?;
        std::fs::rename(&tmp_link, &data_link)?;

        for old in &old_files {
            let name = top_level(old);
            if !new_top.contains(name) {
                match std::fs::remove_file(self.target_dir.join(name)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if let Some(name) = old_ts
            && name != ts_name
        {
            std::fs::remove_dir_all(self.target_dir.join(name))?;
        }
        Ok(true)
    }

    /// Whether the payload differs from the generation in `old_dir`.
    fn should_write(
        &self,
        old_dir: &Path,
        payload: &Payload,
        old_files: &BTreeSet<String>,
    ) -> io::Result<bool> {
        if old_files.len() != payload.len() {
            return Ok(true);
        }
        for (path, file) in payload {
            if !old_files.contains(path) {
                return Ok(true);
            }
            let on_disk = old_dir.join(path);
            let mode = std::fs::metadata(&on_disk)?.permissions().mode() & 0o7777;
            if mode != file.mode & 0o7777 || std::fs::read(&on_disk)? != file.data {
                return Ok(true);
            }
            // A user-visible symlink removed behind our back is restored by a write.
            if std::fs::symlink_metadata(self.target_dir.join(top_level(path))).is_err() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Creates `..<UTC timestamp>.<nanoseconds>`, as upstream names its generations.
    fn new_timestamp_dir(&self) -> io::Result<PathBuf> {
        let now = time::OffsetDateTime::now_utc();
        let base = format!(
            "..{:04}_{:02}_{:02}_{:02}_{:02}_{:02}",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        );
        let mut nanos = now.nanosecond();
        loop {
            let dir = self.target_dir.join(format!("{base}.{nanos:09}"));
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
                    return Ok(dir);
                }
                // Two writes within one clock tick: take the next free name.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => nanos = nanos.wrapping_add(1),
                Err(e) => return Err(e),
            }
        }
    }
}

/// Writes every file of `payload` below `dir`, creating parent directories 0755.
fn write_payload(dir: &Path, payload: &Payload) -> io::Result<()> {
    for (path, file) in payload {
        let full = dir.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)?;
            let mut at = parent;
            while at != dir && at.starts_with(dir) {
                std::fs::set_permissions(at, std::fs::Permissions::from_mode(0o755))?;
                at = match at.parent() {
                    Some(p) => p,
                    None => break,
                };
            }
        }
        std::fs::write(&full, &file.data)?;
        if let Some(uid) = file.fs_user {
            std::os::unix::fs::chown(&full, Some(uid), None)?;
        }
        std::fs::set_permissions(&full, std::fs::Permissions::from_mode(file.mode & 0o7777))?;
    }
    Ok(())
}

/// Gives `dir` and everything below it to group `gid`; directories get the
/// set-group-ID bit and group search, so new entries inherit the group.
pub(crate) fn set_group(dir: &Path, gid: u32) -> io::Result<()> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        std::os::unix::fs::lchown(&at, None, Some(gid))?;
        let meta = std::fs::symlink_metadata(&at)?;
        if meta.is_dir() {
            let mode = meta.permissions().mode() & 0o7777;
            std::fs::set_permissions(&at, std::fs::Permissions::from_mode(mode | 0o2110))?;
            for entry in std::fs::read_dir(&at)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok(())
}

/// Relative paths of the regular files below `dir`.
fn files_under(dir: &Path) -> io::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((at, prefix)) = stack.pop() {
        let entries = match std::fs::read_dir(&at) {
            Ok(entries) => entries,
            // A dangling `..data` (generation dir removed): nothing to compare.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            if entry.file_type()?.is_dir() {
                stack.push((entry.path(), rel));
            } else {
                out.insert(rel);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn file(data: &str, mode: u32) -> FileProjection {
        FileProjection {
            data: data.as_bytes().to_vec(),
            mode,
            fs_user: None,
        }
    }

    fn payload(items: &[(&str, &str)]) -> Payload {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), file(v, 0o644)))
            .collect()
    }

    fn generations(dir: &Path) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("..2"))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn validate_path_cases() {
        let cases = [
            ("a", None),
            ("a/b/c", None),
            ("..a", Some("invalid path: must not start with '..': ..a")),
            ("a/..b", None),
            ("/abs", Some("invalid path: must be relative path: /abs")),
            (
                "a/../b",
                Some("invalid path: must not contain '..': a/../b"),
            ),
            ("..", Some("invalid path: must not contain '..': ..")),
            ("", Some("invalid path: must not be empty: \"\"")),
        ];
        for (path, want) in cases {
            assert_eq!(validate_path(path).err().as_deref(), want, "{path}");
        }
        let long = "x".repeat(256);
        assert!(validate_path(&long).unwrap_err().contains("255 characters"));
    }

    #[test]
    fn first_write_lays_out_generation_data_link_and_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(dir.path());
        let mut p = payload(&[("a", "1"), ("nested/b/c", "2")]);
        p.insert("exec".into(), file("3", 0o755));
        assert!(w.write(&p).unwrap());

        let gens = generations(dir.path());
        assert_eq!(gens.len(), 1);
        let name = &gens[0];
        // ..YYYY_MM_DD_HH_MM_SS.NNNNNNNNN
        assert_eq!(
            name.len(),
            "..2026_11_29_22_33_12.123456789".len(),
            "{name}"
        );
        assert_eq!(
            std::fs::read_link(dir.path().join("..data")).unwrap(),
            PathBuf::from(name)
        );
        assert_eq!(
            std::fs::read_link(dir.path().join("a")).unwrap(),
            PathBuf::from("..data/a")
        );
        assert_eq!(
            std::fs::read_link(dir.path().join("nested")).unwrap(),
            PathBuf::from("..data/nested")
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("nested/b/c")).unwrap(),
            "2"
        );
        let mode = |p: &str| {
            std::fs::metadata(dir.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("a"), 0o644);
        assert_eq!(mode("exec"), 0o755);
    }

    #[test]
    fn update_swaps_content_and_removes_old_keys() {
        let dir = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(dir.path());
        assert!(
            w.write(&payload(&[("a", "1"), ("b", "2"), ("d/e", "3")]))
                .unwrap()
        );
        let first = generations(dir.path());

        assert!(w.write(&payload(&[("a", "changed")])).unwrap());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("a")).unwrap(),
            "changed"
        );
        assert!(std::fs::symlink_metadata(dir.path().join("b")).is_err());
        assert!(std::fs::symlink_metadata(dir.path().join("d")).is_err());
        let second = generations(dir.path());
        assert_eq!(second.len(), 1, "old generation removed: {second:?}");
        assert_ne!(first, second);
        assert!(std::fs::symlink_metadata(dir.path().join("..data_tmp")).is_err());
    }

    #[test]
    fn unchanged_payload_does_not_swap() {
        let dir = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(dir.path());
        let p = payload(&[("a", "1"), ("x/y", "2")]);
        assert!(w.write(&p).unwrap());
        let before = generations(dir.path());
        assert!(!w.write(&p).unwrap());
        assert_eq!(generations(dir.path()), before);

        // A mode change alone is a change.
        let mut p2 = p.clone();
        p2.insert("a".into(), file("1", 0o600));
        assert!(w.write(&p2).unwrap());
        assert_ne!(generations(dir.path()), before);
    }

    #[test]
    fn empty_payload_leaves_only_data_link() {
        let dir = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(dir.path());
        assert!(w.write(&payload(&[("a", "1")])).unwrap());
        assert!(w.write(&Payload::new()).unwrap());
        let names: BTreeSet<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("..2"))
            .collect();
        assert_eq!(names, BTreeSet::from(["..data".to_string()]));
        assert!(!w.write(&Payload::new()).unwrap());
    }

    #[test]
    fn readers_never_see_a_torn_file_during_swaps() {
        let dir = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(dir.path());
        // Each generation's content is 4 KiB of one repeated digit.
        let content = |i: usize| char::from(b'0' + (i % 10) as u8).to_string().repeat(4096);
        w.write(&payload(&[("nested/f", &content(0))])).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let path = dir.path().join("nested/f");
        let reader = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    // As upstream, a path walk that resolved `..data` just
                    // before the old generation is removed can miss; an
                    // opened file is always one whole generation.
                    let got = match std::fs::read_to_string(&path) {
                        Ok(got) => got,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => panic!("{e}"),
                    };
                    assert_eq!(got.len(), 4096);
                    assert!(got.bytes().all(|b| b == got.as_bytes()[0]), "torn read");
                    reads += 1;
                }
                reads
            })
        };
        for i in 1..200 {
            assert!(w.write(&payload(&[("nested/f", &content(i))])).unwrap());
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        assert_eq!(generations(dir.path()).len(), 1);
    }

    #[test]
    fn invalid_path_is_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let w = AtomicWriter::new(dir.path());
        let err = w.write(&payload(&[("../escape", "x")])).unwrap_err();
        assert!(err.to_string().contains("must not contain '..'"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
