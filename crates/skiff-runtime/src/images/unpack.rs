//! Applying one layer tar (plain, gzip or zstd) into its own snapshot directory,
//! recording whiteouts the overlayfs way so an overlay mount of the stacked
//! snapshots shows the image's filesystem.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Gid, Mode, Timespec, Timestamps, Uid, XattrFlags};
use sha2::{Digest as _, Sha256};
use tar::EntryType;

use super::digest::Digest;
use super::error::ImageError;

/// The prefix of a whiteout entry's name.
const WHITEOUT_PREFIX: &str = ".wh.";
/// The marker entry making its directory opaque.
const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";
/// Hides the lower layers' entries of a directory in overlayfs.
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// PAX records carrying extended attributes.
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";

/// What applying a layer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedLayer {
    /// The digest of the uncompressed tar stream.
    pub diff_id: Digest,
    /// Its length in bytes.
    pub size: u64,
}

/// Unpacks the layer tar read from `reader` (compression detected from its first
/// bytes) into `dest`, which must be an empty directory of this layer alone.
pub fn apply_layer(reader: impl Read, dest: &Path) -> Result<AppliedLayer, ImageError> {
    let io_err = |e: io::Error| ImageError::io("read layer for", dest)(e);
    let mut buffered = BufReader::with_capacity(128 * 1024, reader);
    let head = buffered.fill_buf().map_err(io_err)?;
    let decompressed: Box<dyn Read> = if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(buffered))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(buffered).map_err(io_err)?)
    } else {
        Box::new(buffered)
    };
    let mut archive = tar::Archive::new(HashingReader::new(decompressed));
    let mut dirs = Vec::new();
    for entry in archive.entries().map_err(io_err)? {
        let mut entry = entry.map_err(io_err)?;
        if let Some(dir) = apply_entry(&mut entry, dest)? {
            dirs.push(dir);
        }
    }
    // Children changed their directories' mtimes: set those last, deepest first.
    for (path, mtime) in dirs.iter().rev() {
        set_mtime(path, *mtime)?;
    }
    // The diffID covers the whole stream, including the padding after the end marker.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(io_err)?;
    Ok(AppliedLayer {
        diff_id: Digest::from_hasher(rest.hasher),
        size: rest.count,
    })
}

