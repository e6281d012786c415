//! Link layout (issue 13): `cold-text.ld` gathers the code a default host
//! never runs (D-Bus, TLS, HTTP, the backtrace printer, the one-shot
//! commands) away from the code every cycle runs, so the kernel's
//! fault-around does not make it resident. Only the binary's link changes.

fn main() {
    println!("cargo:rerun-if-changed=cold-text.ld");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
        println!("cargo:rustc-link-arg-bins=-Wl,-T,{dir}/cold-text.ld");
    }
}
