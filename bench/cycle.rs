//! Cost of one collection cycle on this machine, per collector and whole:
//! `cargo bench --bench cycle`. Wall time per call (median and p90 over
//! many cycles), so it includes the kernel's work generating /proc files,
//! which is most of it; then the whole cycle's CPU time (from the
//! process's own accounting, /proc/self/schedstat) divided by the cycles run. Cycles
//! here follow each other at once, so caches that refresh after a while
//! (process count, mount table) stay warm: `bench/footprint.sh` measures
//! the running agent at its real interval. A measurement, not a test.

use std::time::{Duration, Instant};

use host2mqtt::agent::Agent;
use host2mqtt::collector::Tick;
use host2mqtt::wiring::{self, Config};

const ROUNDS: usize = 500;

fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(v[v.len() / 2]), ms(v[v.len() * 9 / 10]))
}

fn main() {
    let cfg = Config::load(
        None,
        std::env::vars().filter(|(k, _)| k.starts_with("HOST2MQTT__")),
    )
    .expect("config");
    println!(
        "{:<10} {:>10} {:>10} {:>9}",
        "collector", "median ms", "p90 ms", "readings"
    );
    for mut c in wiring::build(&cfg).expect("builds").collectors {
        let mut out = Vec::new();
        let mut times = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            out.clear();
            let tick = Tick::now();
            let t = Instant::now();
            let _ = c.collect(&tick, &mut out);
            times.push(t.elapsed());
        }
        let (med, p90) = stats(times);
        println!("{:<10} {med:>10.3} {p90:>10.3} {:>9}", c.name(), out.len());
    }
    let parts = wiring::build(&cfg).expect("builds");
    let mut agent = Agent::new(parts.model, parts.interval, parts.collectors);
    let mut times = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        agent.cycle(&Tick::now());
        times.push(t.elapsed());
    }
    let (med, p90) = stats(times);
    let cpu_start = cpu_time();
    for _ in 0..ROUNDS {
        agent.cycle(&Tick::now());
    }
    let cpu_ms = (cpu_time() - cpu_start).as_secs_f64() * 1000.0 / ROUNDS as f64;
    let state = agent.state().map_or(0, str::len);
    println!(
        "{:<10} {med:>10.3} {p90:>10.3} {:>9}",
        "cycle",
        agent.readings().len()
    );
    println!("(whole cycle = collectors + state JSON of {state} bytes + discovery check)");
    println!("cycle CPU  {cpu_ms:>10.3} ms per cycle (schedstat over {ROUNDS} cycles)");
}

/// This (single-threaded) bench's CPU time so far: the first field of
/// /proc/self/schedstat, nanoseconds on a CPU, exact rather than in ticks.
fn cpu_time() -> Duration {
    let text = std::fs::read_to_string("/proc/self/schedstat").expect("schedstat");
    let ns = text
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("run time");
    Duration::from_nanos(ns)
}
