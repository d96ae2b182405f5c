//! Reading the environment with clap, reporting every bad variable at once.
//!
//! Each setting is a clap argument with `env = "NAME"`, a default and a typed value parser; clap
//! does the reading and the parsing. Two things are added on top, by hand:
//! - **Every problem at once.** clap stops at the first value it cannot parse, while
//!   `config check` must list them all (a deployment is fixed in one round). So each variable is
//!   first parsed by clap *alone* (a one-argument command); one that fails is recorded, and the
//!   full parse then runs without it, on its default, so that the cross-field checks still see a
//!   whole configuration — as the hand-written reader did.
//! - **A blank variable is unset.** `FOO=` (a compose file's `${FOO:-}`, an empty Helm value)
//!   has always meant "the default"; clap would parse the empty string instead.

use std::ffi::OsStr;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Command, FromArgMatches};
use secrecy::SecretString;

/// Variables whose values are never printed, not even in a problem line.
const SECRETS: &[&str] = &["JWT_DEV_SECRET", "REDIS_URL"];

/// A whole number of seconds (`…_SECONDS`).
pub(crate) fn secs(v: &str) -> Result<Duration, std::num::ParseIntError> {
    v.trim().parse().map(Duration::from_secs)
}

/// A whole number of milliseconds (`…_MS`).
pub(crate) fn millis(v: &str) -> Result<Duration, std::num::ParseIntError> {
    v.trim().parse().map(Duration::from_millis)
}

/// Any `FromStr` value, surrounding blanks ignored (as before clap read the variables).
pub(crate) fn trimmed<T: FromStr>(v: &str) -> Result<T, T::Err> {
    v.trim().parse()
}

/// A secret: kept out of `Debug` and logs.
pub(crate) fn secret(v: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(v))
}

/// The clap command of the settings `T` (arguments only; nothing is read from argv).
pub(crate) fn command<T: Args>() -> Command {
    T::augment_args(
        Command::new("environment")
            .no_binary_name(true)
            .disable_help_flag(true)
            .disable_version_flag(true),
    )
}

/// A variable the configuration reads, as clap declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variable {
    pub name: String,
    /// The default clap applies when it is unset; `None` when there is none, or when it
    /// depends on the profile or on another variable (filled in after clap).
    pub default: Option<String>,
}

/// The variables `T` reads, in declaration order.
pub(crate) fn variables<T: Args>() -> Vec<Variable> {
    command::<T>()
        .get_arguments()
        .filter_map(|a| {
            let name = a.get_env()?.to_string_lossy().into_owned();
            let default = a
                .get_default_values()
                .first()
                .map(|d| d.to_string_lossy().into_owned());
            Some(Variable { name, default })
        })
        .collect()
}

/// `T` with every default, whatever the process environment holds (`Default` impls, tests).
pub(crate) fn defaults<T: Args + FromArgMatches>() -> T {
    let cmd = command::<T>().mut_args(|a| a.env(None::<&'static str>));
    parse(cmd)
}

/// `T` read from the process environment, and one line per variable that did not parse (that
/// variable then has its default).
pub(crate) fn read<T: Args + FromArgMatches>() -> (T, Vec<String>) {
    let mut problems = Vec::new();
    let cmd = command::<T>().mut_args(|arg| {
        let Some(name) = arg.get_env().map(|n| n.to_string_lossy().into_owned()) else {
            return arg;
        };
        let value = std::env::var_os(&name);
        let value = value.as_deref().map(OsStr::to_string_lossy);
        let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
            return arg.env(None::<&'static str>);
        };
        let alone = Command::new("variable")
            .no_binary_name(true)
            .arg(arg.clone());
        match alone.try_get_matches_from(std::iter::empty::<String>()) {
            Ok(_) => arg,
            Err(e) => {
                let why = std::error::Error::source(&e)
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| e.kind().to_string());
                problems.push(if SECRETS.contains(&name.as_str()) {
                    format!("{name} (value redacted): {why}")
                } else {
                    format!("{name}={value:?}: {why}")
                });
                arg.env(None::<&'static str>)
            }
        }
    });
    (parse(cmd), problems)
}

/// The matches of `cmd` with no argv: the variables kept and the defaults. Each variable was
/// parsed alone first, so this cannot fail unless the definitions are wrong (a bug every test
/// would hit, since `Config::default()` comes through here too).
fn parse<T: FromArgMatches>(cmd: Command) -> T {
    let matches = cmd
        .try_get_matches_from(std::iter::empty::<String>())
        .unwrap_or_else(|e| panic!("the configuration's clap definitions: {e}"));
    T::from_arg_matches(&matches)
        .unwrap_or_else(|e| panic!("the configuration's clap definitions: {e}"))
}
