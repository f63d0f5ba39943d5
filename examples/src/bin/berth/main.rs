//! The `berth` binary: a runc-compatible command line; everything lives in [`berth_cli`].

fn main() {
    std::process::exit(berth_cli::main(std::env::args_os()));
}
