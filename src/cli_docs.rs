//! Shell completions and manual pages, generated from the command line's clap definition
//! ([`crate::cli::Cli`]) so that they list exactly the commands and options the binary accepts:
//! `mirrordns completions bash|zsh|fish` and `mirrordns man [--dir DIR]`. The Debian package
//! ships their output (contrib/debian/build-deb.sh runs the built binary to make it).

use std::io::{self, Write};
use std::path::Path;

use clap::{CommandFactory, ValueEnum};

/// The shells a completion script is made for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// The command line's definition, as clap builds it for parsing.
pub fn command() -> clap::Command {
    crate::cli::Cli::command()
}

/// Writes the completion script for `shell`.
pub fn completions(shell: Shell, out: &mut dyn Write) {
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut cmd = command();
    let name = cmd.get_name().to_string();
    clap_complete::generate(generator, &mut cmd, name, out);
}

/// Writes the main manual page, mirrordns(1): synopsis, options and the list of commands,
/// each of which has its own page (`man_pages`).
pub fn man_page(out: &mut dyn Write) -> io::Result<()> {
    page(manual_command()).render(out)
}

/// Writes mirrordns.1 and one page per command (mirrordns-serve.1, and for a command with
/// commands of its own, mirrordns-CMD-SUB.1), the pages each COMMANDS section refers to.
pub fn man_pages(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    write_pages(&manual_command(), dir)
}

/// The definition as the pages describe it: built (so each command knows its full
/// `mirrordns serve` invocation for its synopsis), and without `help`, which is no command
/// with a page of its own.
fn manual_command() -> clap::Command {
    let mut cmd = command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// One page, its header naming the program and version (clap_mangen would otherwise put
/// a command's own name, without a version, where man(1) shows the source).
fn page(cmd: clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd)
        .source(format!("mirrordns {}", env!("CARGO_PKG_VERSION")))
        .manual("mirrordns manual")
}

/// A page for `cmd` (named by its display name, `mirrordns-serve`, which `build` set), then
/// for each of its commands.
fn write_pages(cmd: &clap::Command, dir: &Path) -> io::Result<()> {
    page(cmd.clone()).generate_to(dir)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir)?;
    }
    Ok(())
}
