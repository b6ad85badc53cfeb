//! What an HTTP responder serves: the [`Site`] trait (a path in, a page out) and
//! [`StatusSite`], the home page with live counters.

use core::fmt;

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
///     fn render(&self, path: &str, body: &mut dyn fmt::Write) -> Option<&'static str> {
///         match path {
///             "/hello" => body.write_str("hello\n").ok().map(|()| "text/plain"),
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
    /// Writes the body for `path` and returns its content type, or `None` for 404.
    ///
    /// The responder gives a writer over its body buffer: a page that does not fit
    /// there is answered with 500, whatever this returns.
    fn render(&self, path: &str, body: &mut dyn fmt::Write) -> Option<&'static str>;

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
    fn render(&self, path: &str, body: &mut dyn fmt::Write) -> Option<&'static str> {
        match path {
            "/" | "/index.html" => {
                let page = write!(
                    body,
                    "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title></head>\n\
                     <body><h1>{t}</h1>\n<p>Served by smolsock on smoltcp: fixed memory, \
                     no heap.</p>\n<pre>\n",
                    t = self.title
                )
                .and_then(|()| (self.status)(body))
                .and_then(|()| body.write_str("</pre></body></html>\n"));
                page.ok().map(|()| "text/html; charset=utf-8")
            }
            "/stats" => (self.status)(body)
                .ok()
                .map(|()| "text/plain; charset=utf-8"),
            _ => None,
        }
    }
}

impl fmt::Debug for StatusSite<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusSite")
            .field("title", &self.title)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_site_routes_and_shows_the_status() {
        let status = |w: &mut dyn fmt::Write| w.write_str("frames: 7");
        let site = StatusSite::new("demo", &status);
        let mut page = heapless::String::<512>::new();
        assert_eq!(
            site.render("/", &mut page),
            Some("text/html; charset=utf-8")
        );
        assert!(page.contains("<h1>demo</h1>") && page.contains("frames: 7"));
        let mut text = heapless::String::<64>::new();
        assert_eq!(
            site.render("/stats", &mut text),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(text, "frames: 7");
        assert_eq!(site.render("/nope", &mut text), None);
        assert_eq!(site.asset("/"), None);
    }
}
