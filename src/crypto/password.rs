//! Where a repository password comes from: `COFFER_PASSWORD`, a file (`--password-file` /
//! `COFFER_PASSWORD_FILE`), a command's output (`--password-command` /
//! `COFFER_PASSWORD_COMMAND`), or a prompt on the terminal. Nightly runs from cron or systemd
//! have no terminal, so they must use one of the first three; without any, the error names
//! them instead of waiting for input that never comes.

use crate::error::{Error, Result};
use std::path::PathBuf;
use zeroize::Zeroizing;

pub type Password = Zeroizing<String>;

#[derive(Debug, Clone)]
pub enum Source {
    Given(Password),
    File(PathBuf),
    Command(String),
    /// Ask on the terminal (or fail, naming the other ways, when there is none).
    Prompt,
    /// The same for a copy's source repository (whose other ways are `--from-password-…`
    /// and `COFFER_FROM_PASSWORD…`).
    PromptFrom,
}

impl Source {
    /// The password from the environment (`COFFER_PASSWORD`, `COFFER_PASSWORD_FILE`,
    /// `COFFER_PASSWORD_COMMAND`, in that order), else a prompt.
    pub fn from_env() -> Source {
        Source::from_env_prefixed("COFFER")
    }

    /// The same with another prefix (`COFFER_FROM` for a copy's source repository).
    pub fn from_env_prefixed(prefix: &str) -> Source {
        let var = |name: &str| std::env::var(format!("{prefix}_{name}")).ok().filter(|v| !v.is_empty());
        if let Some(p) = var("PASSWORD") {
            Source::Given(Zeroizing::new(p))
        } else if let Some(f) = var("PASSWORD_FILE") {
            Source::File(f.into())
        } else if let Some(c) = var("PASSWORD_COMMAND") {
            Source::Command(c)
        } else if prefix == "COFFER_FROM" {
            Source::PromptFrom
        } else {
            Source::Prompt
        }
    }

    /// Flags first (`--password-file`, `--password-command`), then the environment.
    pub fn from_args(file: Option<PathBuf>, command: Option<String>) -> Source {
        Source::file_or_command(file, command, Source::from_env)
    }

    /// A password file, else a command, else `otherwise` (the flags and variables of a
    /// copy's source, a set definition's destination, …).
    pub fn file_or_command(
        file: Option<PathBuf>,
        command: Option<String>,
        otherwise: impl FnOnce() -> Source,
    ) -> Source {
        match (file, command) {
            (Some(f), _) => Source::File(f),
            (None, Some(c)) => Source::Command(c),
            (None, None) => otherwise(),
        }
    }

    /// The password for `repo`. `confirm` asks twice on a terminal (a new password).
    pub fn get(&self, repo: &str, confirm: bool) -> Result<Password> {
        match self {
            Source::Given(p) => Ok(p.clone()),
            Source::File(path) => {
                let text = Zeroizing::new(
                    std::fs::read_to_string(path)
                        .map_err(|e| Error::InvalidInput(format!("password file {}: {e}", path.display())))?,
                );
                non_empty(first_line(&text), &format!("password file {}", path.display()))
            }
            Source::Command(cmd) => run_command(cmd),
            Source::Prompt => prompt(repo, confirm, ("COFFER", "--")),
            Source::PromptFrom => prompt(repo, confirm, ("COFFER_FROM", "--from-")),
        }
    }
}

/// A password file or command output holds the password on its first line (a trailing
/// newline is not part of it, as for restic and Borg).
fn first_line(text: &str) -> Password {
    Zeroizing::new(text.lines().next().unwrap_or("").to_string())
}

fn non_empty(p: Password, what: &str) -> Result<Password> {
    if p.is_empty() {
        return Err(Error::InvalidInput(format!("{what} gives an empty password")));
    }
    Ok(p)
}

fn run_command(cmd: &str) -> Result<Password> {
    let what = format!("password command {cmd:?}");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| Error::InvalidInput(format!("{what}: {e}")))?;
    if !out.status.success() {
        return Err(Error::InvalidInput(format!("{what} failed ({})", out.status)));
    }
    let text = Zeroizing::new(
        String::from_utf8(out.stdout)
            .map_err(|_| Error::InvalidInput(format!("{what} printed a password that is not UTF-8")))?,
    );
    non_empty(first_line(&text), &what)
}

/// `names`: the variables' prefix and the flags' prefix to name when there is no terminal.
fn prompt(repo: &str, confirm: bool, names: (&str, &str)) -> Result<Password> {
    use std::io::IsTerminal;
    let (var, flag) = names;
    if !std::io::stdin().is_terminal() {
        return Err(Error::InvalidInput(format!(
            "{repo}: a password is needed and there is no terminal to ask on: set {var}_PASSWORD, \
             give {flag}password-file FILE ({var}_PASSWORD_FILE) or {flag}password-command CMD ({var}_PASSWORD_COMMAND)"
        )));
    }
    let ask = |q: &str| {
        rpassword::prompt_password(q)
            .map(Zeroizing::new)
            .map_err(|e| Error::InvalidInput(format!("reading the password: {e}")))
    };
    let first = non_empty(ask(&format!("password for {repo}: "))?, "the terminal")?;
    if confirm && *ask("again: ")? != *first {
        return Err(Error::InvalidInput("the two passwords differ".into()));
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_command_give_the_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "secret one\nignored\n").unwrap();
        assert_eq!(*Source::File(f).get("r", false).unwrap(), "secret one");
        assert_eq!(*Source::Command("echo cmd-pw".into()).get("r", false).unwrap(), "cmd-pw");
        let err = Source::Command("exit 3".into()).get("r", false).unwrap_err();
        assert!(err.to_string().contains("failed"), "{err}");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        assert!(Source::File(empty).get("r", false).unwrap_err().to_string().contains("empty password"));
        let missing = Source::File(dir.path().join("nope")).get("r", false).unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }
}
