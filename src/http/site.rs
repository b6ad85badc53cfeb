//! What an HTTP responder serves: the [`Site`] trait (a path in, a page out),
//! [`StatusSite`], the home page with live counters, and [`LiveSite`], the same
//! page refreshing itself with each connection's buffers drawn as bars.

use core::fmt::{self, Write as _};

/// What the server has to say for a path: its routes.
///
/// A page is either rendered afresh for each request into the responder's body
/// buffer ([`render`](Self::render)), or sent from bytes that already exist
/// ([`asset`](Self::asset)). Either way it is made once per request and never
/// changes while it goes out.
///
/// A site adds pages by matching paths, and can hand every other path on to
/// another site:
///
/// ```
/// use core::fmt;
/// use smolsock::http::{Asset, Site, StatusSite};
///
/// struct MySite<'a> {
///     status: StatusSite<'a>,
/// }
///
/// impl Site for MySite<'_> {
///     fn render(&self, path: &str, body: &mut dyn fmt::Write) -> Option<Result<&'static str, fmt::Error>> {
///         match path {
///             "/hello" => Some(body.write_str("hello\n").map(|()| "text/plain")),
///             _ => self.status.render(path, body),
///         }
///     }
///
///     fn asset(&self, path: &str) -> Option<Asset<'_>> {
///         // Sent straight from flash, piece by piece, whatever its size.
///         static LOGO: &[u8] = b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>";
///         (path == "/logo.svg").then(|| Asset::new("image/svg+xml", LOGO))
///     }
/// }
/// ```
pub trait Site {
    /// Writes the body for `path` and returns its content type; `None` for a
    /// path with no page (404), an error for a page that could not be made
    /// (500).
    ///
    /// The responder gives a writer over its body buffer: a page that does not fit
    /// there is answered with 500 too, whatever this returns.
    fn render(
        &self,
        path: &str,
        body: &mut dyn fmt::Write,
    ) -> Option<Result<&'static str, fmt::Error>>;

    /// A page whose bytes already exist (a `static`, a file in flash): it is sent
    /// from `body` piece by piece as send space allows, with no copy into the
    /// responder's buffers, so it may be of any size. Asked before
    /// [`render`](Self::render); `None` (the default) passes the path on to it.
    fn asset(&self, _path: &str) -> Option<Asset<'_>> {
        None
    }
}

/// A page served from bytes that outlive the connection (see [`Site::asset`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asset<'a> {
    /// The `Content-Type` field.
    pub content_type: &'a str,
    /// The body, sent as it is.
    pub body: &'a [u8],
}

impl<'a> Asset<'a> {
    /// A page of `body`, of type `content_type`.
    pub const fn new(content_type: &'a str, body: &'a [u8]) -> Self {
        Self { content_type, body }
    }
}

/// A site with a home page that shows live counters.
///
/// `status` writes the counters; the runner keeps whatever it reads current (a
/// `Cell` updated each poll is enough: everything runs on one thread).
///
/// - `/`: an HTML page with the title and the status.
/// - `/stats`: the status as plain text.
pub struct StatusSite<'a> {
    title: &'a str,
    status: &'a dyn Fn(&mut dyn fmt::Write) -> fmt::Result,
}

impl<'a> StatusSite<'a> {
    /// A site called `title` whose status text `status` writes.
    pub const fn new(
        title: &'a str,
        status: &'a dyn Fn(&mut dyn fmt::Write) -> fmt::Result,
    ) -> Self {
        Self { title, status }
    }
}

impl Site for StatusSite<'_> {
    fn render(
        &self,
        path: &str,
        body: &mut dyn fmt::Write,
    ) -> Option<Result<&'static str, fmt::Error>> {
        match path {
            "/" | "/index.html" => Some(self.page(body).map(|()| "text/html; charset=utf-8")),
            "/stats" => Some((self.status)(body).map(|()| "text/plain; charset=utf-8")),
            _ => None,
        }
    }
}

impl StatusSite<'_> {
    /// The home page; the title and the status text are the caller's: escaped.
    fn page(&self, body: &mut dyn fmt::Write) -> fmt::Result {
        body.write_str("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>")?;
        Escaped(&mut *body).write_str(self.title)?;
        body.write_str("</title></head>\n<body><h1>")?;
        Escaped(&mut *body).write_str(self.title)?;
        body.write_str(
            "</h1>\n<p>Served by smolsock on smoltcp: fixed memory, no heap.</p>\n<pre>\n",
        )?;
        (self.status)(&mut Escaped(&mut *body))?;
        body.write_str("</pre></body></html>\n")
    }
}

impl fmt::Debug for StatusSite<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusSite")
            .field("title", &self.title)
            .finish_non_exhaustive()
    }
}

