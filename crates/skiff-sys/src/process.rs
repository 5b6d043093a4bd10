//! Process-level operations for the container supervisor.

use std::io;

use rustix::process::{Pid, Signal};

/// Whether this process runs with effective uid 0 (root).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Makes this process the reaper of its orphaned descendants
/// (`PR_SET_CHILD_SUBREAPER`), so container processes are reaped by the
/// supervisor and their exit codes are not lost.
pub fn set_child_subreaper() -> io::Result<()> {
    let me = rustix::process::getpid();
    rustix::process::set_child_subreaper(Some(me))?;
    Ok(())
}

/// Starts a new session, detaching this process from the caller's terminal
/// and process group so it outlives the agent that started it.
pub fn new_session() -> io::Result<()> {
    match rustix::process::setsid() {
        Ok(_) => Ok(()),
        // Already a group leader (e.g. started with a process group): fine.
        Err(rustix::io::Errno::PERM) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// This boot of the host: the kernel's random boot id, new at every boot
/// (`/proc/sys/kernel/random/boot_id`); `None` if it cannot be read.
pub fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_owned())
}

/// CPU time the whole host has spent busy since boot, summed over its CPUs:
/// user, nice, system, irq and softirq time from `/proc/stat` (not idle or
/// I/O wait; guest time is already in user; steal time is another
/// machine's). For benchmarks: the difference over a phase is what every
/// process and the kernel spent on it, whichever process did the work.
pub fn host_busy_cpu_time() -> io::Result<std::time::Duration> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let ticks = parse_busy_ticks(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no cpu line in /proc/stat"))?;
    Ok(ticks_to_duration(ticks))
}

/// CPU time process `pid` has spent so far, user and system, over all its
/// threads (fields 14 and 15 of `/proc/<pid>/stat`; not its children's).
pub fn process_cpu_time(pid: u32) -> io::Result<std::time::Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = parse_cpu_ticks(&stat).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("malformed /proc/{pid}/stat"),
        )
    })?;
    Ok(ticks_to_duration(ticks))
}

fn ticks_to_duration(ticks: u64) -> std::time::Duration {
    let per_second = rustix::param::clock_ticks_per_second().max(1);
    std::time::Duration::from_secs(ticks / per_second)
        + std::time::Duration::from_nanos((ticks % per_second) * 1_000_000_000 / per_second)
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let mut rest = stat_fields(stat)?.skip(11);
    let utime: u64 = rest.next()?.parse().ok()?;
    let stime: u64 = rest.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Busy ticks from the aggregate `cpu` line of `/proc/stat`: user, nice,
/// system, irq and softirq (fields 1-3, 6 and 7).
fn parse_busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let field = |i: usize| fields.get(i).copied();
    Some(field(0)? + field(1)? + field(2)? + field(5)? + field(6)?)
}

/// Sends signal number `signal` to process `pid`.
pub fn kill(pid: i32, signal: i32) -> io::Result<()> {
    let pid = Pid::from_raw(pid).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let signal = Signal::from_named_raw(signal)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    rustix::process::kill_process(pid, signal)?;
    Ok(())
}

/// Whether process `pid` exists (zombies count as existing).
pub fn process_exists(pid: i32) -> bool {
    match Pid::from_raw(pid) {
        Some(pid) => rustix::process::test_kill_process(pid).is_ok(),
        None => false,
    }
}

/// The start time of process `pid` in clock ticks since boot (field 22 of
/// `/proc/<pid>/stat`), used to tell a live process from a reused PID.
pub fn process_start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_start_ticks(&stat)
}

/// [`process_start_ticks`] of a process that has not ended: none for a
/// zombie (its exit not reaped yet, e.g. an orphan whose new parent never
/// waits for it).
pub fn live_process_start_ticks(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    if matches!(parse_state(&stat)?, 'Z' | 'X' | 'x') {
        return None;
    }
    parse_start_ticks(&stat)
}

/// The state letter (field 3) of a `/proc/<pid>/stat` line.
fn parse_state(stat: &str) -> Option<char> {
    stat_fields(stat)?.next()?.chars().next()
}

/// The fields of a `/proc/<pid>/stat` line from field 3 (state) on: past
/// the command name (field 2), which may hold spaces and parentheses, so
/// past the last ')'.
fn stat_fields(stat: &str) -> Option<std::str::SplitWhitespace<'_>> {
    Some(stat[stat.rfind(')')? + 1..].split_whitespace())
}

fn parse_start_ticks(stat: &str) -> Option<u64> {
    // Starttime is field 22.
    stat_fields(stat)?.nth(19)?.parse().ok()
}

