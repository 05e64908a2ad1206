use clap::Parser;

fn main() {
    // Die quietly like other Unix tools when the reader of our output goes away (`wmae ... | head`)
    // instead of panicking on the failed write: Rust ignores SIGPIPE by default.
    // SAFETY: restoring the default disposition of a signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    wmae::runtime::alloc::keep_freed_memory();
    let cli = wmae::commands::cli::Cli::parse();
    if let Err(err) = wmae::commands::run(cli) {
        // `{:#}` prints the whole context chain on one line: "what failed: why".
        // Any libtorch error that reached here loses its C++ frame list (build-machine paths).
        let text = wmae::runtime::torch_error::without_cpp_backtrace(&format!("{err:#}"));
        eprintln!("error: {text}");
        let code = match err.downcast_ref::<wmae::stream::SomeFailed>() {
            Some(_) => wmae::stream::EXIT_SOME_FAILED,
            None => 1,
        };
        std::process::exit(code);
    }
}
