//! The `weft` command line: `weft node` runs a node, `weft ping` checks that one answers.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
