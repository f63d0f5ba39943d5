//! Compiles an OCI `linux.seccomp` profile and prints what came out, per architecture; with
//! `--exec`, installs it and runs a command under it.
//!
//! ```sh
//! cargo run -p berth-seccomp --example seccomp-compile -- seccomp/tests/data/docker-default-x86_64.json
//! cargo run -p berth-seccomp --example seccomp-compile -- profile.json --exec /bin/ls /
//! ```
//!
//! The file is either the `linux.seccomp` object itself or a whole `config.json`.

use std::ffi::CString;
use std::process::ExitCode;

use berth_seccomp::LinuxSeccomp;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        eprintln!("usage: seccomp-compile PROFILE.json [--exec COMMAND [ARG...]]");
        return ExitCode::from(2);
    };
    match run(path, args.get(1..).unwrap_or_default()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("seccomp-compile: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &str, rest: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("read {path}: {e}"))?;
    let json: serde_json::Value = serde_json::from_str(&text)?;
    // A config.json: its linux.seccomp.
    let json = match json.pointer("/linux/seccomp") {
        Some(s) => s.clone(),
        None => json,
    };
    let profile: LinuxSeccomp = serde_json::from_value(json)?;
    let program = berth_seccomp::compile(&profile)?;
    for w in program.warnings() {
        eprintln!("warning: {w}");
    }
    println!("{} BPF instructions in all", program.len());
    for (arch, len) in program.sections() {
        println!("  {arch}: {len}");
    }
    if program.uses_notify() {
        println!(
            "uses SCMP_ACT_NOTIFY (listener: {:?})",
            program.listener_path()
        );
    }

    let Some(("--exec", command)) = rest.split_first().map(|(f, c)| (f.as_str(), c)) else {
        return Ok(());
    };
    if program.uses_notify() {
        return Err("--exec: a profile with SCMP_ACT_NOTIFY needs an agent; not run".into());
    }
    let argv: Vec<CString> = command
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<_, _>>()?;
    let Some(program_path) = argv.first() else {
        return Err("--exec needs a command".into());
    };
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // Everything is prepared: from here on, system calls only.
    berth_seccomp::set_no_new_privs().map_err(std::io::Error::from_raw_os_error)?;
    program
        .install()
        .map_err(std::io::Error::from_raw_os_error)?;
    // SAFETY: `ptrs` is a null-terminated array of pointers to C strings that outlive the call.
    unsafe { libc::execvp(program_path.as_ptr(), ptrs.as_ptr()) };
    Err(format!(
        "execvp {:?}: {}",
        command.first(),
        std::io::Error::last_os_error()
    )
    .into())
}
