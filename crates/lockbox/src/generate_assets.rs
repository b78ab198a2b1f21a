//! `lockbox generate-assets DIR` (hidden): the man pages and shell
//! completions that the Debian package installs (`deploy/debian/build`),
//! made from the command line's own definition so that they never drift
//! from it.

use std::path::Path;

use crate::CliError;

/// The shells whose completions the package installs, each in the file
/// name its vendor directory expects (`lockbox.bash`, `_lockbox`,
/// `lockbox.fish`).
const SHELLS: [clap_complete::Shell; 3] = [
    clap_complete::Shell::Bash,
    clap_complete::Shell::Zsh,
    clap_complete::Shell::Fish,
];

/// Writes `DIR/man/lockbox.1` and one `lockbox-COMMAND[-SUBCOMMAND…].1`
/// per command and subcommand that `--help` shows, and
/// `DIR/completions/{lockbox.bash,_lockbox,lockbox.fish}`; overwrites
/// what is there, removes nothing.
pub(crate) fn run(cmd: &clap::Command, dir: &Path) -> Result<(), CliError> {
    let io = |what: &Path, e: std::io::Error| CliError::Io(format!("{}: {e}", what.display()));
    let man = dir.join("man");
    let completions = dir.join("completions");
    for sub in [&man, &completions] {
        std::fs::create_dir_all(sub).map_err(|e| io(sub, e))?;
    }
    // Built as `--help` shows it, without `help`, whose page would say
    // nothing more.
    let mut root = cmd.clone().disable_help_subcommand(true);
    root.build();
    let pages = man_pages(&root, &man).map_err(|e| io(&man, e))?;
    let mut written = Vec::new();
    for shell in SHELLS {
        let mut cmd = cmd.clone();
        let path = clap_complete::generate_to(shell, &mut cmd, "lockbox", &completions)
            .map_err(|e| io(&completions, e))?;
        written.push(path);
    }
    println!("{pages} man pages in {}", man.display());
    for path in written {
        println!("{}", path.display());
    }
    Ok(())
}

/// Writes the page of `cmd` and of each of its subcommands, less hidden
/// ones (this command's own); returns how many.
fn man_pages(cmd: &clap::Command, dir: &Path) -> std::io::Result<usize> {
    let mut count = 0;
    for sub in cmd.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        count += man_pages(sub, dir)?;
    }
    clap_mangen::Man::new(cmd.clone())
        .source(concat!("lockbox ", env!("CARGO_PKG_VERSION")))
        .manual("Lockbox")
        .generate_to(dir)?;
    Ok(count + 1)
}
