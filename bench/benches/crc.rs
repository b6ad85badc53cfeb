//! CRC-32 (zlib's) throughput of `smolsock::wire::crc32`, beside `crc32fast`,
//! the crate most Rust programs use for the same checksum, on the same bytes:
//! 64 KiB (one transfer frame) and 1 MiB, one call each.
//!
//! ```sh
//! cargo bench --bench crc
//! ```

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use smolsock::wire::crc32::crc32;

fn bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + 7) as u8).collect()
}

fn checksum(c: &mut Criterion) {
    let mut group = c.benchmark_group("crc32");
    for (name, len) in [("64KiB", 64 * 1024), ("1MiB", 1024 * 1024)] {
        let data = bytes(len);
        assert_eq!(crc32(&data), crc32fast::hash(&data));
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("smolsock", name), &data, |b, data| {
            b.iter(|| crc32(black_box(data)));
        });
        group.bench_with_input(BenchmarkId::new("crc32fast", name), &data, |b, data| {
            b.iter(|| crc32fast::hash(black_box(data)));
        });
    }
    group.finish();
}

criterion_group!(benches, checksum);
criterion_main!(benches);
