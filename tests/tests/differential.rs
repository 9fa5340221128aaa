//! The differential test: the request script against the engine under the simulator (faults
//! off) and against the real `buddy-blocks` binary must give identical answers (see
//! `difftest::compare` for what "identical" covers and why).

use difftest::compare::differences;
use difftest::real::RealNode;
use difftest::script::{full_store, script, timeouts, Entry};
use difftest::NodeConfig;
use sim::scripted::ScriptedNode;

/// The simulator and the real binary answer the whole script identically.
#[test]
fn the_simulator_and_the_binary_answer_the_script_identically() {
    let cfg = NodeConfig::default();
    play_both(&cfg, &script(&cfg));
}

/// ... and the clients that stop halfway, past a short request timeout.
#[test]
fn the_simulator_and_the_binary_time_requests_out_identically() {
    let cfg = NodeConfig::short_timeouts();
    play_both(&cfg, &timeouts(&cfg));
}

/// ... and a store that runs out of space.
#[test]
fn the_simulator_and_the_binary_fill_the_store_identically() {
    let cfg = NodeConfig::full_store();
    play_both(&cfg, &full_store(&cfg));
}

/// Plays `entries` on a simulated node and on the real binary, both running `cfg`, and fails
/// with every difference (and the server's log).
fn play_both(cfg: &NodeConfig, entries: &[Entry]) {
    let mut sim = ScriptedNode::new(cfg.harness());
    let mut real = RealNode::start(&difftest::binary::buddy_blocks(), cfg);
    let mut report = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let s = sim.play(&e.step);
        let r = real.play(&e.step);
        if std::env::var_os("DIFFTEST_SHOW").is_some() {
            let statuses: Vec<u16> = r.responses.iter().map(|x| x.status).collect();
            println!("step {i} ({}): {statuses:?} closed={}", e.label, r.closed);
        }
        for d in differences(e.compare, &s, &r) {
            report.push(format!("step {i} ({}): {d}", e.label));
        }
    }
    assert!(
        report.is_empty(),
        "{} differences over {} steps:\n{}\nserver log:\n{}",
        report.len(),
        entries.len(),
        report.join("\n"),
        real.log()
    );
}

/// The script is the same every time it is built (a precondition of comparing two runs).
#[test]
fn the_script_is_deterministic() {
    let cfg = NodeConfig::default();
    let (a, b) = (script(&cfg), script(&cfg));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (&x.label, &x.step.pieces, &x.step.heads),
            (&y.label, &y.step.pieces, &y.step.heads)
        );
    }
    assert!(
        a.len() > 100,
        "the script covers the API: {} steps",
        a.len()
    );
}
