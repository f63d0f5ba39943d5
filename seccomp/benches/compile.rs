//! Compile time of Docker's default profile (as Docker hands it to the runtime for a default
//! container on x86_64: `tests/data/docker-default-x86_64.json`): the front end, the back end,
//! and both (what a runtime's `create` pays). Needs no privilege: nothing is installed.

use criterion::{Criterion, criterion_group, criterion_main};

use berth_seccomp::{Filter, LinuxSeccomp, Program};

fn docker_default() -> LinuxSeccomp {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/docker-default-x86_64.json"
    );
    let text = std::fs::read_to_string(path).expect("read the Docker default profile");
    serde_json::from_str(&text).expect("the Docker default profile is a LinuxSeccomp")
}

fn compile(c: &mut Criterion) {
    let profile = docker_default();
    let program = berth_seccomp::compile(&profile).expect("compiles");
    let sections: Vec<String> = program
        .sections()
        .iter()
        .map(|(arch, len)| format!("{arch} {len}"))
        .collect();
    eprintln!(
        "docker default profile: {} BPF instructions ({})",
        program.len(),
        sections.join(", ")
    );
    let mut g = c.benchmark_group("docker_default");
    g.bench_function("compile", |b| {
        b.iter(|| berth_seccomp::compile(std::hint::black_box(&profile)).expect("compiles"))
    });
    g.bench_function("front_end", |b| {
        b.iter(|| Filter::from_profile(std::hint::black_box(&profile)).expect("checks"))
    });
    let filter = Filter::from_profile(&profile).expect("checks");
    g.bench_function("back_end", |b| {
        b.iter_batched(
            || filter.clone(),
            |f| Program::from_filter(f).expect("compiles"),
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, compile);
criterion_main!(benches);