/// Applies one entry; returns a directory whose mtime must be set at the end.
fn apply_entry(
    entry: &mut tar::Entry<'_, impl Read>,
    dest: &Path,
) -> Result<Option<(PathBuf, u64)>, ImageError> {
    let raw_path = entry
        .path()
        .map_err(ImageError::io("read entry name in", dest))?;
    let display = raw_path.display().to_string();
    let components =
        clean_path(&raw_path).ok_or_else(|| ImageError::PathTraversal(display.clone()))?;
    let Some((name, parents)) = components.split_last() else {
        return Ok(None); // the layer root itself ("./")
    };
    let parent = ensure_dir_chain(dest, parents, &display)?;
    let path = parent.join(name);

    if name == WHITEOUT_OPAQUE {
        rustix::fs::lsetxattr(&parent, OVERLAY_OPAQUE_XATTR, b"y", XattrFlags::empty())
            .map_err(|e| ImageError::io("set opaque xattr on", &parent)(e.into()))?;
        return Ok(None);
    }
    if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
        if hidden.starts_with(WHITEOUT_PREFIX) || hidden.is_empty() {
            return Ok(None); // other `.wh..wh.` entries are aufs bookkeeping
        }
        let target = parent.join(hidden);
        remove_existing(&target)?;
        // overlayfs reads a 0/0 character device as "deleted in this layer".
        rustix::fs::mknodat(
            CWD,
            &target,
            FileType::CharacterDevice,
            Mode::empty(),
            rustix::fs::makedev(0, 0),
        )
        .map_err(|e| ImageError::io("create whiteout", &target)(e.into()))?;
        return Ok(None);
    }

    let header = entry.header();
    let mode = header
        .mode()
        .map_err(ImageError::io("read mode of", &path))?
        & 0o7777;
    let uid = header.uid().map_err(ImageError::io("read uid of", &path))?;
    let gid = header.gid().map_err(ImageError::io("read gid of", &path))?;
    let mtime = header
        .mtime()
        .map_err(ImageError::io("read mtime of", &path))?;
    let kind = header.entry_type();
    let io_err = |context| ImageError::io(context, path.clone());

    match kind {
        EntryType::Directory => {
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    remove_existing(&path)?;
                    fs::create_dir(&path).map_err(io_err("create directory"))?;
                }
                Err(_) => fs::create_dir(&path).map_err(io_err("create directory"))?,
            }
            set_owner(&path, uid, gid)?;
            fs::set_permissions(&path, Permissions::from_mode(mode)).map_err(io_err("chmod"))?;
            apply_xattrs(entry, &path)?;
            return Ok(Some((path, mtime)));
        }
        EntryType::Regular | EntryType::Continuous => {
            remove_existing(&path)?;
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(io_err("create"))?;
            io::copy(entry, &mut file).map_err(io_err("write"))?;
            drop(file);
            set_owner(&path, uid, gid)?;
            fs::set_permissions(&path, Permissions::from_mode(mode)).map_err(io_err("chmod"))?;
        }
        EntryType::Symlink => {
            // Link targets are stored verbatim and never followed while unpacking;
            // they resolve inside the container's root at run time.
            let target = entry
                .link_name()
                .map_err(io_err("read link target of"))?
                .ok_or_else(|| ImageError::Invalid(format!("symlink {display} has no target")))?
                .into_owned();
            remove_existing(&path)?;
            std::os::unix::fs::symlink(&target, &path).map_err(io_err("create symlink"))?;
            set_owner(&path, uid, gid)?;
        }
        EntryType::Link => {
            let target = entry
                .link_name()
                .map_err(io_err("read link target of"))?
                .ok_or_else(|| ImageError::Invalid(format!("hard link {display} has no target")))?;
            let target_display = target.display().to_string();
            let target_components = clean_path(&target)
                .ok_or_else(|| ImageError::PathTraversal(target_display.clone()))?;
            let Some((target_name, target_parents)) = target_components.split_last() else {
                return Err(ImageError::PathTraversal(target_display));
            };
            let target_path =
                resolve_existing_dir(dest, target_parents, &target_display)?.join(target_name);
            remove_existing(&path)?;
            fs::hard_link(&target_path, &path).map_err(io_err("create hard link"))?;
            return Ok(None); // shares the target's inode and metadata
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            let file_type = match kind {
                EntryType::Char => FileType::CharacterDevice,
                EntryType::Block => FileType::BlockDevice,
                _ => FileType::Fifo,
            };
            let major = header.device_major().ok().flatten().unwrap_or(0);
            let minor = header.device_minor().ok().flatten().unwrap_or(0);
            remove_existing(&path)?;
            rustix::fs::mknodat(
                CWD,
                &path,
                file_type,
                Mode::empty(),
                rustix::fs::makedev(major, minor),
            )
            .map_err(|e| io_err("create device node")(e.into()))?;
            set_owner(&path, uid, gid)?;
            fs::set_permissions(&path, Permissions::from_mode(mode)).map_err(io_err("chmod"))?;
        }
        // PAX/GNU headers are folded into the entries they describe; anything
        // else (sparse files, unknown types) has no place in image layers.
        EntryType::XGlobalHeader
        | EntryType::XHeader
        | EntryType::GNULongName
        | EntryType::GNULongLink => {
            return Ok(None);
        }
        other => {
            return Err(ImageError::Invalid(format!(
                "layer entry {display}: unsupported tar entry type {other:?}"
            )));
        }
    }
    apply_xattrs(entry, &path)?;
    set_mtime(&path, mtime)?;
    Ok(None)
}

