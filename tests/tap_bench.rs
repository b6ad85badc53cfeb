//! `tap_bench` (examples/tap_bench) with tiny sizes, in a namespace of the test's
//! own: every part runs to the end and every byte arrives. No figure is asserted
//! and nothing is timed; the tables are printed for whoever looks.
//!
//! Needs root (`CAP_NET_ADMIN`, `CAP_SYS_ADMIN`), so ignored by default; run it with
//! `cargo test --test tap_bench -- --include-ignored`.
#![cfg(feature = "std")]

#[path = "common/netns.rs"]
mod netns;
#[path = "common/scratch.rs"]
mod scratch;

#[allow(dead_code)]
#[path = "../examples/tap_bench/main.rs"]
mod tap_bench;

use clap::Parser;

use netns::NetNs;

#[test]
#[ignore = "needs CAP_NET_ADMIN: creates a network namespace with a TAP device"]
fn tap_bench_runs_every_part_and_every_byte_arrives() {
    if !netns::has_cap_net_admin() {
        return;
    }
    let ns = NetNs::create();
    let temp = scratch::ScratchDir::new("tap-bench");
    let args = tap_bench::Args::parse_from([
        "tap_bench",
        "--tap",
        netns::TAP,
        "--bulk-bytes",
        "300000",
        "--round-trips",
        "200",
        "--transfer-bytes",
        "200000",
        "--scale-round-trips",
        "256",
        "--scale",
        "1,4,16,64",
        "--tftp-bytes",
        "200000",
        "--verify",
        "--temp-dir",
        temp.path().to_str().unwrap(),
    ]);
    // Every thread the benchmark starts is created from this one, so all of them
    // (the stack and the kernel peers) are inside the namespace.
    let report = ns
        .spawn(move || tap_bench::run(&args))
        .join()
        .expect("the benchmark panicked")
        .unwrap_or_else(|e| panic!("tap_bench failed: {e}"));
    drop(temp);
    println!("{report}");

    assert_eq!(
        report.bulk.len(),
        6,
        "4 rows on TapDevice, 2 on TunTapInterface"
    );
    for row in &report.bulk {
        assert_eq!(row.arrived, row.expected, "{row:?}");
    }
    assert_eq!(report.rr.len(), 2);
    for row in &report.rr {
        assert_eq!(row.latency.round_trips, 200, "{row:?}");
    }
    assert_eq!(
        report.transfer.len(),
        4,
        "RAM and directory store, both ways"
    );
    for row in &report.transfer {
        assert_eq!(row.arrived, 200_000, "{row:?}");
    }
    assert_eq!(report.scale.len(), 4);
    for row in &report.scale {
        assert_eq!(row.latency.round_trips, row.latency.expected, "{row:?}");
        assert!(row.latency.round_trips >= row.clients * 50, "{row:?}");
    }
    assert_eq!(report.tftp.len(), 12, "2 block sizes, 3 windows, both ways");
    for row in &report.tftp {
        assert_eq!(row.arrived, 200_000, "{row:?}");
    }
    assert!(report.complete());
}