/// How a waited-for child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildExit {
    /// `exit(code)`.
    Exited(i32),
    /// Killed by this signal number.
    Signaled(i32),
}

impl ChildExit {
    /// The exit code as a shell reports it: `128 + signal` for a signal.
    pub fn code(self) -> i32 {
        match self {
            ChildExit::Exited(code) => code,
            ChildExit::Signaled(sig) => 128 + sig,
        }
    }
}

/// Waits for any child; `None` when there are no children left.
pub fn wait_any_child() -> io::Result<Option<(i32, ChildExit)>> {
    loop {
        match rustix::process::wait(rustix::process::WaitOptions::empty()) {
            Ok(Some((pid, status))) => {
                let Some(exit) = to_exit(status) else {
                    continue;
                };
                return Ok(Some((pid.as_raw_nonzero().get(), exit)));
            }
            Ok(None) => return Ok(None),
            Err(rustix::io::Errno::CHILD) => return Ok(None),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn to_exit(status: rustix::process::WaitStatus) -> Option<ChildExit> {
    if let Some(code) = status.exit_status() {
        Some(ChildExit::Exited(code))
    } else {
        status.terminating_signal().map(ChildExit::Signaled)
    }
}

/// Reaps child `pid` if it has ended; `None` while it runs.
pub fn try_wait_child(pid: i32) -> io::Result<Option<ChildExit>> {
    let p = Pid::from_raw(pid).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    match rustix::process::waitpid(Some(p), rustix::process::WaitOptions::NOHANG) {
        Ok(Some((_, status))) => Ok(to_exit(status)),
        Ok(None) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Waits for child `pid` to end.
pub fn wait_child(pid: i32) -> io::Result<ChildExit> {
    let p = Pid::from_raw(pid).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    loop {
        match rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty()) {
            Ok(Some((_, status))) => {
                if let Some(exit) = to_exit(status) {
                    return Ok(exit);
                }
            }
            Ok(None) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Which side of a [`fork`] this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    /// The new process.
    Child,
    /// The caller, with the child's PID.
    Parent(i32),
}

/// Forks this process. Refused unless the process has exactly one thread:
/// the child would hold a copy of this thread only, with any lock another
/// thread held (the allocator's, stdio's) locked forever. A process that
/// starts no threads (the supervisor zygote) forks safely and cheaply: the
/// child skips the exec, dynamic loading and relocation of a large binary.
pub fn fork() -> io::Result<Forked> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("fork needs a single-threaded process; this one has {threads} threads"),
        ));
    }
    // SAFETY: the process has one thread (checked above, and nothing in it
    // can start another between the check and the call), so the child's
    // copy of memory holds no lock some other thread owns.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// The number of threads of this process (field 20 of `/proc/self/stat`).
pub fn thread_count() -> io::Result<usize> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    parse_num_threads(&stat)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc/self/stat"))
}

fn parse_num_threads(stat: &str) -> Option<usize> {
    // After the command name: field 3 (state) is index 0, num_threads index 17.
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(17)?
        .parse()
        .ok()
}

/// Points this process's stdin, stdout and stderr at `stdin`, `stdout` and
/// `stderr` (the originals stay open; drop them after).
pub fn redirect_stdio(
    stdin: impl std::os::fd::AsFd,
    stdout: impl std::os::fd::AsFd,
    stderr: impl std::os::fd::AsFd,
) -> io::Result<()> {
    rustix::stdio::dup2_stdin(stdin)?;
    rustix::stdio::dup2_stdout(stdout)?;
    rustix::stdio::dup2_stderr(stderr)?;
    Ok(())
}

/// Sets this process's command name (`comm`, what `ps -o comm` and `top`
/// show; at most 15 bytes are kept). Its arguments stay as they were.
pub fn set_name(name: &std::ffi::CStr) -> io::Result<()> {
    rustix::thread::set_name(name)?;
    Ok(())
}

/// A pidfd for process `pid`: readable once the process has ended, and
/// never another process's, even if the PID is reused after it is reaped.
pub fn pidfd_open(pid: i32) -> io::Result<std::os::fd::OwnedFd> {
    let pid = Pid::from_raw(pid).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    Ok(rustix::process::pidfd_open(
        pid,
        rustix::process::PidfdFlags::empty(),
    )?)
}

/// Waits (asynchronously, on the tokio reactor) until the process behind
/// `pidfd` (from [`pidfd_open`]) has ended. It does not reap the process.
pub async fn pidfd_exited(pidfd: std::os::fd::OwnedFd) -> io::Result<()> {
    use tokio::io::{Interest, unix::AsyncFd};
    // SAFETY: the `OwnedFd` is moved into the registration, so the
    // descriptor stays open (and is not reused) until it is dropped.
    let fd = unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)?;
    let _ready = fd.readable().await?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn busy_ticks_leave_out_idle_iowait_and_steal() {
        let stat =
            "cpu  100 5 40 9000 300 7 3 50 0 0\ncpu0 50 2 20 4500 150 3 1 25 0 0\nintr 1 2\n";
        assert_eq!(parse_busy_ticks(stat), Some(100 + 5 + 40 + 7 + 3));
        assert_eq!(parse_busy_ticks("cpu0 1 2 3 4 5 6 7\n"), None);
        assert_eq!(parse_busy_ticks("cpu  1 2 3\n"), None);
        // The host's own figure moves forward.
        let a = host_busy_cpu_time().unwrap();
        let mut x = 0u64;
        let until = std::time::Instant::now() + std::time::Duration::from_millis(50);
        while std::time::Instant::now() < until {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(host_busy_cpu_time().unwrap() > a);
    }

    #[test]
    fn cpu_ticks_from_stat() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 1 0 98765 0";
        assert_eq!(parse_cpu_ticks(stat), Some(250 + 37));
        assert_eq!(parse_cpu_ticks("42 (x) S 1 2"), None);
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(30) {}
        assert!(process_cpu_time(std::process::id()).unwrap() > std::time::Duration::ZERO);
    }

    #[test]
    fn start_ticks_from_stat() {
        let stat =
            "1234 (a b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_start_ticks(stat), Some(98765));
        assert_eq!(parse_start_ticks("garbage"), None);
        assert_eq!(parse_state(stat), Some('S'));
        assert_eq!(parse_state("1 (x) Z 1"), Some('Z'));
        assert_eq!(parse_state("garbage"), None);
        let me = rustix::process::getpid().as_raw_nonzero().get();
        assert!(process_start_ticks(me).is_some());
        assert_eq!(live_process_start_ticks(me), process_start_ticks(me));
        assert!(process_exists(me));
    }

    #[test]
    fn a_zombie_is_not_live() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        // Not waited for: it stays a zombie once it has ended.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while live_process_start_ticks(pid).is_some() {
            assert!(std::time::Instant::now() < deadline, "`true` never ended");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(process_start_ticks(pid).is_some());
        child.wait().unwrap();
    }

    #[test]
    fn fork_is_refused_with_threads_and_thread_count_is_read() {
        let stat = "77 (x) y) S 1 77 77 0 -1 0 0 0 0 0 0 0 0 0 20 0 3 0 500 1 1";
        assert_eq!(parse_num_threads(stat), Some(3));
        assert_eq!(parse_num_threads("garbage"), None);
        // The test harness runs tests on threads: more than one here.
        let here = thread_count().unwrap();
        let helper =
            std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(200)));
        assert!(thread_count().unwrap() > here.min(1));
        let err = fork().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
        helper.join().unwrap();
    }

    #[test]
    fn a_pidfd_becomes_readable_when_its_process_ends() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let fd = pidfd_open(pid).unwrap();
        let mut fds = [rustix::event::PollFd::new(
            &fd,
            rustix::event::PollFlags::IN,
        )];
        assert_eq!(
            rustix::event::poll(
                &mut fds,
                Some(&rustix::event::Timespec {
                    tv_sec: 0,
                    tv_nsec: 0
                })
            )
            .unwrap(),
            0
        );
        child.wait().unwrap();
        assert_eq!(rustix::event::poll(&mut fds, None).unwrap(), 1);
        assert_eq!(
            pidfd_open(0).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[tokio::test]
    async fn pidfd_exited_returns_once_the_process_ends() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.3")
            .spawn()
            .unwrap();
        let fd = pidfd_open(i32::try_from(child.id()).unwrap()).unwrap();
        let began = std::time::Instant::now();
        pidfd_exited(fd).await.unwrap();
        assert!(began.elapsed() >= std::time::Duration::from_millis(200));
        // Ended, not reaped: the exit status is still there for its parent.
        assert!(child.try_wait().unwrap().is_some_and(|s| s.success()));
    }

    #[test]
    fn boot_id_is_a_stable_uuid() {
        let id = boot_id().unwrap();
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(id.matches('-').count(), 4, "{id}");
        assert_eq!(boot_id(), Some(id));
    }

    #[test]
    fn exit_codes() {
        assert_eq!(ChildExit::Exited(3).code(), 3);
        assert_eq!(ChildExit::Signaled(9).code(), 137);
    }
}