/// A site whose home page reloads itself every few seconds (a meta refresh, no
/// script) and shows each connection's socket buffers as bars, above the
/// counters.
///
/// `connections` writes one row per connection through [`Bars`]; `status`
/// writes the counters, as for [`StatusSite`]. Everything the callers write is
/// escaped. At most `max_rows` rows are drawn (then a line says how many more),
/// so the page has a size known in advance: about [`LiveSite::PAGE_OVERHEAD`]
/// bytes, plus the title twice and [`Bars::ROW_MAX`] per row, plus the
/// counters, all as escaped (each `&`, `<`, `>` or `"` becomes an entity of 4
/// to 6 bytes). A page that outgrows the responder's buffer is a clean 500.
/// `/stats` is the counters as plain text.
///
/// ```
/// use core::fmt;
/// use smolsock::http::{Bars, LiveSite, Site};
///
/// let status = |w: &mut dyn fmt::Write| w.write_str("frames: 7\n");
/// let connections = |bars: &mut Bars<'_>| bars.connection("echo", &"10.0.0.2:49152", (300, 4096), (0, 4096));
/// let site = LiveSite::new("demo", &status, &connections).with_refresh(2).with_max_rows(8);
/// let mut page = heapless::String::<2048>::new();
/// assert_eq!(site.render("/", &mut page), Some(Ok("text/html; charset=utf-8")));
/// assert!(page.contains("http-equiv=\"refresh\" content=\"2\""));
/// assert!(page.contains("style=\"width:7%\""));
/// ```
pub struct LiveSite<'a> {
    title: &'a str,
    refresh_secs: u16,
    max_rows: usize,
    connections: &'a dyn Fn(&mut Bars<'_>) -> fmt::Result,
    status: &'a dyn Fn(&mut dyn fmt::Write) -> fmt::Result,
}

impl<'a> LiveSite<'a> {
    /// Bytes of the page besides its rows, its counters and its title (twice):
    /// the head, the style, the table's head and the closing tags.
    pub const PAGE_OVERHEAD: usize = 900;

    /// A page called `title` reloading every 5 s, with the rows `connections`
    /// writes (at most 16) and the counters `status` writes.
    pub const fn new(
        title: &'a str,
        status: &'a dyn Fn(&mut dyn fmt::Write) -> fmt::Result,
        connections: &'a dyn Fn(&mut Bars<'_>) -> fmt::Result,
    ) -> Self {
        Self {
            title,
            refresh_secs: 5,
            max_rows: 16,
            connections,
            status,
        }
    }

    /// Reloads every `secs` seconds (0: never).
    #[must_use]
    pub const fn with_refresh(mut self, secs: u16) -> Self {
        self.refresh_secs = secs;
        self
    }

    /// Draws at most `rows` connections.
    #[must_use]
    pub const fn with_max_rows(mut self, rows: usize) -> Self {
        self.max_rows = rows;
        self
    }

    fn page(&self, body: &mut dyn fmt::Write) -> fmt::Result {
        body.write_str("<!doctype html>\n<html><head><meta charset=\"utf-8\">")?;
        if self.refresh_secs > 0 {
            write!(
                body,
                "<meta http-equiv=\"refresh\" content=\"{}\">",
                self.refresh_secs
            )?;
        }
        body.write_str("<title>")?;
        Escaped(&mut *body).write_str(self.title)?;
        body.write_str(
            "</title>\n<style>body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}\
             .b{display:inline-block;width:120px;height:10px;border:1px solid #789;background:#eef;\
             vertical-align:middle}.b span{display:block;height:100%;background:#4a7ab8}</style>\
             </head>\n<body><h1>",
        )?;
        Escaped(&mut *body).write_str(self.title)?;
        body.write_str("</h1>\n<p>Served by smolsock on smoltcp: fixed memory, no heap.")?;
        if self.refresh_secs > 0 {
            write!(body, " This page reloads every {} s.", self.refresh_secs)?;
        }
        body.write_str(
            "</p>\n<h2>Connections</h2>\n<table>\n<tr><th>service</th><th>peer</th>\
             <th>receive buffer: unread</th><th>send buffer: unsent or unacknowledged</th></tr>\n",
        )?;
        let mut bars = Bars {
            out: &mut *body,
            rows: 0,
            max_rows: self.max_rows,
        };
        (self.connections)(&mut bars)?;
        let (rows, max_rows) = (bars.rows, bars.max_rows);
        body.write_str("</table>\n")?;
        if rows == 0 {
            body.write_str("<p>No connection open.</p>\n")?;
        } else if rows > max_rows {
            writeln!(body, "<p>and {} more.</p>", rows.saturating_sub(max_rows))?;
        }
        body.write_str("<h2>Counters</h2>\n<pre>\n")?;
        (self.status)(&mut Escaped(&mut *body))?;
        body.write_str("</pre></body></html>\n")
    }
}

