//! Listing a `DirStore` (every entry, the way the transfer server's LIST walks
//! it: one `next_entry` call per file, each passing the name before) beside
//! what the operating system alone takes for the same directory: one
//! `read_dir` with a `stat` of every regular file, the least a listing of
//! names and sizes can cost. 1,000 and 10,000 files of one byte, in a fresh
//! directory under the system's temp dir.
//!
//! ```sh
//! cargo bench --bench store
//! ```

use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use smolsock::store::{DirLimits, DirStore, Storage};

/// A directory of `files` one-byte files, removed when dropped.
struct Files(PathBuf);

impl Files {
    fn new(files: usize) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "smolsock-bench-store-{}-{files}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("a directory under the temp dir");
        for i in 0..files {
            fs::write(dir.join(format!("f{i:06}")), b"x").expect("a file");
        }
        Self(dir)
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Every entry of the store, one call each.
fn list(store: &DirStore) -> usize {
    let mut after = None;
    let mut count = 0;
    while let Some(entry) = store.next_entry(after.as_ref()).expect("a listing") {
        after = Some(entry.name);
        count += 1;
    }
    count
}

/// The floor: one pass over the directory, a `stat` of each regular file.
fn read_dir_and_stat(dir: &Path) -> usize {
    let mut count = 0;
    for entry in fs::read_dir(dir).expect("the directory") {
        let entry = entry.expect("an entry");
        if entry.file_type().is_ok_and(|kind| kind.is_file()) {
            let meta = fs::symlink_metadata(entry.path()).expect("its metadata");
            black_box(meta.len());
            count += 1;
        }
    }
    count
}

fn listing(c: &mut Criterion) {
    let mut group = c.benchmark_group("dir_listing");
    group.sample_size(10);
    for files in [1_000, 10_000] {
        let dir = Files::new(files);
        let store = DirStore::open(&dir.0, DirLimits::default()).expect("the store");
        assert_eq!(list(&store), files);
        assert_eq!(read_dir_and_stat(&dir.0), files);
        group.throughput(Throughput::Elements(files as u64));
        group.bench_with_input(BenchmarkId::new("DirStore", files), &store, |b, store| {
            b.iter(|| list(black_box(store)));
        });
        group.bench_with_input(
            BenchmarkId::new("read_dir+stat", files),
            &dir.0,
            |b, dir| {
                b.iter(|| read_dir_and_stat(black_box(dir)));
            },
        );
    }
    group.finish();
}

criterion_group!(benches, listing);
criterion_main!(benches);