/// Lexically cleans an archive path into components below the root; `None` if
/// it climbs above the root. Leading `/` and `.` are dropped, as tar does.
fn clean_path(path: &Path) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                out.pop()?;
            }
            Component::Normal(name) => out.push(name.to_string_lossy().into_owned()),
        }
    }
    Some(out)
}

/// Walks `parents` under `dest`, creating missing directories; refuses to pass
/// through a symlink (it could point outside the layer) or a non-directory.
fn ensure_dir_chain(dest: &Path, parents: &[String], entry: &str) -> Result<PathBuf, ImageError> {
    let mut path = dest.to_path_buf();
    for name in parents {
        path.push(name);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(ImageError::PathTraversal(entry.to_owned()));
            }
            Ok(_) => {
                return Err(ImageError::Invalid(format!(
                    "layer entry {entry}: parent {} is not a directory",
                    path.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(&path).map_err(ImageError::io("create directory", &path))?;
                fs::set_permissions(&path, Permissions::from_mode(0o755))
                    .map_err(ImageError::io("chmod", &path))?;
            }
            Err(e) => return Err(ImageError::io("stat", path)(e)),
        }
    }
    Ok(path)
}

/// Like [`ensure_dir_chain`] but for an existing hard-link target: creates nothing.
fn resolve_existing_dir(
    dest: &Path,
    parents: &[String],
    entry: &str,
) -> Result<PathBuf, ImageError> {
    let mut path = dest.to_path_buf();
    for name in parents {
        path.push(name);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(ImageError::PathTraversal(entry.to_owned()));
            }
            _ => {
                return Err(ImageError::Invalid(format!(
                    "hard link target {entry} is not in this layer"
                )));
            }
        }
    }
    Ok(path)
}

/// Clears the way for a new entry (a later entry of the same name replaces it).
fn remove_existing(path: &Path) -> Result<(), ImageError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(ImageError::io("remove", path)),
        Ok(_) => fs::remove_file(path).map_err(ImageError::io("remove", path)),
        Err(_) => Ok(()),
    }
}

fn set_owner(path: &Path, uid: u64, gid: u64) -> Result<(), ImageError> {
    let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
        return Err(ImageError::Invalid(format!(
            "{}: uid/gid out of range",
            path.display()
        )));
    };
    if uid == u32::MAX || gid == u32::MAX {
        return Err(ImageError::Invalid(format!(
            "{}: uid/gid out of range",
            path.display()
        )));
    }
    rustix::fs::chownat(
        CWD,
        path,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| ImageError::io("chown", path)(e.into()))
}

fn set_mtime(path: &Path, mtime: u64) -> Result<(), ImageError> {
    let time = Timespec {
        tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    let times = Timestamps {
        last_access: time,
        last_modification: time,
    };
    rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| ImageError::io("set mtime of", path)(e.into()))
}

/// Extended attributes from PAX records (file capabilities, for instance).
fn apply_xattrs(entry: &mut tar::Entry<'_, impl Read>, path: &Path) -> Result<(), ImageError> {
    let Ok(Some(extensions)) = entry.pax_extensions() else {
        return Ok(());
    };
    for ext in extensions.flatten() {
        let Ok(key) = ext.key() else { continue };
        let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) else {
            continue;
        };
        if let Err(e) = rustix::fs::lsetxattr(path, name, ext.value_bytes(), XattrFlags::empty()) {
            // Some filesystems lack some namespaces; the file is still usable.
            tracing::warn!(path = %path.display(), xattr = name, error = %e, "skipping xattr");
        }
    }
    Ok(())
}

/// Counts and hashes what flows through it: the layer's diffID.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R> HashingReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Opens a layer blob and applies it (used by the snapshotter).
pub(crate) fn apply_layer_file(blob: &Path, dest: &Path) -> Result<AppliedLayer, ImageError> {
    let file = File::open(blob).map_err(ImageError::io("open", blob))?;
    apply_layer(file, dest)
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
