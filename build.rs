//! Link layout (issue 13): `link/layout.ld` gathers the code every cycle
//! runs, the code only start-up runs and the code a default host never
//! runs (D-Bus, TLS, HTTP, the backtrace printer, the one-shot commands)
//! into separate runs of 64 KiB windows, so the kernel's fault-around
//! makes only the first two resident. Only the binary's link changes.

fn main() {
    for f in ["link/layout.ld", "link/hot.ld", "link/warm.ld"] {
        println!("cargo:rerun-if-changed={f}");
    }
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
        // -L: where the script's INCLUDEs are looked up (GNU ld and lld).
        println!("cargo:rustc-link-arg-bins=-Wl,-L,{dir}/link");
        println!("cargo:rustc-link-arg-bins=-Wl,-T,{dir}/link/layout.ld");
    }
}