impl Site for LiveSite<'_> {
    fn render(
        &self,
        path: &str,
        body: &mut dyn fmt::Write,
    ) -> Option<Result<&'static str, fmt::Error>> {
        match path {
            "/" | "/index.html" => Some(self.page(body).map(|()| "text/html; charset=utf-8")),
            "/stats" => Some((self.status)(body).map(|()| "text/plain; charset=utf-8")),
            _ => None,
        }
    }
}

impl fmt::Debug for LiveSite<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveSite")
            .field("title", &self.title)
            .field("refresh_secs", &self.refresh_secs)
            .field("max_rows", &self.max_rows)
            .finish_non_exhaustive()
    }
}

/// The rows of a [`LiveSite`]'s connection table, one per
/// [`connection`](Self::connection).
pub struct Bars<'w> {
    out: &'w mut dyn fmt::Write,
    rows: usize,
    max_rows: usize,
}

impl Bars<'_> {
    /// The most bytes one row takes, with a service name of up to 16 bytes and a
    /// peer of up to 48 (an IPv6 address and port), both as escaped for HTML
    /// (each `&`, `<`, `>` or `"` takes 4 to 6), buffers of any size.
    pub const ROW_MAX: usize = 330;

    /// A row: `service`, `peer`, and the receive and send buffers as
    /// `(bytes held, capacity)`, each drawn as a bar with its numbers.
    pub fn connection(
        &mut self,
        service: &str,
        peer: &dyn fmt::Display,
        receive: (usize, usize),
        send: (usize, usize),
    ) -> fmt::Result {
        self.rows = self.rows.saturating_add(1);
        if self.rows > self.max_rows {
            return Ok(());
        }
        self.out.write_str("<tr><td>")?;
        Escaped(&mut *self.out).write_str(service)?;
        self.out.write_str("</td><td>")?;
        write!(Escaped(&mut *self.out), "{peer}")?;
        self.out.write_str("</td>")?;
        for (held, capacity) in [receive, send] {
            // In u128: a capacity near usize::MAX would saturate the product.
            let percent = (held.min(capacity) as u128)
                .saturating_mul(100)
                .checked_div(capacity as u128)
                .unwrap_or(0);
            write!(
                self.out,
                "<td><span class=\"b\"><span style=\"width:{percent}%\"></span></span> {held}/{capacity} B</td>"
            )?;
        }
        self.out.write_str("</tr>\n")
    }
}

impl fmt::Debug for Bars<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bars")
            .field("rows", &self.rows)
            .field("max_rows", &self.max_rows)
            .finish_non_exhaustive()
    }
}

