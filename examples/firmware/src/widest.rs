//! The status text with every counter at its largest, for the self-tests'
//! check that the status page fits its buffer however long the firmware runs.

use smolsock::http::{Site, StatusSite};

/// Copies `boot`, a status text as it reads at boot (every counter 0; one that
/// is shown only once it is not 0 must be given at its largest), into `out`
/// with each number that reads 0 made 20 digits long, as many as a `u64` has
/// (pool sizes among them, where they read 0); the other numbers (ports, the
/// stack's figures) as they are. `Err` if `out` is too small.
pub fn widest<const N: usize>(boot: &str, out: &mut heapless::String<N>) -> Result<(), ()> {
    let mut rest = boot;
    while let Some(first) = rest.chars().next() {
        let digits = first.is_ascii_digit();
        let run = rest
            .find(|c: char| c.is_ascii_digit() != digits)
            .unwrap_or(rest.len());
        let (piece, after) = rest.split_at(run);
        let wide = if piece == "0" {
            "18446744073709551615"
        } else {
            piece
        };
        out.push_str(wide).map_err(|_| ())?;
        rest = after;
    }
    Ok(())
}

/// Whether `StatusSite`'s page titled `title`, the counters of `boot` at their
/// largest ([`widest`]), fits `page_max` bytes, and its counters' text
/// `widest_max`; logs the sizes.
pub fn status_page_fits(
    boot: &str,
    title: &str,
    page_max: usize,
    widest_max: usize,
) -> Result<(), &'static str> {
    let mut wide = heapless::String::<8192>::new();
    widest(boot, &mut wide).map_err(|()| "the widest counters' text is over 8 KiB")?;
    let status = |out: &mut dyn core::fmt::Write| out.write_str(&wide);
    let site = StatusSite::new(title, &status);
    let mut page = heapless::String::<8192>::new();
    let made = site.render("/", &mut page);
    log::info!(
        "http: status page {} B of {page_max} B with every counter at its largest \
         (counters {} B of {widest_max} B; {} B at boot)",
        page.len(),
        wide.len(),
        boot.len()
    );
    match made {
        Some(Ok(_)) if page.len() <= page_max && wide.len() <= widest_max => Ok(()),
        _ => Err("the status page does not fit its buffer"),
    }
}
