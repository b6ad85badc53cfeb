//! Behaviour every [`Storage`] must show, run against each store by its tests.
//!
//! Each check gets a fresh, empty store with room for at least 4 entries and
//! 1024 bytes, or, when it needs to fill the store, a small one: exactly 100
//! bytes in all, files of up to 100 bytes, at least 4 entries. It panics (it is
//! test code) when the store breaks the contract written on the trait.

use super::{FileName, FileStat, Storage, StoreError, Upload};
use crate::wire::crc32::crc32;

fn name(s: &str) -> FileName {
    FileName::new(s).unwrap()
}

/// Bytes that differ at every position, so a misplaced chunk shows.
pub(super) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Uploads `bytes` to `file` in chunks of `chunk` bytes and commits.
pub(super) fn put<S: Storage>(store: &mut S, file: &str, bytes: &[u8], chunk: usize) -> FileStat {
    let mut upload = store
        .begin_upload(&name(file), bytes.len() as u64, false)
        .unwrap();
    for piece in bytes.chunks(chunk.max(1)) {
        store.append(&mut upload, piece).unwrap();
    }
    assert!(upload.is_complete());
    store.commit(&upload, crc32(bytes)).unwrap()
}

/// Reads a whole committed file back through `read`.
pub(super) fn get<S: Storage>(store: &S, file: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 7];
    loop {
        let n = store.read(&name(file), out.len() as u64, &mut buf).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn listing<S: Storage>(store: &S) -> Vec<(String, u64)> {
    let mut names = Vec::new();
    let mut after: Option<FileName> = None;
    while let Some(entry) = store.next_entry(after.as_ref()).unwrap() {
        names.push((entry.name.as_str().to_owned(), entry.size));
        after = Some(entry.name);
    }
    names
}

/// Runs every check, each on a store from `fresh`, or from `small` when it
/// fills the store.
pub(super) fn run_all<S: Storage, T: Storage>(
    mut fresh: impl FnMut() -> S,
    mut small: impl FnMut() -> T,
) {
    upload_is_invisible_until_commit(&mut fresh());
    read_follows_offsets_and_ends(&mut fresh());
    resume_continues_a_partial(&mut fresh());
    begin_without_resume_starts_over(&mut fresh());
    resume_with_a_partial_longer_than_the_size_starts_over(&mut fresh());
    commit_refuses_an_incomplete_upload_and_keeps_it(&mut fresh());
    commit_refuses_a_wrong_crc_and_keeps_nothing(&mut fresh());
    append_refuses_bytes_past_the_announced_size(&mut fresh());
    append_with_a_stale_upload_is_a_bad_offset(&mut fresh());
    an_upload_from_before_a_start_over_writes_nothing(&mut fresh());
    an_upload_of_another_size_writes_nothing(&mut fresh());
    an_upload_begun_again_is_stale_even_with_the_same_bytes(&mut fresh());
    commit_replaces_an_older_file_only_at_commit(&mut fresh());
    delete_removes_file_and_partial(&mut fresh());
    listing_is_sorted_and_skips_partials(&mut fresh());
    empty_file_commits_at_once(&mut fresh());
    discard_upload_is_idempotent(&mut fresh());
    partials_are_listed_apart_with_the_room_they_take(&mut fresh());
    append_after_delete_is_not_found(&mut fresh());
    works_through_a_mutable_borrow(&mut fresh());
    version_changes_with_every_commit_and_never_comes_back(&mut fresh());
    a_begin_refused_full_keeps_the_partial(&mut small());
}

fn upload_is_invisible_until_commit<S: Storage>(store: &mut S) {
    let bytes = pattern(100, 1);
    let mut upload = store.begin_upload(&name("a.txt"), 100, false).unwrap();
    assert_eq!((upload.resumed_from(), upload.resumed_crc()), (0, 0));
    store.append(&mut upload, &bytes[..60]).unwrap();
    store.append(&mut upload, &bytes[60..]).unwrap();
    assert_eq!(store.stat(&name("a.txt")), Err(StoreError::NotFound));
    assert_eq!(
        store.read(&name("a.txt"), 0, &mut [0u8; 8]),
        Err(StoreError::NotFound)
    );
    assert_eq!(store.next_entry(None), Ok(None));
    let stat = store.commit(&upload, crc32(&bytes)).unwrap();
    assert_eq!(
        stat,
        FileStat {
            size: 100,
            crc: crc32(&bytes)
        }
    );
    assert_eq!(store.stat(&name("a.txt")), Ok(stat));
    assert_eq!(get(store, "a.txt"), bytes);
}

fn read_follows_offsets_and_ends<S: Storage>(store: &mut S) {
    let bytes = pattern(50, 2);
    put(store, "r", &bytes, 16);
    let mut buf = [0u8; 20];
    assert_eq!(store.read(&name("r"), 10, &mut buf), Ok(20));
    assert_eq!(&buf[..], &bytes[10..30]);
    assert_eq!(store.read(&name("r"), 45, &mut buf), Ok(5));
    assert_eq!(&buf[..5], &bytes[45..]);
    assert_eq!(store.read(&name("r"), 50, &mut buf), Ok(0));
    assert_eq!(
        store.read(&name("r"), 51, &mut buf),
        Err(StoreError::BadOffset { expected: 50 })
    );
    for len in [0, 1, 7, 49, 50] {
        assert_eq!(
            store.crc_prefix(&name("r"), len as u64),
            Ok(crc32(&bytes[..len]))
        );
    }
    assert_eq!(
        store.crc_prefix(&name("r"), 51),
        Err(StoreError::BadOffset { expected: 50 })
    );
    assert_eq!(
        store.crc_prefix(&name("missing"), 0),
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store.crc_prefix(&name("missing"), 1),
        Err(StoreError::NotFound)
    );
}

fn resume_continues_a_partial<S: Storage>(store: &mut S) {
    let bytes = pattern(200, 3);
    {
        let mut first = store.begin_upload(&name("big"), 200, true).unwrap();
        store.append(&mut first, &bytes[..70]).unwrap();
        // The connection dies here: the Upload is forgotten, the partial stays.
    }
    let mut second = store.begin_upload(&name("big"), 200, true).unwrap();
    assert_eq!(second.resumed_from(), 70);
    assert_eq!(second.written(), 70);
    assert_eq!(second.resumed_crc(), crc32(&bytes[..70]));
    store.append(&mut second, &bytes[70..]).unwrap();
    store.commit(&second, crc32(&bytes)).unwrap();
    assert_eq!(get(store, "big"), bytes);
}

fn begin_without_resume_starts_over<S: Storage>(store: &mut S) {
    let mut first = store.begin_upload(&name("f"), 40, false).unwrap();
    store.append(&mut first, &pattern(30, 4)).unwrap();
    let fresh = store.begin_upload(&name("f"), 40, false).unwrap();
    assert_eq!((fresh.resumed_from(), fresh.written()), (0, 0));
    // The old partial is gone, not just hidden: a resume finds the empty one.
    let again = store.begin_upload(&name("f"), 40, true).unwrap();
    assert_eq!(again.resumed_from(), 0);
}

fn resume_with_a_partial_longer_than_the_size_starts_over<S: Storage>(store: &mut S) {
    let mut first = store.begin_upload(&name("f"), 40, false).unwrap();
    store.append(&mut first, &pattern(30, 5)).unwrap();
    let other_file = store.begin_upload(&name("f"), 20, true).unwrap();
    assert_eq!(other_file.resumed_from(), 0);
    let same_size = store.begin_upload(&name("f"), 20, true).unwrap();
    assert_eq!(same_size.resumed_from(), 0);
}

fn a_begin_refused_full_keeps_the_partial<S: Storage>(store: &mut S) {
    let a = pattern(50, 10);
    put(store, "a", &a, 16);
    let bytes = pattern(30, 11);
    let mut first = store.begin_upload(&name("p"), 30, false).unwrap();
    store.append(&mut first, &bytes[..10]).unwrap();
    // What the store answers, as it stands, a new name that does not fit.
    let full = store.begin_upload(&name("q"), 80, false);
    assert!(matches!(full, Err(StoreError::Full { .. })), "{full:?}");
    // Starting over, or growing the partial, does not fit either, even in the
    // room the partial would give back: refused the same, the partial kept.
    assert_eq!(store.begin_upload(&name("p"), 80, false), full);
    assert_eq!(store.begin_upload(&name("p"), 80, true), full);
    assert_eq!(
        store.begin_upload(&name("p"), 101, false),
        Err(StoreError::FileTooLarge { max: 100 })
    );
    assert_eq!(store.begin_upload(&name("q"), 80, false), full, "as before");
    // The upload that was going on goes on, then a resume finds all it wrote.
    store.append(&mut first, &bytes[10..15]).unwrap();
    let mut resumed = store.begin_upload(&name("p"), 30, true).unwrap();
    assert_eq!(
        (resumed.resumed_from(), resumed.resumed_crc()),
        (15, crc32(&bytes[..15]))
    );
    store.append(&mut resumed, &bytes[15..]).unwrap();
    store.commit(&resumed, crc32(&bytes)).unwrap();
    assert_eq!(get(store, "p"), bytes);
    assert_eq!(get(store, "a"), a);
    // 80 bytes stored. Starting over in no more room than the partial takes
    // fits, the store full or not, with or without resume.
    let mut partial = store.begin_upload(&name("r"), 20, false).unwrap();
    store.append(&mut partial, &pattern(15, 12)).unwrap();
    let fresh = store.begin_upload(&name("r"), 20, false).unwrap();
    assert_eq!(fresh.resumed_from(), 0);
    let mut partial = store.begin_upload(&name("r"), 20, true).unwrap();
    store.append(&mut partial, &pattern(15, 12)).unwrap();
    let shorter = store.begin_upload(&name("r"), 10, true).unwrap();
    assert_eq!(shorter.resumed_from(), 0);
}

fn commit_refuses_an_incomplete_upload_and_keeps_it<S: Storage>(store: &mut S) {
    let bytes = pattern(30, 6);
    let mut upload = store.begin_upload(&name("part"), 30, false).unwrap();
    store.append(&mut upload, &bytes[..10]).unwrap();
    assert_eq!(
        store.commit(&upload, crc32(&bytes)),
        Err(StoreError::Incomplete {
            written: 10,
            size: 30
        })
    );
    assert_eq!(store.stat(&name("part")), Err(StoreError::NotFound));
    let resumed = store.begin_upload(&name("part"), 30, true).unwrap();
    assert_eq!(resumed.resumed_from(), 10);
}

fn commit_refuses_a_wrong_crc_and_keeps_nothing<S: Storage>(store: &mut S) {
    let bytes = pattern(30, 7);
    let mut upload = store.begin_upload(&name("bad"), 30, false).unwrap();
    store.append(&mut upload, &bytes).unwrap();
    let announced = crc32(&bytes) ^ 1;
    assert_eq!(
        store.commit(&upload, announced),
        Err(StoreError::ChecksumMismatch {
            computed: crc32(&bytes)
        })
    );
    assert_eq!(store.stat(&name("bad")), Err(StoreError::NotFound));
    assert_eq!(store.next_entry(None), Ok(None));
    let resumed = store.begin_upload(&name("bad"), 30, true).unwrap();
    assert_eq!(resumed.resumed_from(), 0, "the bad partial was deleted");
}

fn append_refuses_bytes_past_the_announced_size<S: Storage>(store: &mut S) {
    let bytes = pattern(12, 8);
    let mut upload = store.begin_upload(&name("short"), 5, false).unwrap();
    store.append(&mut upload, &bytes[..3]).unwrap();
    assert_eq!(
        store.append(&mut upload, &bytes[3..]),
        Err(StoreError::TooMuchData { size: 5 })
    );
    assert_eq!(upload.written(), 3, "nothing of the refused chunk counted");
    store.append(&mut upload, &bytes[3..5]).unwrap();
    store.commit(&upload, crc32(&bytes[..5])).unwrap();
    assert_eq!(get(store, "short"), &bytes[..5]);
}

fn append_with_a_stale_upload_is_a_bad_offset<S: Storage>(store: &mut S) {
    let mut upload = store.begin_upload(&name("s"), 10, false).unwrap();
    let mut stale = upload;
    store.append(&mut upload, b"abc").unwrap();
    assert_eq!(
        store.append(&mut stale, b"xyz"),
        Err(StoreError::BadOffset { expected: 3 })
    );
    store.append(&mut upload, b"defghij").unwrap();
    store.commit(&upload, crc32(b"abcdefghij")).unwrap();
    assert_eq!(get(store, "s"), b"abcdefghij");
}

fn an_upload_from_before_a_start_over_writes_nothing<S: Storage>(store: &mut S) {
    // The same length in the partial, other bytes: the offset alone cannot
    // tell, and the stale upload's CRC would be published with the new bytes.
    let mut stale = store.begin_upload(&name("s"), 4, false).unwrap();
    store.append(&mut stale, b"abc").unwrap();
    let mut fresh = store.begin_upload(&name("s"), 4, false).unwrap();
    store.append(&mut fresh, b"xyz").unwrap();
    assert_eq!(store.append(&mut stale, b"d"), Err(StoreError::NotFound));
    let mut done = stale;
    done.record(b"d");
    assert_eq!(
        store.commit(&done, crc32(b"abcd")),
        Err(StoreError::NotFound)
    );
    // The fresh upload goes on as if nothing happened.
    store.append(&mut fresh, b"!").unwrap();
    let stat = store.commit(&fresh, crc32(b"xyz!")).unwrap();
    assert_eq!(stat.crc, crc32(b"xyz!"));
    assert_eq!(get(store, "s"), b"xyz!");
    // A forged upload, for a partial of the right length but not its CRC.
    let mut real = store.begin_upload(&name("f"), 4, false).unwrap();
    store.append(&mut real, b"ab").unwrap();
    let mut forged = Upload::new(name("f"), 4, 2, 0x1234_5678).stamped(real.stamp());
    assert_eq!(store.append(&mut forged, b"cd"), Err(StoreError::NotFound));
}

fn an_upload_begun_again_is_stale_even_with_the_same_bytes<S: Storage>(store: &mut S) {
    // Started over and given the same bytes: the partial's length and CRC-32
    // are the stale upload's, only its begin is not.
    let mut stale = store.begin_upload(&name("g"), 6, false).unwrap();
    store.append(&mut stale, b"abc").unwrap();
    let mut fresh = store.begin_upload(&name("g"), 6, false).unwrap();
    store.append(&mut fresh, b"abc").unwrap();
    assert_eq!(store.append(&mut stale, b"XYZ"), Err(StoreError::NotFound));
    // Resumed: the partial as it was, and the upload before it stale.
    let mut resumed = store.begin_upload(&name("g"), 6, true).unwrap();
    assert_eq!(resumed.written(), 3);
    assert_eq!(store.append(&mut fresh, b"XYZ"), Err(StoreError::NotFound));
    store.append(&mut resumed, b"def").unwrap();
    store.commit(&resumed, crc32(b"abcdef")).unwrap();
    assert_eq!(get(store, "g"), b"abcdef");
}

fn an_upload_of_another_size_writes_nothing<S: Storage>(store: &mut S) {
    // Started over empty, its CRC-32 that of no bytes: only the size tells an
    // upload from before apart.
    let empty = store.begin_upload(&name("e"), 0, false).unwrap();
    let mut fresh = store.begin_upload(&name("e"), 5, false).unwrap();
    assert_eq!(store.commit(&empty, crc32(b"")), Err(StoreError::NotFound));
    let mut larger = Upload::new(name("e"), 10, 0, 0).stamped(fresh.stamp());
    assert_eq!(
        store.append(&mut larger, b"abcdefg"),
        Err(StoreError::NotFound)
    );
    assert_eq!(store.stat(&name("e")), Err(StoreError::NotFound));
    // The fresh upload goes on as if nothing happened.
    store.append(&mut fresh, b"hello").unwrap();
    store.commit(&fresh, crc32(b"hello")).unwrap();
    assert_eq!(get(store, "e"), b"hello");
    // A resume for another size is the upload of that size from then on.
    let mut part = store.begin_upload(&name("r"), 8, false).unwrap();
    store.append(&mut part, b"abc").unwrap();
    let mut resumed = store.begin_upload(&name("r"), 6, true).unwrap();
    assert_eq!(resumed.written(), 3);
    assert_eq!(store.append(&mut part, b"defgh"), Err(StoreError::NotFound));
    store.append(&mut resumed, b"xyz").unwrap();
    store.commit(&resumed, crc32(b"abcxyz")).unwrap();
    assert_eq!(get(store, "r"), b"abcxyz");
}

fn commit_replaces_an_older_file_only_at_commit<S: Storage>(store: &mut S) {
    put(store, "f", b"old contents", 5);
    let new = pattern(20, 9);
    let mut upload = store.begin_upload(&name("f"), 20, false).unwrap();
    store.append(&mut upload, &new).unwrap();
    assert_eq!(
        get(store, "f"),
        b"old contents",
        "old file served meanwhile"
    );
    store.commit(&upload, crc32(&new)).unwrap();
    assert_eq!(get(store, "f"), new);
    assert_eq!(listing(store), [("f".to_owned(), 20)]);
}

fn delete_removes_file_and_partial<S: Storage>(store: &mut S) {
    put(store, "gone", b"bytes", 2);
    put(store, "kept", b"other", 2);
    let mut upload = store.begin_upload(&name("gone"), 9, false).unwrap();
    store.append(&mut upload, b"part").unwrap();
    store.delete(&name("gone")).unwrap();
    assert_eq!(store.stat(&name("gone")), Err(StoreError::NotFound));
    assert_eq!(store.delete(&name("gone")), Err(StoreError::NotFound));
    let resumed = store.begin_upload(&name("gone"), 9, true).unwrap();
    assert_eq!(resumed.resumed_from(), 0, "partial deleted too");
    store.discard_upload(&name("gone")).unwrap();
    // A partial alone is enough for DELETE to succeed.
    let mut only_partial = store.begin_upload(&name("p"), 9, false).unwrap();
    store.append(&mut only_partial, b"x").unwrap();
    assert_eq!(store.delete(&name("p")), Ok(()));
    assert_eq!(store.delete(&name("p")), Err(StoreError::NotFound));
    assert_eq!(get(store, "kept"), b"other");
}

fn listing_is_sorted_and_skips_partials<S: Storage>(store: &mut S) {
    put(store, "b", b"bb", 1);
    put(store, "a", b"a", 1);
    put(store, "c", b"", 1);
    let mut partial = store.begin_upload(&name("ab"), 3, false).unwrap();
    store.append(&mut partial, b"x").unwrap();
    assert_eq!(
        listing(store),
        [
            ("a".to_owned(), 1),
            ("b".to_owned(), 2),
            ("c".to_owned(), 0)
        ]
    );
    assert_eq!(
        store.next_entry(Some(&name("aa"))).unwrap().unwrap().name,
        name("b"),
        "after a name that is not stored"
    );
    assert_eq!(store.next_entry(Some(&name("c"))), Ok(None));
}

fn empty_file_commits_at_once<S: Storage>(store: &mut S) {
    let upload = store.begin_upload(&name("empty"), 0, false).unwrap();
    assert!(upload.is_complete());
    assert_eq!(store.commit(&upload, 0), Ok(FileStat { size: 0, crc: 0 }));
    assert_eq!(store.read(&name("empty"), 0, &mut [0u8; 4]), Ok(0));
    assert_eq!(listing(store), [("empty".to_owned(), 0)]);
}

fn discard_upload_is_idempotent<S: Storage>(store: &mut S) {
    let mut upload = store.begin_upload(&name("d"), 10, false).unwrap();
    store.append(&mut upload, b"12345").unwrap();
    store.discard_upload(&name("d")).unwrap();
    store.discard_upload(&name("d")).unwrap();
    store.discard_upload(&name("never")).unwrap();
    assert_eq!(store.append(&mut upload, b"6"), Err(StoreError::NotFound));
    assert_eq!(
        store.commit(&upload, crc32(b"12345")),
        Err(StoreError::NotFound)
    );
}

fn append_after_delete_is_not_found<S: Storage>(store: &mut S) {
    let mut upload = store.begin_upload(&name("x"), 10, false).unwrap();
    store.append(&mut upload, b"12").unwrap();
    store.delete(&name("x")).unwrap();
    assert_eq!(store.append(&mut upload, b"34"), Err(StoreError::NotFound));
}

fn version_changes_with_every_commit_and_never_comes_back<S: Storage>(store: &mut S) {
    assert_eq!(store.version(&name("v")), Err(StoreError::NotFound));
    put(store, "v", b"first", 2);
    let first = store.version(&name("v")).unwrap();
    // Reading, listing, other files and a partial of this name change nothing.
    get(store, "v");
    listing(store);
    put(store, "other", b"x", 1);
    let mut partial = store.begin_upload(&name("v"), 6, false).unwrap();
    store.append(&mut partial, b"sec").unwrap();
    assert_eq!(store.version(&name("v")), Ok(first));
    store.append(&mut partial, b"ond").unwrap();
    store.commit(&partial, crc32(b"second")).unwrap();
    let second = store.version(&name("v")).unwrap();
    assert_ne!(second, first, "replaced");
    store.delete(&name("v")).unwrap();
    assert_eq!(store.version(&name("v")), Err(StoreError::NotFound));
    // The same bytes again, under the same name: still a new version.
    put(store, "v", b"first", 2);
    let third = store.version(&name("v")).unwrap();
    assert!(
        third != first && third != second,
        "{first} {second} {third}"
    );
    let mut borrowed: &mut S = store;
    assert_eq!(borrowed.version(&name("v")), Ok(third));
    put(&mut borrowed, "v", b"fourth", 2);
    assert_ne!(borrowed.version(&name("v")), Ok(third));
}

fn works_through_a_mutable_borrow<S: Storage>(store: &mut S) {
    let mut borrowed: &mut S = store;
    put(&mut borrowed, "via", b"borrow", 3);
    assert_eq!(get(&borrowed, "via"), b"borrow");
    assert_eq!(listing(&borrowed), [("via".to_owned(), 6)]);
}

fn partials_are_listed_apart_with_the_room_they_take<S: Storage>(store: &mut S) {
    put(store, "c", &pattern(10, 7), 4);
    let mut b = store.begin_upload(&name("b"), 40, false).unwrap();
    store.append(&mut b, &pattern(10, 8)).unwrap();
    store.begin_upload(&name("a"), 20, false).unwrap();
    let partials = |store: &S| {
        let mut found = Vec::new();
        let mut after: Option<FileName> = None;
        while let Some(entry) = store.next_partial(after.as_ref()).unwrap() {
            found.push((entry.name.as_str().to_owned(), entry.size));
            after = Some(entry.name);
        }
        found
    };
    // In byte order, committed files apart; the room is what a partial holds
    // or, for a store that reserves it, its announced size.
    let found = partials(store);
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert!([0, 20].contains(&found[0].1), "{found:?}");
    assert!([10, 40].contains(&found[1].1), "{found:?}");
    store.discard_upload(&name("a")).unwrap();
    let names: Vec<String> = partials(store).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["b"]);
    assert_eq!(listing(store), [("c".to_owned(), 10)]);
}
