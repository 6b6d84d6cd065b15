//! Starting mongocryptd: its arguments and a detached child with its output discarded.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::error::MongocryptdError;

/// The argument that makes mongocryptd exit after idling, and the spec's value for it.
const IDLE_SHUTDOWN: &str = "--idleShutdownTimeoutSecs";
const DEFAULT_IDLE_SHUTDOWN: &str = "--idleShutdownTimeoutSecs=60";

/// The program run when no `mongocryptdSpawnPath` is given: found on the PATH.
pub(crate) const DEFAULT_PROGRAM: &str = "mongocryptd";

/// The arguments to spawn with: the user's, then `--idleShutdownTimeoutSecs=60` unless they set it (as
/// `--idleShutdownTimeoutSecs=N` or as the two arguments `--idleShutdownTimeoutSecs N`).
pub(crate) fn spawn_args(user_args: &[String]) -> Vec<String> {
    let sets_idle = user_args
        .iter()
        .any(|arg| arg == IDLE_SHUTDOWN || arg.strip_prefix(IDLE_SHUTDOWN).is_some_and(|rest| rest.starts_with('=')));
    let mut args = user_args.to_vec();
    if !sets_idle {
        args.push(DEFAULT_IDLE_SHUTDOWN.to_owned());
    }
    args
}

/// The program to run: `mongocryptdSpawnPath`, or `mongocryptd` on the PATH when it is unset or empty.
pub(crate) fn program(spawn_path: Option<&Path>) -> PathBuf {
    spawn_path.filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(DEFAULT_PROGRAM)).to_path_buf()
}

/// Starts `program` with `args`, detached: stdin, stdout and stderr discarded (the spec: its output is not the
/// driver's; `--logpath` keeps it), in a process group of its own so that a terminal's Ctrl-C to the
/// application does not stop the shared daemon, and waited for on a thread so that it leaves no zombie.
pub(crate) fn spawn(program: &Path, args: &[String]) -> Result<(), MongocryptdError> {
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    detach(&mut command);
    let mut child =
        command.spawn().map_err(|source| MongocryptdError::Spawn { path: program.to_path_buf(), source })?;
    let reaper = std::thread::Builder::new().name("mongocryptd-reaper".into()).spawn(move || {
        // Its exit status says nothing the driver acts on: mongocryptd exits when idle, or when another instance
        // already holds the port.
        let _ = child.wait();
    });
    // Without a thread, the child is only reaped when this process exits; mongocryptd runs all the same.
    drop(reaper);
    Ok(())
}

#[cfg(unix)]
fn detach(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    command.process_group(0);
}

#[cfg(windows)]
fn detach(command: &mut Command) {
    use std::os::windows::process::CommandExt;
    /// No console of the parent's, and Ctrl-C of the parent's console not delivered.
    const DETACHED_PROCESS: u32 = 0x0000_0008;
    const CREATE_NEW_PROCESS_GROUP: u32 = 0x0000_0200;
    command.creation_flags(DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP);
}

#[cfg(not(any(unix, windows)))]
fn detach(_command: &mut Command) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn the_idle_shutdown_is_added_unless_set_in_either_form() {
        assert_eq!(spawn_args(&[]), strings(&["--idleShutdownTimeoutSecs=60"]));
        assert_eq!(spawn_args(&strings(&["--port=1"])), strings(&["--port=1", "--idleShutdownTimeoutSecs=60"]));
        for set in [&["--idleShutdownTimeoutSecs=5"][..], &["--idleShutdownTimeoutSecs", "5"]] {
            assert_eq!(spawn_args(&strings(set)), strings(set));
        }
        // A longer flag that merely starts the same is not the idle shutdown.
        assert_eq!(
            spawn_args(&strings(&["--idleShutdownTimeoutSecsX=1"])),
            strings(&["--idleShutdownTimeoutSecsX=1", "--idleShutdownTimeoutSecs=60"])
        );
    }

    #[test]
    fn the_program_defaults_to_mongocryptd_on_the_path() {
        assert_eq!(program(None), Path::new("mongocryptd"));
        assert_eq!(program(Some(Path::new(""))), Path::new("mongocryptd"));
        assert_eq!(program(Some(Path::new("/opt/m/bin/mongocryptd"))), Path::new("/opt/m/bin/mongocryptd"));
    }
}
