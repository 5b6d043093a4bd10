//! OCI mount options (`["rbind", "ro", "rslave"]`, `["nosuid", "mode=755"]`)
//! as mount flags, propagation and filesystem data: the pure part of
//! mounting a container's filesystems.

use rustix::mount::{MountFlags, MountPropagationFlags};

/// A mount's options, split the way the kernel takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags for the mount call (and for the read-only remount of a bind).
    pub flags: MountFlags,
    /// Read-only (`ro`).
    pub readonly: bool,
    /// A bind mount (`bind` or `rbind`).
    pub bind: bool,
    /// Recursive bind (`rbind`).
    pub recursive: bool,
    /// Propagation to apply after mounting (`rprivate`, `rslave`, `rshared`, ...).
    pub propagation: Option<MountPropagationFlags>,
    /// Everything else, comma-joined, for the filesystem (`mode=755,size=65536k`).
    pub data: String,
}

/// Splits OCI mount `options`. Unknown words go to the filesystem as data,
/// as runc passes them.
pub fn parse(options: &[String]) -> MountOptions {
    let mut out = MountOptions {
        flags: MountFlags::empty(),
        readonly: false,
        bind: false,
        recursive: false,
        propagation: None,
        data: String::new(),
    };
    let mut data: Vec<&str> = Vec::new();
    for option in options {
        let (set, clear) = match option.as_str() {
            "ro" => {
                out.readonly = true;
                continue;
            }
            "rw" => {
                out.readonly = false;
                continue;
            }
            "bind" => {
                out.bind = true;
                continue;
            }
            "rbind" => {
                out.bind = true;
                out.recursive = true;
                continue;
            }
            "private" | "rprivate" | "slave" | "rslave" | "shared" | "rshared" | "unbindable"
            | "runbindable" => {
                out.propagation = Some(propagation(option));
                continue;
            }
            "nosuid" => (MountFlags::NOSUID, MountFlags::empty()),
            "suid" => (MountFlags::empty(), MountFlags::NOSUID),
            "nodev" => (MountFlags::NODEV, MountFlags::empty()),
            "dev" => (MountFlags::empty(), MountFlags::NODEV),
            "noexec" => (MountFlags::NOEXEC, MountFlags::empty()),
            "exec" => (MountFlags::empty(), MountFlags::NOEXEC),
            "sync" => (MountFlags::SYNCHRONOUS, MountFlags::empty()),
            "async" => (MountFlags::empty(), MountFlags::SYNCHRONOUS),
            "dirsync" => (MountFlags::DIRSYNC, MountFlags::empty()),
            "mand" => (
                MountFlags::PERMIT_MANDATORY_FILE_LOCKING,
                MountFlags::empty(),
            ),
            "nomand" => (
                MountFlags::empty(),
                MountFlags::PERMIT_MANDATORY_FILE_LOCKING,
            ),
            "noatime" => (MountFlags::NOATIME, MountFlags::empty()),
            "atime" => (MountFlags::empty(), MountFlags::NOATIME),
            "nodiratime" => (MountFlags::NODIRATIME, MountFlags::empty()),
            "diratime" => (MountFlags::empty(), MountFlags::NODIRATIME),
            "relatime" => (MountFlags::RELATIME, MountFlags::empty()),
            "norelatime" => (MountFlags::empty(), MountFlags::RELATIME),
            "strictatime" => (MountFlags::STRICTATIME, MountFlags::empty()),
            "nostrictatime" => (MountFlags::empty(), MountFlags::STRICTATIME),
            _ => {
                data.push(option);
                continue;
            }
        };
        out.flags = (out.flags | set) - clear;
    }
    out.data = data.join(",");
    out
}

fn propagation(word: &str) -> MountPropagationFlags {
    let recursive = if word.starts_with('r') {
        MountPropagationFlags::REC
    } else {
        MountPropagationFlags::empty()
    };
    let kind = match word.trim_start_matches('r') {
        "private" => MountPropagationFlags::PRIVATE,
        "slave" => MountPropagationFlags::DOWNSTREAM,
        "shared" => MountPropagationFlags::SHARED,
        _ => MountPropagationFlags::UNBINDABLE,
    };
    kind | recursive
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn flags_data_and_propagation() {
        let dev = parse(&words(&[
            "nosuid",
            "strictatime",
            "mode=755",
            "size=65536k",
        ]));
        assert_eq!(dev.flags, MountFlags::NOSUID | MountFlags::STRICTATIME);
        assert_eq!(dev.data, "mode=755,size=65536k");
        assert!(!dev.bind && !dev.readonly && dev.propagation.is_none());

        let bind = parse(&words(&["rbind", "ro", "rslave"]));
        assert!(bind.bind && bind.recursive && bind.readonly);
        assert_eq!(
            bind.propagation,
            Some(MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC)
        );
        assert_eq!(bind.data, "");

        let plain = parse(&words(&["bind", "rw", "private"]));
        assert!(plain.bind && !plain.recursive && !plain.readonly);
        assert_eq!(plain.propagation, Some(MountPropagationFlags::PRIVATE));

        // A later word wins over an earlier one.
        let toggled = parse(&words(&["ro", "rw", "noexec", "exec", "nodev"]));
        assert!(!toggled.readonly);
        assert_eq!(toggled.flags, MountFlags::NODEV);

        let shared = parse(&words(&["rbind", "rshared"]));
        assert_eq!(
            shared.propagation,
            Some(MountPropagationFlags::SHARED | MountPropagationFlags::REC)
        );
    }
}
