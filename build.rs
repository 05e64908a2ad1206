//! Embeds an rpath to the libtorch library folder, so `cargo run`, `cargo test` and the built
//! binary find libtorch_cpu.so without LD_LIBRARY_PATH.
//!
//! CUDA: the linker's default `--as-needed` drops libtorch_cuda.so because no symbol of it is
//! referenced, and then tch sees no GPU. Instead of linking it (which would tie the binary to the
//! CUDA variant), `wmae --device cuda|auto` loads it at run time from the same folder (see
//! src/device.rs): one binary serves both the CPU and the CUDA set-up, and a CPU-only install
//! fails with a message naming the fix. The folder is exported as WMAE_LIBTORCH_LIB for that.
fn main() {
    let lib = match std::env::var("DEP_TCH_LIBTORCH_LIB") {
        Ok(lib) => lib,
        Err(_) => panic!(
            "torch-sys did not report its libtorch folder; install libtorch 2.13.0 with \
             `scripts/setup-libtorch` or set LIBTORCH to your own libtorch 2.13.0"
        ),
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    println!("cargo:rustc-env=WMAE_LIBTORCH_LIB={lib}");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
}
