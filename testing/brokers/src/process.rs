//! Child processes that leave nothing behind: each is the leader of a process group of its own
//! (so that what *it* starts, such as `spin up`'s `spin trigger http`, is stopped with it), and
//! on Linux the kernel signals it when this process dies, however it dies (a killed test runner
//! included).
//!
//! The kernel's "parent died" signal follows the *thread* that forked the child, not the process,
//! and test harnesses run cases on threads that end while their shared fixtures live on: children
//! are therefore forked by one thread that lives as long as the process.

use std::io;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

type Request = (Command, mpsc::Sender<io::Result<Child>>);

/// What the kernel sends a child when this process dies.
#[derive(Clone, Copy, Debug)]
pub enum OnParentDeath {
    /// SIGTERM, for a program that then stops its own children (`spin up` does, nanohost stops
    /// gracefully): the kernel signals the child alone, not its group.
    Terminate,
    /// SIGKILL, for a program that starts nothing (a broker).
    Kill,
}

/// Starts `cmd` as the leader of a new process group, signalled as `on_parent_death` says when
/// this process ends.
pub fn spawn(mut cmd: Command, on_parent_death: OnParentDeath) -> io::Result<Child> {
    use std::os::unix::process::CommandExt;
    let on_parent_death = match on_parent_death {
        OnParentDeath::Terminate => libc::SIGTERM,
        OnParentDeath::Kill => libc::SIGKILL,
    };
    cmd.process_group(0);
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: prctl, getppid and kill are async-signal-safe; nothing is allocated.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, on_parent_death as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died before the request took effect.
                if libc::getppid() != parent {
                    libc::kill(libc::getpid(), on_parent_death);
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = on_parent_death;
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("child-spawner".into())
            .spawn(move || {
                for (mut cmd, answer) in rx {
                    let _ = answer.send(cmd.spawn());
                }
            })
            .expect("start the thread that starts child processes");
        Mutex::new(tx)
    });
    let (answer, started) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .send((cmd, answer))
        .map_err(|_| io::Error::other("the child-spawner thread is gone"))?;
    started
        .recv()
        .map_err(|_| io::Error::other("the child-spawner thread is gone"))?
}

/// Stops the group `child` leads: SIGTERM to every member, up to `grace` for the leader to
/// exit, then SIGKILL to whatever of the group is left, and reaps the leader.
pub fn stop_group(child: &mut Child, grace: Duration) {
    let group = child.id() as libc::pid_t;
    // SAFETY: kill(2) on the group our own child leads; no memory is touched.
    unsafe {
        libc::kill(-group, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Members outlive a leader that did not wait for them; the group id stays theirs.
    // SAFETY: as above.
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The processes alive in process group `group` (zombies excluded), from /proc.
pub fn group_members(group: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // `pid (comm) state ppid pgrp ...`: comm may hold spaces and parentheses.
            let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.first() != Some(&"Z") && fields.get(2) == Some(&group.to_string().as_str())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shell with two children of its own that, like `spin up` with its triggers, stops them
    /// on SIGTERM (killed, it would leave them).
    fn shell_with_grandchild() -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "trap 'kill 0' TERM; sleep 300 & sleep 300 & wait"]);
        cmd
    }

    fn members_eventually(group: u32, wanted: usize) -> Vec<u32> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let members = group_members(group);
            if members.len() == wanted || Instant::now() >= deadline {
                return members;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn stopping_a_group_stops_the_grandchildren_too() {
        let mut child = spawn(shell_with_grandchild(), OnParentDeath::Kill).unwrap();
        let group = child.id();
        assert_eq!(members_eventually(group, 3).len(), 3, "sh and two sleeps");
        stop_group(&mut child, Duration::from_secs(5));
        assert_eq!(members_eventually(group, 0), Vec::<u32>::new());
    }

    /// A child started from a thread that then ends lives on: the "parent died" signal is tied
    /// to the spawner thread, which lives as long as the process.
    #[test]
    fn a_child_outlives_the_thread_that_asked_for_it() {
        let mut child = std::thread::spawn(|| spawn(shell_with_grandchild(), OnParentDeath::Kill))
            .join()
            .unwrap()
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child died with the thread"
        );
        stop_group(&mut child, Duration::from_secs(5));
    }

    /// The runner of a test being killed (SIGKILL: no destructor runs) still stops its
    /// children's groups. This test binary is run again as that runner.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_killed_runner_leaves_nothing_running() {
        use std::io::BufRead;
        let mut runner = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "process::tests::runner_to_be_killed",
                "--ignored",
                "--nocapture",
            ])
            .env("TEST_BROKERS_RUNNER_TO_BE_KILLED", "1")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(runner.stdout.take().unwrap());
        let group: u32 = stdout
            .lines()
            .map_while(Result::ok)
            .find_map(|line| line.strip_prefix("group ")?.trim().parse().ok())
            .expect("the runner names its child's group");
        assert_eq!(members_eventually(group, 3).len(), 3, "sh and two sleeps");
        runner.kill().unwrap();
        runner.wait().unwrap();
        assert_eq!(members_eventually(group, 0), Vec::<u32>::new());
    }

    #[test]
    #[ignore = "not a test: the runner a_killed_runner_leaves_nothing_running kills"]
    // Killed before it could wait: the kernel's parent-death signal, not a wait, is what ends the
    // child, and that is what the test checks.
    #[allow(clippy::zombie_processes)]
    fn runner_to_be_killed() {
        if std::env::var_os("TEST_BROKERS_RUNNER_TO_BE_KILLED").is_none() {
            return;
        }
        let child = spawn(shell_with_grandchild(), OnParentDeath::Terminate).unwrap();
        println!("group {}", child.id());
        std::thread::sleep(Duration::from_secs(300));
    }
}