/// Writes text into HTML: `&`, `<`, `>` and `"` as entities.
struct Escaped<'w>(&'w mut dyn fmt::Write);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        // The four are ASCII: a byte scan finds them at character boundaries,
        // with none of a char pattern's code (a firmware counts its flash).
        let mut start = 0;
        for (at, byte) in text.bytes().enumerate() {
            let entity = match byte {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => continue,
            };
            self.0.write_str(text.get(start..at).unwrap_or_default())?;
            self.0.write_str(entity)?;
            start = at.saturating_add(1);
        }
        self.0.write_str(text.get(start..).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_site_escapes_its_title_and_status_in_the_page_not_in_stats() {
        let status = |w: &mut dyn fmt::Write| w.write_str("last: <b>x & y</b> \"q\"\n");
        let site = StatusSite::new("t<&>\"t", &status);
        let mut page = std::string::String::new();
        assert_eq!(
            site.render("/", &mut page),
            Some(Ok("text/html; charset=utf-8"))
        );
        assert!(
            page.contains("<title>t&lt;&amp;&gt;&quot;t</title>"),
            "{page}"
        );
        assert!(page.contains("<h1>t&lt;&amp;&gt;&quot;t</h1>"), "{page}");
        assert!(
            page.contains("last: &lt;b&gt;x &amp; y&lt;/b&gt; &quot;q&quot;"),
            "{page}"
        );
        let mut stats = std::string::String::new();
        assert_eq!(
            site.render("/stats", &mut stats),
            Some(Ok("text/plain; charset=utf-8"))
        );
        assert_eq!(stats, "last: <b>x & y</b> \"q\"\n");
    }

    #[test]
    fn a_full_buffer_of_a_huge_capacity_is_drawn_full() {
        let status = |_: &mut dyn fmt::Write| Ok(());
        let connections = |bars: &mut Bars<'_>| {
            bars.connection(
                "x",
                &"p",
                (usize::MAX, usize::MAX),
                (usize::MAX / 2, usize::MAX),
            )
        };
        let site = LiveSite::new("t", &status, &connections);
        let mut page = std::string::String::new();
        site.render("/", &mut page).unwrap().unwrap();
        assert!(page.contains("width:100%"), "{page}");
        assert!(page.contains("width:49%"), "{page}");
    }

    #[test]
    fn status_site_routes_and_shows_the_status() {
        let status = |w: &mut dyn fmt::Write| w.write_str("frames: 7");
        let site = StatusSite::new("demo", &status);
        let mut page = heapless::String::<512>::new();
        assert_eq!(
            site.render("/", &mut page),
            Some(Ok("text/html; charset=utf-8"))
        );
        assert!(page.contains("<h1>demo</h1>") && page.contains("frames: 7"));
        let mut text = heapless::String::<64>::new();
        assert_eq!(
            site.render("/stats", &mut text),
            Some(Ok("text/plain; charset=utf-8"))
        );
        assert_eq!(text, "frames: 7");
        assert_eq!(site.render("/nope", &mut text), None);
        assert_eq!(site.asset("/"), None);
    }

    /// Whether every tag opened is closed, in order (void elements aside).
    fn balanced(html: &str) -> bool {
        let mut open: std::vec::Vec<&str> = std::vec::Vec::new();
        let mut rest = html;
        while let Some(at) = rest.find('<') {
            let Some(end) = rest[at..].find('>') else {
                return false;
            };
            let tag = &rest[at + 1..at + end];
            rest = &rest[at + end + 1..];
            if tag.starts_with('!') {
                continue;
            }
            let name = tag
                .trim_start_matches('/')
                .split([' ', '/'])
                .next()
                .unwrap_or_default();
            if ["meta", "br", "hr", "img", "link"].contains(&name) {
                continue;
            }
            if tag.starts_with('/') {
                if open.pop() != Some(name) {
                    return false;
                }
            } else {
                open.push(name);
            }
        }
        open.is_empty()
    }

    #[test]
    fn live_site_draws_a_bar_per_connection_and_escapes_what_it_is_given() {
        let status = |w: &mut dyn fmt::Write| w.write_str("a < b & c\n");
        let connections = |bars: &mut Bars<'_>| {
            bars.connection("echo", &"10.0.0.2:49152", (1024, 4096), (0, 4096))?;
            bars.connection("<x>", &"[fd00::2]:49153", (9999, 4096), (5, 0))
        };
        let site = LiveSite::new("t&t", &status, &connections).with_refresh(3);
        let mut page = heapless::String::<4096>::new();
        assert_eq!(
            site.render("/", &mut page),
            Some(Ok("text/html; charset=utf-8"))
        );
        assert!(balanced(&page), "{page}");
        assert!(page.contains("content=\"3\""));
        assert!(page.contains("<title>t&amp;t</title>"));
        assert!(page.contains("width:25%"), "1024 of 4096");
        assert!(
            page.contains("width:100%"),
            "more than the capacity is full"
        );
        assert!(page.contains("&lt;x&gt;") && !page.contains("<x>"));
        assert!(page.contains("a &lt; b &amp; c"));
        let mut text = heapless::String::<64>::new();
        assert_eq!(
            site.render("/stats", &mut text),
            Some(Ok("text/plain; charset=utf-8"))
        );
        assert_eq!(text, "a < b & c\n");
    }

    #[test]
    fn live_site_stops_at_its_row_limit_and_fits_the_size_it_promises() {
        let status = |_: &mut dyn fmt::Write| Ok(());
        let peer = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535";
        let connections = |bars: &mut Bars<'_>| {
            for _ in 0..40 {
                bars.connection(
                    "sixteen-letters.",
                    &peer,
                    (usize::MAX, usize::MAX),
                    (7, 4096),
                )?;
            }
            Ok(())
        };
        let title = "smolsock";
        let site = LiveSite::new(title, &status, &connections).with_max_rows(10);
        let mut page = std::string::String::new();
        site.render("/", &mut page).unwrap().unwrap();
        assert!(balanced(&page), "{page}");
        assert_eq!(page.matches("<tr><td>").count(), 10);
        assert!(page.contains("and 30 more."));
        let promised = LiveSite::PAGE_OVERHEAD + 2 * title.len() + 10 * Bars::ROW_MAX;
        assert!(page.len() <= promised, "{} > {promised}", page.len());
        let empty = |_: &mut Bars<'_>| Ok(());
        let site = LiveSite::new(title, &status, &empty);
        let mut page = std::string::String::new();
        site.render("/", &mut page).unwrap().unwrap();
        assert!(page.contains("No connection open.") && balanced(&page));
    }
}
