//! Compiles the eBPF tap (`src/sys/tap.bpf.c`) with clang for the bpf target; `sys/ebpf.rs`
//! embeds the object. clang comes from Debian (`scripts/setup.sh` installs it); the headers are
//! the kernel's UAPI ones from linux-libc-dev (with libc6-dev, part of build-essential).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "src/sys/tap.bpf.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=CLANG");
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("tap.bpf.o");
    let clang = std::env::var("CLANG").unwrap_or_else(|_| "clang".into());
    // <linux/types.h> includes <asm/types.h>, which Debian keeps under the multiarch directory
    // that clang does not search for the bpf target.
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let multiarch = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        other => other,
    };
    let endian = match std::env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() {
        Ok("big") => "bpfeb",
        _ => "bpfel",
    };
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-Wall", "-Werror", "-target", endian])
        .arg(format!("-I/usr/include/{multiarch}"))
        .args(["-c", src, "-o"])
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("clang failed to compile {src} for the bpf target ({s})"),
        Err(e) => panic!(
            "cannot run {clang} to compile {src} for the bpf target: {e}; install it with `scripts/setup.sh demo` (Debian package clang)"
        ),
    }
}
