use clap::Parser;

fn main() {
    let cli = wmae::cli::Cli::parse();
    if let Err(err) = wmae::commands::run(cli) {
        // `{:#}` prints the whole context chain on one line: "what failed: why".
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}
